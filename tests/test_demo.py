"""The demo: building the shipped mixture from a manifest, and running a separator on it."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import save_tiny_separator

from codecsep import cli
from codecsep.data.manifest import Clip, write_manifest
from codecsep.data.mixtures import read_eval_set
from codecsep.separators.demo import SPECTROGRAM, choose_demo_labels, make_demo_assets, run_demo

torch.set_num_threads(1)
SR = 16000
SECONDS = 2.0


def synth(kind: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "music":
        x = sum(np.sin(2 * np.pi * 262 * k * t) / k for k in range(1, 5))
    elif kind == "speech":
        x = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    else:
        x = np.sign(np.sin(2 * np.pi * 55 * t)) + 0.2 * rng.standard_normal(t.size)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def clip(root: Path, label: str, category: str, i: int, split="test", seconds=2.5) -> Clip:
    rel = f"audio/{split}/{label.replace(' ', '_')}_{i}.wav"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(root / rel, synth(category, seconds, i), SR, subtype="PCM_16")
    return Clip(path=rel, label=label, captions=(label,), source=f"pkg-{label}",
                source_id=f"{label}-{i}", split=split, duration=seconds, category=category,
                license="CC0-1.0")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    clips = [clip(root, lab, cat, i) for lab, cat in
             (("piano", "music"), ("speech", "speech"), ("engine", "sfx"), ("cow", "sfx"))
             for i in range(2)]
    clips.append(clip(root, "violin", "music", 9, split="train"))  # preferred, but not test
    return write_manifest(clips, root / "manifest.jsonl")


@pytest.fixture(scope="module")
def demo(manifest, tmp_path_factory) -> Path:
    return make_demo_assets(manifest, tmp_path_factory.mktemp("assets") / "demo", seconds=SECONDS)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_separator(tmp_path_factory.mktemp("model"))


def digests(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_demo_assets_are_one_three_source_eval_item(demo, manifest):
    with open(demo / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["label"] for r in rows) == ["engine", "piano", "speech"]
    assert all(r["prompt"] == r["label"] and r["gain_db"] for r in rows)
    assert all(r["clip_path"].startswith("audio/test/") for r in rows)  # no machine paths
    item = read_eval_set(demo)[0]
    assert item.mixture.shape == (SECONDS * SR,) and item.sources.shape == (3, SECONDS * SR)
    np.testing.assert_allclose(item.sources.sum(0), item.mixture, atol=2e-4)  # 16-bit rounding
    assert sf.info(str(demo / rows[0]["mixture_path"])).subtype == "PCM_16"
    assert sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) < 1_000_000
    assert "CC0-1.0" in (demo / "CREDITS.md").read_text()


def test_demo_assets_refuse_to_overwrite(demo, manifest, capsys):
    before = digests(demo)
    code = cli.main(["demo", "--make-assets", "--manifest", str(manifest), "--demo-dir", str(demo)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert digests(demo) == before
    assert cli.main(["demo", "--make-assets"]) == 2
    assert "--manifest" in capsys.readouterr().err


def test_label_choice_prefers_instrument_voice_effect_and_falls_back():
    def c(label, category, duration=1.0):
        return Clip(f"{label}.wav", label, (label,), "s", label, "test", duration,
                    category=category)

    clips = [c("cow", "sfx"), c("fire", "sfx"), c("speech", "speech"), c("harp", "music"),
             c("piano", "music")]
    assert choose_demo_labels(clips) == ("piano", "speech", "fire")
    odd = [c("tone", "music"), c("hiss", "sfx", 3.0), c("click", "sfx", 2.0)]
    assert choose_demo_labels(odd) == ("tone", "hiss", "click")  # no speech: most audio first
    with pytest.raises(Exception, match="3 distinct labels"):
        choose_demo_labels(odd[:2])


def test_run_demo_prints_a_row_per_prompt_and_writes_outputs(demo, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_demo(model, demo, out) == 0
    printed = capsys.readouterr().out
    prompts = list(read_eval_set(demo)[0].prompts)
    rows = [line for line in printed.splitlines() if line.split("  ")[0].strip() in prompts]
    assert len(rows) == 3 and all(len(r.split()) >= 3 for r in rows)
    assert "real-time factor" in printed
    names = {p.name for p in out.iterdir()}
    assert names == {f"{p}.wav" for p in prompts} | {f"{p}_residual.wav" for p in prompts} | {
        SPECTROGRAM}
    png = (out / SPECTROGRAM).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    est, _ = sf.read(out / f"{prompts[0]}.wav")
    res, _ = sf.read(out / f"{prompts[0]}_residual.wav")
    np.testing.assert_allclose(est + res, read_eval_set(demo)[0].mixture, atol=3e-3)

    before = digests(out)  # re-running keeps the outputs, says so, and still succeeds
    assert run_demo(model, demo, out) == 0
    assert "already in" in capsys.readouterr().out and digests(out) == before
    assert run_demo(model, demo, out, overwrite=True) == 0


def test_demo_command(demo, model, tmp_path, capsys):
    code = cli.main(["demo", "--model", str(model), "--demo-dir", str(demo), "-o",
                     str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / SPECTROGRAM).is_file()
    code = cli.main(["demo", "--model", str(model), "--demo-dir", str(tmp_path / "none")])
    assert code == 2 and "--make-assets" in capsys.readouterr().err
