"""scripts/prune_layers.py: a masker without some of its layers, as a checkpoint."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import BANDSPLIT, TINY_MASKER, save_member
from torch import nn

from codecsep.flops import count_macs
from codecsep.separators.separator import Separator

ROOT = Path(__file__).resolve().parents[1]
COMBINE, PRUNE = (str(ROOT / "scripts" / s) for s in ("combine_maskers.py", "prune_layers.py"))


def run(script, *args):
    return subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True)


def skip_layers(masker, keep: list[int]) -> None:
    """Drop layers of a loaded masker in place: what the pruned checkpoint must compute."""
    if masker.config.trunk == "time":
        layers = masker.transformer.layers
        masker.transformer.layers = nn.ModuleList(layers[i] for i in keep)
    else:
        for name in ("time_layers", "band_layers"):
            setattr(masker, name, nn.ModuleList(getattr(masker, name)[i] for i in keep))


@pytest.mark.parametrize("masker, keep", [(replace(TINY_MASKER, depth=3), [0, 2]),
                                          (replace(BANDSPLIT, depth=3), [1])])
def test_a_pruned_masker_computes_the_original_without_the_dropped_layers(tmp_path, masker, keep):
    src = save_member(tmp_path, "src", masker, 1, shifts=2)
    r = run(PRUNE, src, "--keep", ",".join(map(str, keep)), "-o", tmp_path / "pruned")
    assert r.returncode == 0, r.stderr
    pruned, original = Separator.load(tmp_path / "pruned"), Separator.load(src)
    assert pruned.config.masker.depth == len(keep) and pruned.config.shifts == 2
    assert pruned.meta["pruned_from"]["keep"] == keep
    z, c = torch.randn(2, 320, 30).exp(), torch.randn(2, masker.cond_dim)
    with torch.no_grad():
        full = original.masker(z, c)
        skip_layers(original.masker, keep)
        assert torch.allclose(pruned.masker(z, c), original.masker(z, c), atol=1e-6)
        assert not torch.allclose(pruned.masker(z, c), full, atol=1e-3)
        assert count_macs(pruned.masker, z, c) < count_macs(Separator.load(src).masker, z, c)


def test_one_member_of_a_mask_mean_is_pruned_and_the_other_kept(tmp_path):
    a = save_member(tmp_path, "a", replace(TINY_MASKER, depth=2), 1)
    b = save_member(tmp_path, "b", replace(BANDSPLIT, depth=2), 2)
    assert run(COMBINE, a, b, "-o", tmp_path / "ens").returncode == 0
    r = run(PRUNE, tmp_path / "ens", "--member", 2, "--keep", "0", "-o", tmp_path / "pruned")
    assert r.returncode == 0, r.stderr
    pruned, second = Separator.load(tmp_path / "pruned"), Separator.load(b)
    assert pruned.config.masker.depth == 2 and pruned.config.ensemble[0].depth == 1
    z, c = torch.randn(1, 320, 20).exp(), torch.randn(1, TINY_MASKER.cond_dim)
    with torch.no_grad():
        skip_layers(second.masker, [0])
        mean = (Separator.load(a).masker(z, c) + second.masker(z, c)) / 2
        assert torch.allclose(pruned.masker(z, c), mean, atol=1e-6)


def test_bad_requests_are_refused_and_nothing_is_written(tmp_path):
    a = save_member(tmp_path, "a", replace(TINY_MASKER, depth=2), 1)
    assert run(COMBINE, a, a, "-o", tmp_path / "ens").returncode == 0
    for src, args, message in [(a, ["--keep", "2"], "within 0..1"),
                               (a, ["--keep", "1,0"], "increasing order"),
                               (a, ["--keep", "x"], "comma-separated"),
                               (a, ["--keep", "0", "--member", "2"], "has 1 masker"),
                               (tmp_path / "ens", ["--keep", "0"], "say which with --member")]:
        r = run(PRUNE, src, *args, "-o", tmp_path / "out")
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert not (tmp_path / "out").exists()
    assert run(PRUNE, a, "--keep", "0", "-o", a).returncode != 0  # an existing folder is kept
    assert Separator.load(a).config.masker.depth == 2


def test_a_member_written_alone_keeps_its_own_record(tmp_path):
    a = save_member(tmp_path, "a", replace(TINY_MASKER, depth=2), 1)
    b = save_member(tmp_path, "b", replace(BANDSPLIT, depth=2), 2)
    assert run(COMBINE, a, b, "-o", tmp_path / "ens").returncode == 0
    # the ensemble's own inference settings (which members, how combined) do not follow a member
    cfg = json.loads((tmp_path / "ens" / "config.json").read_text())
    cfg["config"].update(members=[1, 2], code_members=[2], combine="median")
    (tmp_path / "ens" / "config.json").write_text(json.dumps(cfg))
    for keep, out in (("0,1", "whole"), ("1", "pruned")):
        r = run(PRUNE, tmp_path / "ens", "--member", 2, "--keep", keep, "--alone", "-o", tmp_path / out)
        assert r.returncode == 0, r.stderr
    whole, pruned, second = (Separator.load(tmp_path / n) for n in ("whole", "pruned", "b"))
    assert whole.n_maskers == 1 and whole.config.masker == second.config.masker
    assert (whole.config.members, whole.config.code_members, whole.config.combine) == ((), (), "mean")
    assert pruned.meta["step"] == 200 and pruned.config.masker.depth == 1
    assert "--alone" in pruned.meta["history"][-1]["command"]
    z, c = torch.randn(1, 320, 20).exp(), torch.randn(1, TINY_MASKER.cond_dim)
    with torch.no_grad():
        assert torch.allclose(whole.masker(z, c), second.masker(z, c), atol=1e-6)  # extracted as is
        skip_layers(second.masker, [1])
        assert torch.allclose(pruned.masker(z, c), second.masker(z, c), atol=1e-6)
