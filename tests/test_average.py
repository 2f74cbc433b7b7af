"""scripts/average_checkpoints.py: the mean of sibling checkpoints, refused for different models."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_separator

from codecsep.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts/average_checkpoints.py")


def sibling(src: Path, dst: Path, shift: float, top=None, **cfg_changes) -> Path:
    kind, cfg, state, meta = load_checkpoint(src)
    cfg["masker"].update(cfg_changes)
    cfg.update(top or {})
    state = {k: v + shift if v.is_floating_point() else v for k, v in state.items()}
    return save_checkpoint(dst, kind, cfg, state, meta={"step": meta.get("step", 0) + 10})


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_mean_of_siblings_records_its_inputs(tmp_path):
    a = save_tiny_separator(tmp_path / "a")
    # dropout (training-only) and prompt anchors (an inference setting) differ: still one model
    b = sibling(a, tmp_path / "b", 0.5, top={"anchors": {"texts": ["dog"], "weight": 0.5,
                                                         "temperature": 0.02}}, dropout=0.3)
    r = run(a, b, "-o", tmp_path / "soup")
    assert r.returncode == 0, r.stderr
    _, _, sa, _ = load_checkpoint(a)
    _, _, soup, meta = load_checkpoint(tmp_path / "soup")
    name = next(k for k, v in sa.items() if v.is_floating_point() and v.numel() > 4)
    assert torch.allclose(soup[name], sa[name] + 0.25, atol=2e-3)  # stored as float16
    assert [i["path"] for i in meta["averaged_from"]] == [str(a), str(b)]
    assert "average_checkpoints.py" in meta["trained_by"]
    assert run(a, b, "-o", tmp_path / "soup").returncode != 0  # no silent overwrite
    assert run(tmp_path / "soup", a, "-o", tmp_path / "soup2").returncode == 0  # a soup of a soup
    _, _, _, meta2 = load_checkpoint(tmp_path / "soup2")
    assert meta2["averaged_from"][0]["averaged_from"][1]["path"] == str(b)  # nothing forgotten


@pytest.mark.parametrize("change", [{"dim": 48}, {"depth": 2}])
def test_different_models_are_refused(tmp_path, change):
    a = save_tiny_separator(tmp_path / "a")
    kind, cfg, state, _ = load_checkpoint(a)
    cfg["masker"].update(change)
    other = save_checkpoint(tmp_path / "b", kind, cfg, state)
    r = run(a, other, "-o", tmp_path / "soup")
    assert r.returncode != 0 and "not the same model" in r.stderr
    assert not (tmp_path / "soup").exists()


def test_one_checkpoint_or_bad_weights_are_refused(tmp_path):
    a = save_tiny_separator(tmp_path / "a")
    assert "at least two" in run(a, "-o", tmp_path / "s").stderr
    b = sibling(a, tmp_path / "b", 0.1)
    assert "one non-negative number" in run(a, b, "-o", tmp_path / "s", "--weights", "1").stderr
    json.loads((a / "meta.json").read_text())
