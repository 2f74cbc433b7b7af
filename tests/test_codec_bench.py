"""`codecsep bench codec` (codecsep.codecs.evaluate) on a tiny Mica codec and a synthetic corpus."""

import argparse
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep.checkpoint import save_checkpoint
from codecsep.codecs.evaluate import (
    OUTPUT_FILES,
    bench_codec,
    clip_order,
    codebook_usage,
    codec_cost,
    register_codec_bench,
)
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, read_manifest, write_manifest
from codecsep.errors import CodecSepError

SR = 16000
TINY = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
FAST = {"compare_dac": False, "rtf_seconds": 0.5, "repeats": 1, "seconds": 1.0}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _signal(kind: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "speech":  # a gliding harmonic tone, amplitude-modulated at a syllable rate
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 10 * seed
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    elif kind == "music":
        x = sum(np.sin(2 * np.pi * f * t) for f in (220 * (1 + seed % 3), 277, 330))
    elif kind == "sfx":
        x = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 3 * t) > 0)
    else:  # silence
        x = np.zeros_like(t)
    return (0.1 * x).astype(np.float32)


def _clip(root, name, category, seconds, seed, split="test", source=None):
    path = root / "audio" / f"{name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _signal(category, seconds, seed), SR)
    return Clip(path=f"audio/{name}.wav", label=f"{category} thing", captions=(category,),
                source="synthetic", source_id=source or name, split=split, duration=seconds,
                category="sfx" if category == "silence" else category)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    clips = [_clip(root, f"{cat}{i}", cat, 1.3 + 0.1 * i, i)
             for cat in ("speech", "music", "sfx") for i in range(2)]
    clips += [_clip(root, "silent", "silence", 2.0, 0),  # skipped: a silent crop
              _clip(root, "short", "speech", 0.5, 9),  # excluded: under 1 s
              _clip(root, "trainclip", "music", 2.0, 5, split="train")]  # another split
    return write_manifest(clips, root / "manifest.jsonl")


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return MicaCodec(TINY).eval()


