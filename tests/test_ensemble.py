"""Mask averaging: `MaskMean`, ensemble checkpoints (scripts/combine_maskers.py), `--members`,
and the maskers code streams run (`code_members`)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import BANDSPLIT, TINY_MASKER, load_script, save_member

from codecsep.checkpoint import load_checkpoint
from codecsep.codecs import load_codec
from codecsep.errors import CodecSepError
from codecsep.evaluate import EvalConfig
from codecsep.separators.base import apply_overrides
from codecsep.separators.masker import MaskerConfig, MaskMean, build_masker, combine_masks
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.base import get_text_encoder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts/combine_maskers.py")
def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_ensemble_mask_is_the_mean_and_one_member_is_the_first_model(tmp_path):
    a = save_member(tmp_path, "a", TINY_MASKER, 1, shifts=2)
    b = save_member(tmp_path, "b", BANDSPLIT, 2)
    r = run(a, b, "-o", tmp_path / "ens")
    assert r.returncode == 0, r.stderr
    ens, first, second = (Separator.load(p) for p in (tmp_path / "ens", a, b))
    assert ens.config.ensemble == (BANDSPLIT,) and ens.config.shifts == 2  # inference from a
    z, c = torch.randn(2, 320, 30).exp(), torch.randn(2, TINY_MASKER.cond_dim)
    with torch.no_grad():
        mean = (first.masker(z, c) + second.masker(z, c)) / 2
        assert torch.allclose(ens.masker(z, c), mean, atol=1e-6)
    wav = torch.randn(1, 4000) * 0.1
    both = ens.separate(wav, ["dog", "violin"])
    assert torch.allclose(both["target"] + both["residual"], wav.expand(2, 1, 4000), atol=1e-4)
    ens.members = 1
    assert ens.inference_tag().endswith("members:1")
    assert torch.equal(ens.separate(wav, ["dog"])["target"], first.separate(wav, ["dog"])["target"])
    assert not torch.allclose(both["target"][:1], first.separate(wav, ["dog"])["target"], atol=1e-4)
    _, _, _, meta = load_checkpoint(tmp_path / "ens")
    assert [m["path"] for m in meta["combined_from"]] == [str(a), str(b)]
    assert meta["step"] == 200 and "combine_maskers.py" in meta["trained_by"]
    assert run(a, b, "-o", tmp_path / "ens").returncode != 0  # no silent overwrite


def test_inputs_that_cannot_share_a_latent_and_prompt_are_refused(tmp_path):
    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    wide = save_member(tmp_path, "wide", replace(TINY_MASKER, cond_dim=384), 2, text_encoder="minilm")
    r = run(a, wide, "-o", tmp_path / "x")
    assert r.returncode != 0 and "text encoder" in r.stderr and not (tmp_path / "x").exists()
    assert "at least two" in run(a, "-o", tmp_path / "x").stderr
    assert run(a, a, "-o", tmp_path / "ens").returncode == 0
    r = run(tmp_path / "ens", a, "-o", tmp_path / "x")
    assert r.returncode != 0 and "already an ensemble" in r.stderr
    with pytest.raises(ValueError, match="share latent_dim and cond_dim"):
        MaskMean([build_masker(m) for m in (TINY_MASKER, replace(TINY_MASKER, cond_dim=384))])


@pytest.mark.parametrize("bad", [0, 3, 1.5, True, (), (1, 1), "1,x", "2,3"])
def test_members_outside_the_ensemble_are_refused(tmp_path, bad):
    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    assert run(a, a, "-o", tmp_path / "ens").returncode == 0
    ens, single = Separator.load(tmp_path / "ens"), Separator.load(a)
    with pytest.raises(CodecSepError, match="members must be distinct whole numbers from 1 to 2"):
        ens.members = bad
    single.members = 1  # a single masker is its own first member
    with pytest.raises(CodecSepError, match="from 1 to 1"):
        apply_overrides(single, {"members": 2}, "it")


def test_members_is_an_inference_setting_of_eval_runs():
    from codecsep.evaluate import default_out_dir
    from codecsep.separators.base import members_arg

    cfg = EvalConfig(model="codecsep", protocol="two_source", members=1)
    assert cfg.model_label == "codecsep --members 1" and cfg.command().endswith("--members 1")
    assert members_arg("2") == 2 and members_arg("1, 2") == "1,2"  # what results record
    cfg = EvalConfig(model="codecsep", protocol="two_source", members=members_arg("1,2"))
    assert cfg.command().endswith("--members 1,2") and "-members1+2" in str(default_out_dir(cfg))
    with pytest.raises(Exception, match="masker numbers"):
        members_arg("one")


def test_any_member_runs_alone_and_code_streams_run_the_code_members(tmp_path):
    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    b = save_member(tmp_path, "b", BANDSPLIT, 2)
    assert run(a, b, "-o", tmp_path / "ens").returncode == 0
    second = Separator.load(b)
    ens = Separator.load(tmp_path / "ens")
    wav = torch.randn(1, 4000) * 0.1
    codes = ens.codec.quantize(ens.codec.encode(wav[None]))
    full = ens.separate(wav, ["dog"])["target"]
    full_codes = ens.separate_codes(codes, ["dog"])["target"]
    ens.members = 2  # the second member alone, on both paths
    assert ens.inference_tag().endswith("members:2")
    assert torch.equal(ens.separate(wav, ["dog"])["target"], second.separate(wav, ["dog"])["target"])
    assert torch.equal(ens.separate_codes(codes, ["dog"])["target"],
                       second.separate_codes(codes, ["dog"])["target"])
    ens.members = "1,2"
    assert torch.equal(ens.separate(wav, ["dog"])["target"], full)
    assert "members" not in ens.inference_tag()

    # code_members: code streams run member 2 alone, waveforms still average both
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(tmp_path / "ens"),
                        "--like", str(tmp_path / "ens"), "--code-members", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ens = Separator.load(tmp_path / "ens")
    assert ens.config.code_members == (2,) and ens.members == (1, 2) and ens.code_members == (2,)
    assert torch.equal(ens.separate(wav, ["dog"])["target"], full)
    assert torch.equal(ens.separate_codes(codes, ["dog"])["target"],
                       second.separate_codes(codes, ["dog"])["target"])
    assert not torch.equal(ens.separate_codes(codes, ["dog"])["target"], full_codes)
    ens.members = "1,2"  # an explicit choice applies to code streams too
    assert torch.equal(ens.separate_codes(codes, ["dog"])["target"], full_codes)
    assert "inference settings" in ens.meta["history"][-1]["note"]

    bad = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(tmp_path / "ens"),
                          "--like", str(tmp_path / "ens"), "--code-members", "3"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "from 1 to 2" in bad.stderr
    assert Separator.load(tmp_path / "ens").config.code_members == (2,)  # nothing written

    # config members: the maskers waveforms run by default (here member 1; code streams member 2)
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(tmp_path / "ens"),
                        "--like", str(tmp_path / "ens"), "--members", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ens = Separator.load(tmp_path / "ens")
    assert (ens.members, ens.code_members) == ((1,), (2,)) and ens.inference_tag().endswith("members:1")
    assert torch.equal(ens.separate(wav, ["dog"])["target"], Separator.load(a).separate(wav, ["dog"])["target"])
    ens.members = "1,2"  # the override still reaches every masker
    assert torch.equal(ens.separate(wav, ["dog"])["target"], full)
    with pytest.raises(CodecSepError, match="code_members must be"):
        Separator(replace(ens.config, code_members=(3,)), codec=ens.codec)


def test_ensemble_cost_is_the_members_costs(tmp_path):
    from codecsep.flops import count_macs

    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    b = save_member(tmp_path, "b", BANDSPLIT, 2)
    assert run(a, b, "-o", tmp_path / "ens").returncode == 0
    z, c = torch.randn(1, 320, 50).exp(), torch.randn(1, TINY_MASKER.cond_dim)
    parts = [count_macs(Separator.load(p).masker, z, c) for p in (a, b)]
    ens = Separator.load(tmp_path / "ens")
    assert count_macs(ens.mask, z, c) == sum(parts)
    assert count_macs(ens.mask, z, c, (2,)) == parts[1]
    ens.members = 1
    assert count_macs(ens.mask, z, c) == parts[0]


def test_ensemble_exports_to_onnx_and_matches(tmp_path):
    pytest.importorskip("onnxruntime")
    from codecsep.export import OnnxSeparator, export_onnx
    from codecsep.metrics import si_sdr

    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    b = save_member(tmp_path, "b", BANDSPLIT, 2)
    assert run(a, b, "-o", tmp_path / "ens").returncode == 0
    sep = Separator.load(tmp_path / "ens")
    onnx_sep = OnnxSeparator(export_onnx(sep, tmp_path / "onnx", prompts=["dog"]), threads=1)
    wav = torch.randn(1, 8000) * 0.1
    ref = sep.separate(wav, ["dog"])["target"][0, 0]
    got = torch.as_tensor(onnx_sep.separate(wav.numpy(), ["dog"])["target"])[0, 0]
    assert si_sdr(got, ref) > 40
    # one member exported (the default's code-stream path): the graph holds that masker only
    sep.members = 2
    out = export_onnx(sep, tmp_path / "onnx2", prompts=["dog"])
    assert json.loads((out / "onnx.json").read_text())["members"] == [2]
    codes = sep.codec.quantize(sep.codec.encode(wav[None]))
    ref = Separator.load(b).separate_codes(codes, ["dog"])["target"]
    got = OnnxSeparator(out, threads=1).separate_codes(codes, ["dog"])["target"]
    assert (got != ref).float().mean() < 0.01  # the same codes but for rare rounding flips


def test_the_bench_counts_code_streams_through_the_code_members(tmp_path):
    from codecsep.bench import separator_bench

    a = save_member(tmp_path, "a", TINY_MASKER, 1)
    b = save_member(tmp_path, "b", BANDSPLIT, 2)
    assert run(a, b, "-o", tmp_path / "ens").returncode == 0
    ens = Separator.load(tmp_path / "ens")
    both = separator_bench(ens).costs(1.0)
    ens = Separator(replace(ens.config, code_members=(2,)), codec=ens.codec)
    costs = separator_bench(ens).costs(1.0)
    alone = separator_bench(Separator.load(b)).costs(1.0)
    assert costs["codes"] == alone["codes"] < both["codes"]  # code streams: member 2 only
    assert costs["waveform"] == both["waveform"] > alone["waveform"]  # waveforms: both


def test_median_of_masks_ignores_one_outlier_per_bin_and_exports(tmp_path):
    """`combine: median`: bin by bin, the middle of three masks (one member's outlier does not
    move it); with two members it is the mean; it is an inference setting that exports."""
    from codecsep.export import OnnxSeparator, export_onnx
    from codecsep.metrics import si_sdr

    a, b, c = torch.rand(3, 2, 8, 5).unbind(0)
    assert torch.equal(combine_masks([a, b, c], "median"), torch.stack([a, b, c]).median(0).values)
    wild = c.clone()
    wild[0] = 1e3  # one member far off on a whole item
    assert torch.allclose(combine_masks([a, b, wild], "median")[0], torch.maximum(a, b)[0])
    assert torch.allclose(combine_masks([a, b], "median"), (a + b) / 2)
    four = [a, b, c, wild]
    assert torch.equal(combine_masks(four, "median"), torch.stack(four).median(0).values)
    with pytest.raises(ValueError, match="combine must be one of"):
        combine_masks([a, b], "max")

    members = [save_member(tmp_path, n, m, s) for n, m, s in
               (("a", TINY_MASKER, 1), ("b", BANDSPLIT, 2), ("c", TINY_MASKER, 3))]
    assert run(*members, "-o", tmp_path / "ens").returncode == 0
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(tmp_path / "ens"),
                        "--like", str(tmp_path / "ens"), "--combine", "median"], capture_output=True, text=True)
    assert r.returncode == 0 and "combine median" in r.stdout, r.stderr
    ens = Separator.load(tmp_path / "ens")
    assert ens.config.combine == "median" and ens.inference_tag().endswith("combine:median")
    z, cond = torch.randn(2, 320, 30).exp(), torch.randn(2, TINY_MASKER.cond_dim)
    with torch.no_grad():
        masks = [Separator.load(p).masker(z, cond) for p in members]
        assert torch.allclose(ens.mask(z, cond), torch.stack(masks).median(0).values, atol=1e-6)
        ens.members = "1,2"  # two of three: the mean again
        assert torch.allclose(ens.mask(z, cond), (masks[0] + masks[1]) / 2, atol=1e-6)
    ens.members = "1,2,3"
    wav = torch.randn(1, 7000, generator=torch.Generator().manual_seed(0)) * 0.1
    onnx_sep = OnnxSeparator(export_onnx(ens, tmp_path / "onnx"), threads=1)
    assert onnx_sep.manifest["combine"] == "median" and onnx_sep.manifest["members"] == [1, 2, 3]
    ref, out = ens.separate(wav, ["dog"]), onnx_sep.separate(wav, ["dog"])
    assert si_sdr(out["target"], ref["target"]).min() >= 40
    mean = Separator.load(tmp_path / "ens")
    mean.config = replace(mean.config, combine="mean")
    assert si_sdr(mean.separate(wav, ["dog"])["target"], ref["target"]).min() < 60  # the setting acts
    with pytest.raises(CodecSepError, match="combine must be one of"):
        Separator(replace(ens.config, combine="vote"), codec=ens.codec, text_encoder=ens.text_encoder)


def test_the_stack_probes_combiner_starts_as_the_median_and_mixes_its_candidates():
    probe = load_script("stack_probe")
    torch.manual_seed(0)
    masks = [torch.rand(2, 8, 5) for _ in range(3)]
    latent = torch.randn(2, 8, 5)
    stacker = probe.Stacker(3)
    median = combine_masks(masks, "median")
    assert torch.allclose(stacker(masks, latent), median, atol=0.02)  # softmax bias 6 on the median
    with torch.no_grad():
        stacker.net[-1].bias.copy_(torch.tensor([0.0, 9.0, 0.0, 0.0]))  # member 1 instead
    out = stacker(masks, latent)
    assert torch.allclose(out, masks[0], atol=0.01)
    assert out.min() >= 0 and out.max() <= 1  # a convex mix of bounded masks stays bounded
