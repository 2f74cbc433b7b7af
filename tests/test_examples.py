"""The examples run: `--help` as real scripts, then each on a tiny model in-process."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import dominant_hz, save_tiny_separator, tone

torch.set_num_threads(1)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_main(name: str):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(save_tiny_separator(tmp_path_factory.mktemp("model")))


@pytest.mark.parametrize("name", ["batch_separate.py", "streaming.py"])
def test_help(name, tmp_path):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, str(EXAMPLES / name), "--help"], check=False,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.startswith("usage:") and "--prompt" in r.stdout


def test_batch_separate_a_folder(model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    tone(src / "a.wav", 440.0)
    tone(src / "b.flac", 880.0, sr=22050, channels=2)
    (src / "broken.wav").write_text("not audio")
    main = example_main("batch_separate.py")
    argv = [str(src), str(tmp_path / "out"), "--prompt", "dog barking", "--prompt", "piano",
            "--model", model]
    assert main(argv) == 1  # one file could not be read: reported, not fatal
    out = capsys.readouterr()
    assert "separated 2 of 3 files" in out.out and "broken.wav" in out.out + out.err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"{s}-{p}{r}.wav" for s in "ab" for p in ("dog_barking", "piano")
                           for r in ("", "-residual"))
    assert sf.info(tmp_path / "out" / "b-piano.wav").channels == 2
    assert main(argv) == 1 and "exists" in capsys.readouterr().out  # nothing overwritten
    assert main([*argv, "--overwrite", "--task", "remove"]) == 1


def test_streaming_example(model, tmp_path, capsys):
    src = tone(tmp_path / "in.wav", 660.0, seconds=1.3, sr=44100, channels=2)
    main = example_main("streaming.py")
    argv = [str(src), str(tmp_path / "out.wav"), "--prompt", "piano", "--model", model,
            "--block-ms", "100", "--context-s", "0.5"]
    assert main(argv) == 0
    assert "algorithmic latency: 120 ms" in capsys.readouterr().out
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 16000 and info.channels == 2
    assert abs(info.frames - 1.3 * 16000) <= 2  # streamed output is as long as the input
    assert dominant_hz(tmp_path / "out.wav") == pytest.approx(660.0, abs=2)
    assert main(argv) == 2  # refuses to overwrite
