"""`codecsep eval` on a tiny synthetic corpus: floors, ceilings, resume, removal, prompt modes."""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep import cli
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, write_manifest
from codecsep.errors import CodecSepError
from codecsep.evaluate import (
    MODELS,
    CodecCeiling,
    EvalConfig,
    MixtureModel,
    OracleMDCTIRM,
    default_out_dir,
    ensure_eval_set,
    evaluate,
    load_model,
    model_slug,
    models_help,
    parse_model,
)

SR = 16000
TINY_MICA = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)


def _tone(freqs, seconds, amp=0.2):
    t = np.arange(int(seconds * SR)) / SR
    return amp * sum(np.sin(2 * np.pi * f * t) for f in freqs)


def _bursts(rng, seconds):
    x = np.zeros(int(seconds * SR))
    for start in range(0, len(x) - SR // 4, SR // 2):
        x[start : start + SR // 5] = rng.standard_normal(SR // 5) * 0.2
    return x


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Test-split clips of 5 labels with held-out paraphrases (tones, noise, bursts, 'voices')."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalcorpus")
    rng = np.random.default_rng(0)
    specs = [("piano", "music", "p1", _tone([262, 330], 2.0)),
             ("organ", "music", "o1", _tone([98, 196, 392], 2.0)),
             ("dog", "sfx", "d1", _bursts(rng, 2.0)),
             ("rain", "sfx", "r1", rng.standard_normal(2 * SR) * 0.05),
             ("speech", "speech", "spk1", _tone([140], 2.0) * (1 + np.sin(np.arange(2 * SR) / 600))),
             ("speech", "speech", "spk2", _tone([230], 2.0) * (1 + np.cos(np.arange(2 * SR) / 900)))]
    clips = []
    for i, (label, cat, sid, wav) in enumerate(specs):
        path = root / "audio" / f"{i}_{label}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav.astype(np.float32), SR)
        clips.append(Clip(path=str(path.relative_to(root)), label=label,
                          captions=(label, f"the sound of {label}"), source="synthetic",
                          source_id=sid, split="test", duration=2.0, category=cat))
    manifest = write_manifest(clips, root / "manifest.jsonl")
    eval_dir = root / "eval"
    ensure_eval_set("two_source", 4, eval_dir, manifest, set_size=4)
    ensure_eval_set("three_source", 2, eval_dir, manifest, set_size=2)
    return {"manifest": str(manifest), "eval_dir": str(eval_dir)}


def config(corpus, **kw) -> EvalConfig:
    kw.setdefault("n", 4)
    return EvalConfig(eval_dir=corpus["eval_dir"], manifest=corpus["manifest"], set_size=4, **kw)


def test_mixture_is_the_zero_floor_and_the_oracle_mask_is_far_above(corpus, tmp_path):
    floor = evaluate(config(corpus, model="mixture", protocol="two_source"), tmp_path / "floor",
                     n_examples=0)
    oracle = evaluate(config(corpus, model="oracle-mdct-irm", protocol="two_source"),
                      tmp_path / "oracle", n_examples=1)
    rows = (tmp_path / "floor" / "items.csv").read_text().splitlines()[1:]
    assert len(rows) == 4
    assert floor["metrics"]["si_sdri"]["mean"] == pytest.approx(0.0, abs=1e-3)
    assert floor["metrics"]["sdri"]["mean"] == pytest.approx(0.0, abs=1e-3)
    assert oracle["metrics"]["si_sdri"]["mean"] > 5.0
    assert oracle["metrics"]["si_sdr"]["mean"] > floor["metrics"]["si_sdr"]["mean"] + 5.0
    assert (tmp_path / "oracle" / "per_class.png").stat().st_size > 0
    assert (tmp_path / "oracle" / "examples.png").stat().st_size > 0


class CountingModel(MixtureModel):
    def __init__(self):
        self.mixtures = 0

    def separate(self, audio, prompts, **kw):
        self.mixtures += 1
        return super().separate(audio, prompts)


def test_rerun_resumes_and_skips_items_already_scored(corpus, tmp_path):
    out = tmp_path / "run"
    first = CountingModel()
    evaluate(config(corpus, model="mixture", protocol="two_source", n=2), out, model=first,
             n_examples=0)
    assert first.mixtures == 2
    again = CountingModel()
    summary = evaluate(config(corpus, model="mixture", protocol="two_source", n=4), out,
                       model=again, n_examples=0)
    assert again.mixtures == 2  # only the two new mixtures were separated
    ids = [line.split(",")[0] for line in (out / "items.csv").read_text().splitlines()[1:]]
    assert len(ids) == len(set(ids)) == 4 and summary["n_items"] == 4
    done = CountingModel()
    evaluate(config(corpus, model="mixture", protocol="two_source", n=4), out, model=done,
             n_examples=0)
    assert done.mixtures == 0


def test_a_different_evaluation_refuses_to_mix_into_existing_results(corpus, tmp_path):
    out = tmp_path / "run"
    evaluate(config(corpus, model="mixture", protocol="two_source", n=1), out, n_examples=0)
    with pytest.raises(CodecSepError, match="task"):
        evaluate(config(corpus, model="mixture", protocol="two_source", n=1, task="remove"), out)
    evaluate(config(corpus, model="mixture", protocol="two_source", n=1, task="remove"), out,
             overwrite=True, n_examples=0)
    assert json.loads((out / "summary.json").read_text())["task"] == "remove"


def test_summary_json_has_the_documented_fields(corpus, tmp_path):
    evaluate(config(corpus, model="oracle-mdct-irm", protocol="three_source", n=2), tmp_path,
             n_examples=0)
    s = json.loads((tmp_path / "summary.json").read_text())
    for key in ("model", "protocol", "prompt_mode", "task", "n_items", "n_mixtures", "metrics",
                "per_class", "visqol_note", "command", "eval_set", "codecsep_version"):
        assert key in s
    assert s["n_mixtures"] == 2 and s["n_items"] == 6  # every source of a 3-source mix in turn
    for metric in ("si_sdr", "si_sdri", "sdr", "sdri"):
        d = s["metrics"][metric]
        assert set(d) == {"mean", "median", "ci95", "n", "n_nan"} and d["n"] == 6
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    assert "visqol" not in s["metrics"] and "not computed" in s["visqol_note"]
    assert s["command"].startswith("codecsep eval --model oracle-mdct-irm --protocol three_source")
    assert "| si_sdri |" in (tmp_path / "summary.md").read_text()
    indices = [line.split(",")[1] for line in (tmp_path / "items.csv").read_text().splitlines()[1:]]
    assert sorted(indices) == ["0", "0", "1", "1", "2", "2"]


def test_removal_scores_the_residual_against_mixture_minus_target(corpus, tmp_path):
    floor = evaluate(config(corpus, model="mixture", protocol="two_source", task="remove"),
                     tmp_path / "f", n_examples=0)
    oracle = evaluate(config(corpus, model="oracle-mdct-irm", protocol="two_source",
                             task="remove"), tmp_path / "o", n_examples=0)
    assert floor["metrics"]["si_sdri"]["mean"] == pytest.approx(0.0, abs=1e-3)
    assert oracle["metrics"]["si_sdri"]["mean"] > 5.0
    tasks = {line.split(",")[5] for line in (tmp_path / "o" / "items.csv").read_text().splitlines()[1:]}
    assert tasks == {"remove"}


def test_oracle_residual_is_the_mixture_minus_the_target():
    rng = np.random.default_rng(1)
    sources = rng.standard_normal((2, 8000)).astype(np.float32)
    mix = sources.sum(0)
    out = OracleMDCTIRM().separate(mix, ["a"], sources=sources, targets=[1])
    torch.testing.assert_close(out["target"] + out["residual"], torch.from_numpy(mix)[None, None])


def test_prompt_modes_change_prompts_not_audio(corpus, tmp_path):
    label = evaluate(config(corpus, model="mixture", protocol="two_source"), tmp_path / "l",
                     n_examples=0)
    held = evaluate(config(corpus, model="mixture", protocol="two_source", prompt_mode="heldout"),
                    tmp_path / "h", n_examples=0)
    cap = evaluate(config(corpus, model="mixture", protocol="two_source", prompt_mode="caption"),
                   tmp_path / "c", n_examples=0)
    rows = {m: (tmp_path / m / "items.csv").read_text().splitlines()[1:] for m in "lhc"}
    prompts = {m: [r.split(",")[3] for r in rows[m]] for m in "lhc"}
    labels = [r.split(",")[4] for r in rows["l"]]
    assert prompts["l"] == labels
    assert all(p not in labels for p in prompts["h"])  # held-out paraphrases are not labels
    assert all(p in (lab, f"the sound of {lab}") for p, lab in zip(prompts["c"], labels))
    assert held["metrics"]["si_sdr"] == label["metrics"]["si_sdr"] == cap["metrics"]["si_sdr"]
    again = evaluate(config(corpus, model="mixture", protocol="two_source", prompt_mode="heldout"),
                     tmp_path / "h2", n_examples=0)
    assert again["n_items"] == held["n_items"]
    assert (tmp_path / "h2" / "items.csv").read_text() == (tmp_path / "h" / "items.csv").read_text()


def test_codec_ceiling_is_exact_for_the_mdct_path_and_finite_through_codes():
    rng = np.random.default_rng(2)
    sources = (rng.standard_normal((2, 4000)) * 0.1).astype(np.float32)
    codec = MicaCodec(TINY_MICA)
    exact = CodecCeiling(codec).separate(sources.sum(0), ["a"], sources=sources, targets=[0])
    torch.testing.assert_close(exact["target"][0, 0], torch.from_numpy(sources[0]), atol=1e-5,
                               rtol=0)
    coded = CodecCeiling(codec, n_quantizers=2).separate(sources.sum(0), ["a"], sources=sources,
                                                         targets=[0])
    assert coded["target"].shape == (1, 1, 4000) and torch.isfinite(coded["target"]).all()


def test_the_codec_reference_scores_against_what_the_codec_renders(corpus, tmp_path):
    """--reference codec (codec-SI-SDR): the codec ceiling then matches its reference exactly,
    which it does not against the clean source; models without a codec are refused."""
    ceiling = CodecCeiling(MicaCodec(TINY_MICA), n_quantizers=2)
    spec = dict(model="codec-ceiling:mica@2", protocol="two_source", n=2)
    clean = evaluate(config(corpus, **spec), tmp_path / "clean", model=ceiling, n_examples=0)
    coded = evaluate(config(corpus, reference="codec", **spec), tmp_path / "codec", model=ceiling,
                     n_examples=1)
    assert coded["reference"] == "codec" and "rendition" in (tmp_path / "codec/summary.md").read_text()
    assert coded["metrics"]["si_sdr"]["mean"] > 60 > clean["metrics"]["si_sdr"]["mean"] + 20
    assert "--reference codec" in coded["command"] and coded["model"].endswith("--reference codec")
    assert default_out_dir(config(corpus, reference="codec", **spec)).parent.name.endswith("-refcodec")
    with pytest.raises(CodecSepError, match="reference"):  # never mixed into clean-reference results
        evaluate(config(corpus, **spec), tmp_path / "codec", model=ceiling, n_examples=0)
    with pytest.raises(CodecSepError, match="runs on a codec"):
        evaluate(config(corpus, model="mixture", protocol="two_source", reference="codec"),
                 tmp_path / "mix", n_examples=0)
    with pytest.raises(CodecSepError, match="unknown reference"):
        config(corpus, model="mixture", protocol="two_source", reference="dirty")


def test_model_specs_are_checked():
    assert parse_model("codecsep") == ("codecsep", None)
    assert parse_model("resunet:runs/x") == ("resunet", "runs/x")
    assert model_slug("codec-ceiling:mica@8") == "codec-ceiling-mica-q8"
    assert model_slug("resunet:runs/r1/checkpoint") == "resunet-r1-checkpoint"
    for bad, match in (("nope", "unknown model"), ("resunet", "needs an argument"),
                       ("mixture:x", "takes no argument"), ("codec-ceiling:mica@x", "codebook"),
                       ("codec-ceiling:mica@0", "@ 0: codec mica.* has 16 codebooks"),
                       ("codec-ceiling:mica@99", "@ 99: codec mica.* has 16 codebooks")):
        with pytest.raises(CodecSepError, match=match):
            load_model(bad)
    assert load_model("codec-ceiling:mica@16").n_quantizers == 16
    for kind in MODELS:  # --help names every kind
        assert kind in models_help()


def test_cli_eval_runs_and_prints_the_result(corpus, tmp_path, capsys):
    code = cli.main(["eval", "--model", "mixture", "--protocol", "two_source", "--n", "2",
                     "--eval-dir", corpus["eval_dir"], "--manifest", corpus["manifest"],
                     "--out", str(tmp_path / "cli")])
    assert code == 0
    assert "SI-SDRi 0.00 dB" in capsys.readouterr().out
    assert (tmp_path / "cli" / "summary.json").is_file()
    code = cli.main(["eval", "--model", "mixture", "--protocol", "two_source", "--n", "50",
                     "--eval-dir", corpus["eval_dir"], "--manifest", corpus["manifest"],
                     "--out", str(tmp_path / "cli2")])
    assert code == 2 and "fewer than --n 50" in capsys.readouterr().err


def test_a_saved_codecsep_separator_is_evaluated_end_to_end(corpus, tmp_path):
    from codecsep.separators.masker import MaskerConfig
    from codecsep.separators.separator import Separator, SeparatorConfig
    from codecsep.text.base import get_text_encoder

    enc, codec = get_text_encoder("hash", dim=384), MicaCodec(TINY_MICA)
    masker = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=384, cond_hidden=16)
    Separator(SeparatorConfig(masker=masker), codec=codec, text_encoder=enc).save(tmp_path / "ck")
    sep = Separator.load(tmp_path / "ck", text_encoder=enc, codec=codec)
    cfg = config(corpus, model=f"codecsep:{tmp_path / 'ck'}", protocol="three_source", n=2)
    s = evaluate(cfg, tmp_path / "out", model=sep, n_examples=1)
    assert s["n_items"] == 6 and s["metrics"]["si_sdri"]["n"] == 6
    assert s["model_fingerprint"] == sep.meta["sha256"]
    assert all(abs(s["metrics"][m]["mean"]) < 60 for m in ("si_sdr", "si_sdri", "sdr", "sdri"))
    # conditioning given directly (an audio query's place) runs the same masker
    from codecsep.evaluate import PromptSource, ensure_eval_set, eval_items, run_model

    es = ensure_eval_set(cfg.protocol, cfg.n, cfg.eval_dir, cfg.manifest)
    items = eval_items(es, 1, cfg.protocol, "label", PromptSource(None))
    m = es[0]
    by_text = run_model(sep, m.mixture, m.sources, items)
    same = run_model(sep, m.mixture, m.sources, items, cond=sep.embed([i.prompt for i in items]))
    torch.testing.assert_close(same["target"], by_text["target"])

    class Recorder:  # what run_model hands the separator
        sample_rate = 16000

        def separate(self, mix, prompts, cond=None):
            self.cond = cond
            return {"target": mix[None].repeat(len(prompts), 1, 1), "residual": 0 * mix[None]}

    rec, cond = Recorder(), torch.randn(len(items), 8)
    run_model(rec, m.mixture, m.sources, items, cond=cond)
    assert rec.cond is cond
    run_model(rec, m.mixture, m.sources, items)
    assert rec.cond is None