@pytest.fixture(scope="module")
def result(corpus, codec, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    r = bench_codec(codec, corpus, n_per_category=2, visqol=False, out_dir=out,
                    n_quantizers=(1, 2, 4, 16), **FAST)
    return out, r


def test_report_fields_and_files(result, codec):
    out, r = result
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "codec_bench.json").read_text())  # strict JSON: no NaN
    assert saved["targets"] == r["targets"]
    for key in ("codec", "config", "command", "clips", "skipped", "continuous", "curve",
                "codebooks", "cost", "targets", "machine"):
        assert key in saved
    assert saved["codec"]["weights_hash"] == codec.weights_hash()
    assert (out / "codec_bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "codec_bench.md").read_text()
    for heading in ("## Targets", "## Reconstruction quality", "## Codebook usage", "## Cost"):
        assert heading in md


def test_clip_choice(result):
    _, r = result
    paths = sorted(c["path"] for c in r["clips"])
    assert paths == sorted(f"audio/{c}{i}.wav" for c in ("speech", "music", "sfx") for i in (0, 1))
    assert [s["path"].endswith("silent.wav") for s in r["skipped"]] == [True]
    assert all(c["seconds"] == 1.0 for c in r["clips"])  # centred 1-s crops of longer clips


def test_quality_curve(result, codec):
    _, r = result
    for cat in ("speech", "music", "sfx"):
        assert r["continuous"][cat]["si_sdr"]["n"] == 2
        assert r["continuous"][cat]["si_sdr"]["mean"] >= 60  # the MDCT is exact
        assert r["continuous"][cat]["visqol"]["mean"] is None  # ViSQOL off
    assert [p["n_quantizers"] for p in r["curve"]] == [1, 2, 4]  # 16 > the codec's 4 codebooks
    assert [p["kbps"] for p in r["curve"]] == [codec.bitrate(n) / 1000 for n in (1, 2, 4)]
    for p in r["curve"]:  # a random quantizer is far from the continuous path
        assert p["categories"]["music"]["si_sdr"]["mean"] < 60


def test_codebook_usage_in_range(result):
    _, r = result
    u = r["codebooks"]
    assert len(u["perplexity"]) == 4 and u["codebook_size"] == 32
    assert all(1.0 <= p <= 32.0 for p in u["perplexity"])
    assert all(0.0 < f <= 1.0 for f in u["fraction_used"])
    assert u["n_codes"] == 6 * (SR // 320 + 1)  # six 1-s crops of 51 frames


def test_perplexity_extremes():
    uniform = codebook_usage(torch.full((2, 8), 5))
    assert uniform["perplexity"] == pytest.approx([8.0, 8.0])
    assert uniform["fraction_used"] == [1.0, 1.0]
    one = codebook_usage(torch.tensor([[0, 9, 0, 0]]))
    assert one["perplexity"] == pytest.approx([1.0]) and one["fraction_used"] == [0.25]


def test_cost_and_targets(result):
    _, r = result
    cost = r["cost"][0]
    frames = SR // 320 + 1  # per second; each MDCT coefficient is a 640-tap product
    assert cost["gmacs"]["encode"] == pytest.approx(frames * 320 * 640 / 1e9)
    assert cost["gmacs"]["decode"] == pytest.approx(frames * 320 * 640 / 1e9)
    assert cost["gmacs_bitstream"] > cost["gmacs_continuous"] > 0
    for rtf in cost["rtf_1_thread"].values():
        assert rtf["cpu"] > 0 and rtf["wall"] > 0
    verdicts = {t["target"]: t["pass"] for t in r["targets"]}
    assert verdicts["encode + decode GMACs/s (continuous path)"] is True
    assert verdicts["continuous SI-SDR (dB), speech"] is True
    assert verdicts["continuous ViSQOL, music"] is None  # not measured
    six = [t for t in r["targets"] if t["target"].startswith("ViSQOL at")]
    assert len(six) == 3 and all(t["pass"] is None and "no 6 kbps" in t["note"] for t in six)


def test_overwrite_refused(result, corpus, codec):
    out, _ = result
    before = (out / "codec_bench.json").read_bytes()
    with pytest.raises(CodecSepError, match="overwrite"):
        bench_codec(codec, corpus, n_per_category=1, visqol=False, out_dir=out, **FAST)
    assert (out / "codec_bench.json").read_bytes() == before
    bench_codec(codec, corpus, n_per_category=1, visqol=False, out_dir=out, overwrite=True,
                categories=("music",), **FAST)
    assert json.loads((out / "codec_bench.json").read_text())["config"]["n_per_category"] == 1


def test_visqol_on_one_clip(corpus, codec, tmp_path):
    r = bench_codec(codec, corpus, n_per_category=1, categories=("speech",), visqol=True,
                    visqol_curve=False, out_dir=tmp_path, **FAST)
    cont = r["continuous"]["speech"]["visqol"]
    assert cont["n"] == 1 and cont["mean"] >= 4.2  # exact reconstruction scores near 5
    measured = [p["n_quantizers"] for p in r["curve"]
                if p["categories"]["speech"]["visqol"]["n"] == 1]
    assert measured == [4]  # only at the bitrate nearest 6 kbps (1 kbps for this tiny codec)
    assert 1.0 <= r["curve"][-1]["categories"]["speech"]["visqol"]["mean"] <= 5.0


def test_clip_order_is_deterministic(corpus):
    clips = read_manifest(corpus, split="test")
    shuffled = clips[:]
    random.Random(1).shuffle(shuffled)
    assert clip_order(clips, 1.0) == clip_order(shuffled, 1.0)
    order = clip_order(clips, 1.0)
    assert [c.duration >= 1.0 for c in order] == sorted((c.duration >= 1.0 for c in order),
                                                        reverse=True)
    # one clip per source before any source's second clip
    two = [replace(c, source_id="same") for c in order[:2]]
    assert [c.source_id for c in clip_order(two + order[2:4], 1.0)][:3].count("same") == 1


def test_cli_runs_end_to_end(corpus, codec, tmp_path):
    ckpt = save_checkpoint(tmp_path / "mica", "mica", TINY, codec.state_dict(), {"step": 7})
    parser = argparse.ArgumentParser()
    parser.set_defaults(func=lambda a: "bench")  # as `codecsep bench` sets its own func
    register_codec_bench(parser.add_subparsers(dest="bench_command"))
    out = tmp_path / "out"
    args = parser.parse_args(["codec", "--codec", str(ckpt), "--manifest", str(corpus),
                              "--n-per-category", "1", "--seconds", "1", "--no-visqol",
                              "--no-dac", "--rtf-seconds", "0.5", "--repeats", "1",
                              "--out", str(out)])
    assert args.func(args) == 0
    saved = json.loads((out / "codec_bench.json").read_text())
    assert saved["codec"]["checkpoint"]["step"] == 7
    assert saved["command"].startswith("codecsep bench codec --codec ")
    assert parser.parse_args([]).func(None) == "bench"  # the parent command still runs alone


def test_dac_cost_tiny():
    from codecsep.codecs.dac import DACCodec

    dac = DACCodec.from_config("16k", encoder_hidden_size=4, decoder_hidden_size=16,
                               n_codebooks=2, codebook_size=32)
    cost = codec_cost(dac, rtf_seconds=0.2, repeats=1)
    assert cost["params"] > 0 and cost["gmacs"]["encode"] > 0 and cost["gmacs"]["decode"] > 0
    assert cost["n_quantizers"] == 2 and cost["kbps"] == pytest.approx(dac.bitrate(2) / 1000)


def test_report_includes_the_codec_section(result):
    from codecsep.report import codec_section

    lines = codec_section(result[1])
    assert lines[0].startswith("### Codec (") and any("6 kbps" in line or "kbps" in line for line in lines)
    assert codec_section(None) == []
