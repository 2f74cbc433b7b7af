"""`codecsep speech eval`: rows, matched bitrates, resume / overwrite, skipped models, report."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep import cli
from codecsep.checkpoint import save_checkpoint
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, read_manifest, write_manifest
from codecsep.data.mixtures import make_protocol, write_eval_set
from codecsep.evaluate import eval_set_dir
from codecsep.report import build_report, speech_section
from codecsep.separators.codecformer import Codecformer, CodecformerConfig
from codecsep.separators.codesep import CodeSep, CodeSepConfig
from codecsep.speech_eval import SpeechEvalConfig, previous_rows, rates

torch.set_num_threads(1)
# 4 codebooks of 32 entries: 5 bits x 50 Hz = 250 bps per codebook, CodeSep at 2 x 250 = 500 bps
TINY_CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
TINY_CODESEP = {"n_codebooks": 3, "n_mels": 16, "dim": 32, "intra_layers": 1, "inter_layers": 1,
                "heads": 2, "ffn_dim": 64, "aux_dim": 32, "aux_lstm_layers": 1,
                "aux_conformer_blocks": 1, "aux_kernel": 5}
ROWS_AT_1KBPS = ["mixture", "codecformer", "codesep", "codesep-oracle-base",
                 "fcts@0.5kbps", "fstc@0.5kbps", "codec-ceiling@0.5kbps",
                 "fcts@1kbps", "fstc@1kbps", "codec-ceiling@1kbps"]


def write_test_speech(root, speakers=("a", "b", "c"), per=2, seconds=2.0):
    """Test-split "speech": a voiced-like harmonic tone per speaker, amplitude-modulated."""
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    clips = []
    for s_i, s in enumerate(speakers):
        for i in range(per):
            f0 = 110.0 * (1 + s_i) + 7 * i
            wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
            wav = 0.1 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
            wav = wav + 0.003 * rng.standard_normal(len(t))
            sf.write(root / f"{s}{i}.wav", wav.astype("float32"), 16000)
            clips.append(Clip(path=f"{s}{i}.wav", label="speech", captions=("speech",),
                              source="t", source_id=f"{s}:{i}", split="test", duration=seconds,
                              category="speech", extra={"speaker": s}))
    return write_manifest(clips, root / "manifest.jsonl")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny codec, Codecformer and CodeSep on disk, and a 3-mixture two_speaker set."""
    root = tmp_path_factory.mktemp("speech_eval")
    torch.manual_seed(0)
    codec = MicaCodec(TINY_CODEC).eval()
    save_checkpoint(root / "codec", "mica", asdict(TINY_CODEC), codec.state_dict())
    cf_cfg = CodecformerConfig(codec=str(root / "codec"), dim=16, depth=1, heads=2, ffn_dim=32)
    Codecformer(cf_cfg, codec=codec).save(root / "cf")
    CodeSep(CodeSepConfig(codec=str(root / "codec"), **TINY_CODESEP), codec=codec).save(root / "cs")
    manifest = write_test_speech(root)
    protocol = make_protocol("two_speaker", read_manifest(manifest, split="test"),
                             {"duration_s": 2.0})
    write_eval_set(protocol, 3, eval_set_dir(root / "eval", "two_speaker"), 0)
    return root


def speech_eval(setup, out, *extra, codesep="cs"):
    return ["speech", "eval", "--codecformer", str(setup / "cf"), "--codesep", str(setup / codesep),
            "--n", "2", "--eval-dir", str(setup / "eval"), "--manifest",
            str(setup / "manifest.jsonl"), "--out", str(out), "--no-visqol", *extra]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def first_run(setup):
    out = setup / "results"
    assert cli.main(speech_eval(setup, out, "--kbps", "1")) == 0
    return out


def rows_of(out) -> dict:
    return {r["name"]: r for r in json.loads((out / "speech.json").read_text())["rows"]}