def test_the_code_stream_path_is_evaluated_as_codes_in_codes_out(corpus, tmp_path):
    from codecsep.evaluate import CodeStreamPath, model_fingerprint
    from codecsep.separators.base import apply_overrides
    from codecsep.separators.masker import MaskerConfig
    from codecsep.separators.separator import Separator, SeparatorConfig
    from codecsep.text.base import get_text_encoder

    enc, codec = get_text_encoder("hash", dim=384), MicaCodec(TINY_MICA)
    masker = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=384, cond_hidden=16)
    Separator(SeparatorConfig(masker=masker), codec=codec, text_encoder=enc).save(tmp_path / "ck")
    sep = Separator.load(tmp_path / "ck", text_encoder=enc, codec=codec)
    path = CodeStreamPath(sep, n_quantizers=2)
    wav = torch.randn(1, 4000) * 0.1
    out = path.separate(wav, ["dog"])
    with torch.no_grad():
        codes = codec.quantize(codec.encode(wav[None]), 2)
        want = codec.decode(codec.dequantize(sep.separate_codes(codes, ["dog"])["target"]), 4000)
    assert torch.equal(out["target"], want) and out["residual"].shape == (1, 1, 4000)
    assert model_fingerprint(path) != model_fingerprint(sep)  # never resumes waveform results
    with pytest.raises(CodecSepError, match="--shifts does not apply"):
        apply_overrides(path, {"shifts": 2}, "codecsep-codes")  # code streams have no shifts
    with pytest.raises(CodecSepError, match="codebooks"):
        CodeStreamPath(sep, n_quantizers=codec.n_codebooks + 1)
    cfg = config(corpus, model=f"codecsep-codes:{tmp_path / 'ck'}@2", protocol="two_source", n=2)
    s = evaluate(cfg, tmp_path / "out", model=path, n_examples=1)
    assert s["n_items"] == 2 and all(np.isfinite(s["metrics"][m]["mean"]) for m in ("si_sdri", "sdri"))
    assert model_slug("codecsep-codes:@12") == "codecsep-codes-q12"
    assert parse_model("codecsep-codes") == ("codecsep-codes", None)


def test_visqol_only_on_the_first_items_and_said_so(corpus, tmp_path):
    pytest.importorskip("visqol")
    s = evaluate(config(corpus, model="oracle-mdct-irm", protocol="two_source", visqol=True,
                        visqol_items=2), tmp_path, n_examples=0)
    cells = [row["visqol"] for row in csv.DictReader(open(tmp_path / "items.csv"))]
    assert [c != "" for c in cells] == [True, True, False, False]
    assert s["metrics"]["visqol"]["n"] + s["metrics"]["visqol"]["n_nan"] == 2
    assert "first 2 of 4 items" in s["visqol_note"]
    assert "--visqol --visqol-items 2" in s["command"]
    if s["metrics"]["visqol"]["n"]:
        assert 1.0 <= s["metrics"]["visqol"]["mean"] <= 5.0


def test_resume_refuses_other_weights(corpus, tmp_path):
    out = tmp_path / "run"
    first = MixtureModel()
    first.meta = {"sha256": "aaaa"}
    evaluate(config(corpus, model="mixture", protocol="two_source", n=1), out, model=first,
             n_examples=0)
    other = MixtureModel()
    other.meta = {"sha256": "bbbb"}
    with pytest.raises(CodecSepError, match="model_fingerprint"):
        evaluate(config(corpus, model="mixture", protocol="two_source", n=1), out, model=other)