def test_rows_scores_and_matched_bitrates(first_run):
    result = json.loads((first_run / "speech.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert [r["name"] for r in result["rows"]] == ROWS_AT_1KBPS
    assert result["complete"] and result["n"] == 2 and result["skipped"] == {}
    assert result["eval_set"]["protocol"] == "two_speaker"
    assert len(result["eval_set"]["fingerprint"]) == 16
    assert result["command"].startswith("codecsep speech eval --codecformer ")
    assert "--n 2 --kbps 1 " in result["command"] and result["command"].endswith("--no-visqol")
    assert all(r["n"] == 2 and len(r["items"]) == 4 for r in rows.values())  # 2 mixtures x 2
    assert abs(rows["mixture"]["si_sdri"]) < 1e-4
    assert all(abs(it["si_sdri"]) < 1e-4 for it in rows["mixture"]["items"])
    for name in ROWS_AT_1KBPS[1:]:
        assert math.isfinite(rows[name]["si_sdr"]) and math.isfinite(rows[name]["si_sdri"]), name
    # stored bits: CodeSep 2 speakers x 1 codebook; FCTS 1 stream, FSTC and ceiling 1 per speaker
    layout = {n: (r["bitrate_bps"], r["streams"], r["codebooks"]) for n, r in rows.items()}
    assert layout["codesep"] == layout["codesep-oracle-base"] == (500.0, 2, 1)
    assert rows["codesep"]["predicted_codebooks"] == 2
    assert layout["fcts@0.5kbps"] == (500.0, 1, 2) and layout["fstc@0.5kbps"] == (500.0, 2, 1)
    assert layout["fcts@1kbps"] == (1000.0, 1, 4)
    assert layout["codec-ceiling@1kbps"] == (1000.0, 2, 2)
    assert layout["codecformer"] == (None, None, None) and rows["codesep"]["macs_per_s"] is None
    cf = rows["codecformer"]
    assert 0 < cf["macs_per_s"] < rows["fcts@1kbps"]["macs_per_s"]  # FCTS adds the codec's RVQ
    sepformer = result["cost"]["sepformer"]["macs_per_s"]
    assert cf["sepformer_macs_per_s"] == sepformer > 100 * cf["macs_per_s"]
    for module, metric in (("pystoi", "stoi"), ("pesq", "pesq")):  # the `metrics` extra
        if importlib.util.find_spec(module):
            assert metric in result["metrics"] and math.isfinite(cf["items"][0][metric])
    assert "visqol" not in result["metrics"]
    md = (first_run / "speech.md").read_text()
    assert "| `codesep` | 0.5 | 2 x 1 (+2 predicted) |" in md
    assert "Reproduce: `codecsep speech eval --codecformer" in md


def test_second_run_resumes_and_never_replaces_without_overwrite(setup, first_run, capsys):
    before = rows_of(first_run)
    code, out, _ = run(speech_eval(setup, first_run, "--kbps", "1"), capsys)
    assert code == 0 and "| `fstc@1kbps` | 1 |" in out
    assert rows_of(first_run) == before  # everything reused, nothing recomputed
    code, _, err = run(speech_eval(setup, first_run, "--kbps", "1", "--n", "1"), capsys)
    assert code == 2 and "--overwrite" in err and "mixture" in err
    code, _, err = run(speech_eval(setup, first_run), capsys)  # would drop the 1 kbps rows
    assert code == 2 and "fcts@1kbps" in err
    assert rows_of(first_run) == before


def test_interrupted_run_resumes_missing_rows_only(setup, first_run, tmp_path, capsys):
    out = tmp_path / "partial"
    out.mkdir()
    result = json.loads((first_run / "speech.json").read_text())
    kept = result["rows"][:3]
    result["rows"], result["complete"] = kept, False
    kept[0]["items"][0]["marker"] = "reused"  # only a reused row keeps this
    (out / "speech.json").write_text(json.dumps(result))
    code, _, _ = run(speech_eval(setup, out, "--kbps", "1"), capsys)
    rows = rows_of(out)
    assert code == 0 and list(rows) == ROWS_AT_1KBPS
    assert rows["mixture"]["items"][0]["marker"] == "reused"
    assert rows["fcts@1kbps"]["si_sdr"] == pytest.approx(rows_of(first_run)["fcts@1kbps"]["si_sdr"])
    code, _, _ = run(speech_eval(setup, out, "--n", "1", "--overwrite"), capsys)
    assert code == 0 and {r["n"] for r in rows_of(out).values()} == {1}


def test_overwrite_recomputes_only_the_rows_whose_identity_changed(setup, first_run, tmp_path,
                                                                  capsys):
    out = tmp_path / "changed"
    out.mkdir()
    result = json.loads((first_run / "speech.json").read_text())
    by_name = {r["name"]: r for r in result["rows"]}
    by_name["mixture"]["items"][0]["marker"] = "reused"
    by_name["codesep"]["identity"] = {**by_name["codesep"]["identity"], "codesep": "older weights"}
    by_name["codesep"]["items"][0]["marker"] = "stale"
    (out / "speech.json").write_text(json.dumps(result))
    code, _, err = run(speech_eval(setup, out, "--kbps", "1"), capsys)
    assert code == 2 and "codesep" in err
    code, _, _ = run(speech_eval(setup, out, "--kbps", "1", "--overwrite"), capsys)
    rows = rows_of(out)
    assert code == 0 and list(rows) == ROWS_AT_1KBPS
    assert rows["mixture"]["items"][0]["marker"] == "reused"
    assert "marker" not in rows["codesep"]["items"][0]
    assert rows["codesep"]["identity"] == rows_of(first_run)["codesep"]["identity"]


def test_absent_model_and_unreachable_rates_are_skipped(setup, tmp_path, capsys):
    code, _, err = run(speech_eval(setup, tmp_path / "o", "--kbps", "2", codesep="none"), capsys)
    assert code == 0 and "codesep skipped: no checkpoint at" in err
    result = json.loads((tmp_path / "o" / "speech.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names == ["mixture", "codecformer", "fcts@0.5kbps", "fstc@0.5kbps",
                     "codec-ceiling@0.5kbps", "fstc@2kbps", "codec-ceiling@2kbps"]
    assert "no checkpoint" in result["skipped"]["codesep"]
    assert "needs 8 codebooks" in result["skipped"]["fcts@2kbps"]
    assert "not run: `codesep`" in (tmp_path / "o" / "speech.md").read_text()


def test_config_command_rates_and_bad_files(tmp_path):
    cfg = SpeechEvalConfig(codecformer="runs/cf/checkpoint", n=10, kbps=(2.0, 4.0, 6.0))
    assert cfg.command() == "codecsep speech eval --codecformer runs/cf/checkpoint --n 10"
    assert SpeechEvalConfig(visqol=False, out="x y").command() == (
        "codecsep speech eval --n 50 --out 'x y' --no-visqol")
    full = MicaCodec(MicaConfig()).eval()
    assert rates(full, None, (2, 4, 6)) == [1000.0, 2000.0, 4000.0, 6000.0]
    assert rates(full, None, (1,)) == [1000.0]
    (tmp_path / "speech.json").write_text("{}")
    with pytest.raises(Exception, match="not a `codecsep speech eval` result"):
        previous_rows(tmp_path / "speech.json", {}, overwrite=False)
    assert previous_rows(tmp_path / "speech.json", {}, overwrite=True) == {}


def test_report_section_renders_the_rows(first_run, tmp_path):
    result = json.loads((first_run / "speech.json").read_text())
    section = "\n".join(speech_section(result))
    assert section.startswith("### Two-speaker separation in codec space")
    for name in ROWS_AT_1KBPS:
        assert f"| `{name}` |" in section
    assert "| `mixture` | – | – | " in section and "0.00 [0.00, 0.00]" in section
    assert f"```bash\n{result['command']}\n```" in section
    assert "x more" in section and "never occur in training" in section
    assert speech_section(None) == []
    readme = tmp_path / "README.md"
    readme.write_text("# X\n\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    _, new = build_report(readme, tmp_path / "none", tmp_path / "none.json",
                          deploy_file=tmp_path / "none.json", codec_file=tmp_path / "none.json",
                          speech_file=first_run / "speech.json")
    assert "| `codesep-oracle-base` |" in new and "old" not in new


def test_two_speaker_evaluation_set_overlaps_the_speakers_throughout(tmp_path):
    from codecsep.evaluate import ensure_eval_set

    (tmp_path / "c").mkdir()
    manifest = write_test_speech(tmp_path / "c", seconds=1.2)
    es = ensure_eval_set("two_speaker", 2, tmp_path / "eval", manifest, set_size=2)
    for i in range(len(es)):
        m = es[i]
        assert m.mixture.shape[-1] == 3 * 16000  # 3 s, from 1.2 s clips: tiled, not padded
        frames = m.sources.reshape(2, -1, 320)
        active = (np.abs(frames).max(-1) > 1e-3).all(0)
        assert active.mean() > 0.9