def test_semantic_score_column_is_the_audio_encoders_cosine(corpus, tmp_path):
    from codecsep.text.audio_encoder import semantic_score

    s = evaluate(config(corpus, model="oracle-mdct-irm", protocol="two_source", semantic=True),
                 tmp_path, n_examples=0)
    sem = s["metrics"]["semantic"]
    assert sem["n"] == s["n_items"] and -1.0 <= sem["mean"] <= 1.0
    assert "--semantic" in s["command"]
    rows = list(csv.DictReader(open(tmp_path / "items.csv")))
    # recompute one item by hand: the oracle's estimate of item 0 against its prompt
    from codecsep.evaluate import OracleMDCTIRM, ensure_eval_set, run_model, eval_items, PromptSource

    cfg = config(corpus, model="oracle-mdct-irm", protocol="two_source")
    es = ensure_eval_set(cfg.protocol, cfg.n, cfg.eval_dir, cfg.manifest)
    it = eval_items(es, cfg.n, cfg.protocol, "label", PromptSource(None))[0]
    m = es[it.index]
    out = run_model(OracleMDCTIRM(), m.mixture, m.sources, [it])
    assert float(rows[0]["semantic"]) == pytest.approx(semantic_score(out["target"][0], it.prompt,
                                                                      sample_rate=16000), abs=1e-3)


def test_results_written_before_semantic_existed_still_resume(corpus, tmp_path):
    cfg = config(corpus, model="mixture", protocol="two_source")
    evaluate(cfg, tmp_path, n_examples=0)
    run = json.loads((tmp_path / "run.json").read_text())
    run.pop("semantic")
    (tmp_path / "run.json").write_text(json.dumps(run))
    evaluate(cfg, tmp_path, n_examples=0)  # resumes: a missing setting means its default


def test_train_split_sets_are_separate_diagnostics(corpus, tmp_path):
    from codecsep.data.manifest import read_manifest
    from codecsep.evaluate import default_out_dir

    root = Path(corpus["manifest"]).parent
    clips = [dataclasses.replace(c, path=str(Path(c.path).relative_to(root)), split="train")
             for c in read_manifest(corpus["manifest"])]
    train_manifest = write_manifest(clips, root / "manifest-train.jsonl")
    cfg = EvalConfig(model="mixture", protocol="two_source", n=2, set_size=2, split="train",
                     eval_dir=str(tmp_path / "eval"), manifest=str(train_manifest))
    s = evaluate(cfg, tmp_path / "out", n_examples=0)
    assert s["split"] == "train" and Path(s["eval_set"]).name == "two_source-train-0"
    assert "--split train" in s["command"] and "-train-" in str(default_out_dir(cfg))
    with pytest.raises(CodecSepError, match="cannot draw"):  # the fixture has no valid split
        ensure_eval_set("two_source", 2, tmp_path / "eval", corpus["manifest"], split="valid")
    with pytest.raises(CodecSepError, match="unknown split"):
        ensure_eval_set("two_source", 2, tmp_path / "eval", corpus["manifest"], split="dev")


def test_long_mixture_sets_are_their_own_sets_and_run_through_windows(corpus, tmp_path):
    import soundfile as sf

    from codecsep.data.manifest import read_manifest
    from codecsep.evaluate import default_out_dir

    cfg = EvalConfig(model="mixture", protocol="two_source", n=2, set_size=2, seconds=9.0,
                     eval_dir=str(tmp_path / "eval"), manifest=corpus["manifest"])
    s = evaluate(cfg, tmp_path / "out", n_examples=0)
    assert Path(s["eval_set"]).name == "two_source-0-9s" and "--seconds 9.0" in s["command"]
    assert "-9s-" in str(default_out_dir(cfg))
    clips = max(sf.info(c.path).duration for c in read_manifest(corpus["manifest"]))
    wav = sorted(Path(s["eval_set"]).rglob("*.wav"))[0]
    assert clips < 9.0 and sf.info(wav).duration == pytest.approx(9.0, abs=0.01)  # tiled clips
    # the 4-s set of the same protocol and seed is untouched and separate
    assert not (tmp_path / "eval" / "two_source-0").exists()
    with pytest.raises(CodecSepError, match="seconds must be > 0"):
        ensure_eval_set("two_source", 2, tmp_path / "eval", corpus["manifest"], seconds=-1.0)
