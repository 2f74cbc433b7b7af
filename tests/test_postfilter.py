"""The spectral post-filter (`separators.postfilter`): what it keeps, what it removes, and that
it is an inference setting that checkpoints, eval runs, the CLI and ONNX exports carry."""

import argparse
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import TINY_MASKER, save_member

from codecsep.errors import CodecSepError
from codecsep.evaluate import EvalConfig
from codecsep.metrics import si_sdr
from codecsep.separators.base import apply_overrides, postfilter_arg
from codecsep.separators.postfilter import POOLS, PostFilter, apply_postfilter, postfilter_macs
from codecsep.separators.separator import Separator

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def two_tones(seconds: float = 1.0):
    t = torch.arange(int(seconds * SR)) / SR
    return 0.5 * torch.sin(2 * math.pi * 440 * t), 0.3 * torch.sin(2 * math.pi * 3000 * t)


def test_off_is_the_identity_and_on_keeps_target_plus_residual_the_mixture():
    gen = torch.Generator().manual_seed(0)
    for length in (300, 5000, 16000):  # shorter than n_fft / 2 too
        x = torch.randn(2, length, generator=gen)
        t = torch.randn(3, 2, length, generator=gen)
        both = torch.stack([t, x - t])
        assert apply_postfilter(x, both, PostFilter()) is both
        out = apply_postfilter(x, both, PostFilter(2048, 1.25))
        assert out.shape == both.shape and torch.isfinite(out).all()
        assert torch.allclose(out[0] + out[1], x.expand_as(out[0]), atol=1e-5)
    silent = torch.zeros(1, 4000)
    out = apply_postfilter(silent, torch.zeros(2, 1, 1, 4000), PostFilter(1024))
    assert torch.equal(out, torch.zeros_like(out))  # no NaN from 0 / 0


def test_errors_outside_the_mixture_go_away_and_a_clean_split_stays():
    """The output is always a re-split mixture: an estimate's broadband error that the mixture
    does not hold (what frame-wise latent masks leave) is removed; a right split is kept."""
    a, b = two_tones()
    x = (a + b)[None]
    noise = 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    noisy = torch.stack([(a + noise)[None, None], (b - noise)[None, None]])
    out = apply_postfilter(x, noisy, PostFilter(2048, 1.0))
    assert si_sdr(out[0, 0, 0], a) > si_sdr(noisy[0, 0, 0], a) + 10
    clean = torch.stack([a[None, None], b[None, None]])
    assert si_sdr(apply_postfilter(x, clean, PostFilter(2048, 1.0))[0, 0, 0], a) > 40


def test_settings_are_checked_and_parsed():
    assert PostFilter.parse("2048") == PostFilter(2048, 1.0)
    assert PostFilter.parse("4096,1.25") == PostFilter(4096, 1.25)
    assert not PostFilter.parse("0").enabled and PostFilter.parse("0").tag == ""
    assert PostFilter.parse({"n_fft": 1024, "power": 2}).tag == "postfilter:1024^2"
    for bad in ("abc", "2048,1,2", "10", "2050", "2048,0", "2048,-1"):
        with pytest.raises(CodecSepError, match="postfilter"):
            PostFilter.parse(bad)
        with pytest.raises(argparse.ArgumentTypeError):
            postfilter_arg(bad)
    assert postfilter_arg("2048, 1.25") == "2048,1.25"
    # four FFT passes per prompt: about 3.4 MMACs per second at 2048, nothing when off
    assert 3e6 < postfilter_macs(PostFilter(2048), SR) < 4e6 and postfilter_macs(PostFilter(), SR) == 0
    assert postfilter_macs(PostFilter(2048), SR, n_prompts=2) == 2 * postfilter_macs(PostFilter(2048), SR)


def test_the_setting_travels_with_checkpoints_eval_runs_and_onnx(tmp_path):
    from codecsep.export import OnnxSeparator, export_onnx

    path = save_member(tmp_path, "sep", TINY_MASKER, 1)
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path),
                        "--like", str(path), "--postfilter", "1024,1.25"], capture_output=True, text=True)
    assert r.returncode == 0 and "postfilter:1024^1.25" in r.stdout, r.stderr
    sep = Separator.load(path)
    assert sep.postfilter == PostFilter(1024, 1.25) and sep.inference_tag().endswith("postfilter:1024^1.25")
    wav = torch.randn(1, 9000, generator=torch.Generator().manual_seed(0)) * 0.1
    on = sep.separate(wav, ["dog"])
    assert torch.allclose(on["target"] + on["residual"], wav, atol=1e-5)
    off = Separator.load(path)
    apply_overrides(off, {"postfilter": "0"}, "it")
    assert not off.postfilter.enabled and "postfilter" not in off.inference_tag()
    assert si_sdr(off.separate(wav, ["dog"])["target"], on["target"]).min() < 40  # the setting acts
    onnx_sep = OnnxSeparator(export_onnx(sep, tmp_path / "onnx"), threads=1)
    assert onnx_sep.manifest["postfilter"] == {"n_fft": 1024, "power": 1.25}
    assert si_sdr(onnx_sep.separate(wav, ["dog"])["target"], on["target"]).min() >= 40
    cfg = EvalConfig(model="codecsep", protocol="two_source", postfilter="0")
    assert cfg.command().endswith("--postfilter 0") and cfg.model_label == "codecsep --postfilter 0"
    with pytest.raises(CodecSepError, match="postfilter"):
        Separator(replace(sep.config, postfilter=PostFilter.parse("0")), codec=sep.codec,
                  text_encoder=sep.text_encoder).postfilter = "7"


def test_code_streams_refuse_the_post_filter_on_the_command_line(tmp_path, capsys):
    from codecsep.cli import main

    path = save_member(tmp_path, "sep", TINY_MASKER, 1)
    codes = tmp_path / "in.codes"
    codes.write_bytes(b"")
    code = main(["separate", str(codes), "--codes-in", "--prompt", "dog", "--postfilter", "2048",
                 "--model", str(path), "-o", str(tmp_path / "out")])
    assert code != 0 and "--postfilter works on audio input" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_speakers_go_through_the_post_filter_and_it_is_part_of_their_fingerprint(tmp_path):
    """Codecformer: K = 2 speakers re-split the mixture (they still sum to it); the setting is
    set by `set_inference.py --postfilter` and changes the speech results' fingerprint."""
    from helpers import TINY_CODEC

    from codecsep.codecs.mica import MicaCodec
    from codecsep.separators.codecformer import Codecformer, CodecformerConfig
    from codecsep.speech_eval import fingerprint

    torch.manual_seed(0)
    model = Codecformer(CodecformerConfig(dim=32, depth=1, heads=2, ffn_dim=64),
                        codec=MicaCodec(TINY_CODEC)).eval()
    path = model.save(tmp_path / "cf", meta={"step": 1})
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path),
                        "--postfilter", "1024"], capture_output=True, text=True)
    assert r.returncode == 0 and "postfilter:1024^1" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "scripts/set_inference.py"), str(path),
                        "--postfilter", "1024", "--shifts", "2"], capture_output=True, text=True)
    assert r.returncode != 0 and "--postfilter only" in r.stderr
    on, off = Codecformer.load(path, codec=model.codec), Codecformer.load(path, codec=model.codec)
    off.config = replace(off.config, postfilter=PostFilter())
    wav = torch.randn(1, 6000, generator=torch.Generator().manual_seed(0)) * 0.1
    speakers = on.separate_speakers(wav)
    assert speakers.shape == (2, 1, 6000) and torch.allclose(speakers.sum(0), wav, atol=1e-5)
    assert si_sdr(speakers[0], off.separate_speakers(wav)[0]).min() < 40  # the setting acts
    assert fingerprint(on) == fingerprint(off) + "+postfilter:1024^1"


# ------------------------------------------------------------------ the learned refinement
def refined_ensemble(root: Path, width: int = 8, trained: bool = True) -> Separator:
    """A tiny three-masker ensemble (median) whose post-filter has a `PostNet`; `trained`: every
    weight moved off its init (the refinement's zero output layer too)."""
    from helpers import save_tiny_codec

    from codecsep.codecs import load_codec
    from codecsep.separators.separator import SeparatorConfig
    from codecsep.text.base import get_text_encoder

    codec_dir = root / "codec"
    if not codec_dir.exists():
        save_tiny_codec(codec_dir)
    cfg = SeparatorConfig(codec=str(codec_dir), text_encoder="hash", masker=TINY_MASKER,
                          ensemble=(TINY_MASKER, TINY_MASKER), combine="median",
                          postfilter=PostFilter(1024, 1.25, net=width))
    torch.manual_seed(0)
    sep = Separator(cfg, codec=load_codec(str(codec_dir)), text_encoder=get_text_encoder("hash"))
    for name, p in sep.masker.named_parameters():  # the members first: the same either way
        if trained or not name.startswith("postnet."):
            p.data += (0.5 if name.startswith("postnet.") else 0.05) * torch.randn_like(p)
    return sep.eval()


def test_an_untrained_refinement_is_the_analytic_filter_and_a_trained_one_still_re_splits(tmp_path):
    wav = torch.randn(2, 9000, generator=torch.Generator().manual_seed(0)) * 0.1
    fresh = refined_ensemble(tmp_path, trained=False)
    analytic = refined_ensemble(tmp_path, trained=False)
    analytic.postfilter = "1024,1.25"  # an override: the analytic ratio only
    assert fresh.refiner is not None and analytic.refiner is None
    a, b = fresh.separate(wav, ["dog", "cat"]), analytic.separate(wav, ["dog", "cat"])
    assert si_sdr(a["target"], b["target"]).min() > 50  # equal up to the logs' epsilon
    trained = refined_ensemble(tmp_path).separate(wav, ["dog", "cat"])
    assert trained["target"].shape == (2, 2, 9000)
    both = trained["target"] + trained["residual"]
    assert torch.allclose(both, wav.expand(2, 2, 9000), atol=1e-5)
    assert si_sdr(trained["target"], a["target"]).min() < 40  # the network acts


def test_the_refinement_runs_only_where_it_was_trained_and_travels_with_the_checkpoint(tmp_path):
    sep = refined_ensemble(tmp_path)
    assert sep.inference_tag().endswith("postfilter:1024^1.25+net8")
    path = sep.save(tmp_path / "refined")
    again = Separator.load(path)
    stored = sep.masker.postnet.net[-1].weight.half().float()  # checkpoints keep float16
    assert torch.equal(again.masker.postnet.net[-1].weight, stored)
    wav = torch.randn(1, 7000, generator=torch.Generator().manual_seed(1)) * 0.1
    reloaded, ref = again.separate(wav, ["dog"]), sep.separate(wav, ["dog"])
    assert si_sdr(reloaded["target"], ref["target"]).min() > 30
    again.members = "1,2"  # other members than it was trained on: the analytic ratio serves
    assert again.refiner is None and again.inference_tag().endswith("postfilter:1024^1.25")
    out = again.separate(wav, ["dog"])
    assert torch.allclose(out["target"] + out["residual"], wav, atol=1e-5)
    # its cost is counted: the members' decodes and STFTs, the network and its neighbourhoods
    extra = sep.postfilter_macs(SR) - postfilter_macs(PostFilter(1024, 1.25), SR)
    assert extra > postfilter_macs(PostFilter(1024, 1.25), SR)
    assert again.postfilter_macs(SR) == postfilter_macs(PostFilter(1024, 1.25), SR)
    with pytest.raises(CodecSepError, match="net"):
        PostFilter(0, 1.0, net=8)
    learned = PostFilter.parse({"n_fft": 1024, "power": 1.25, "net": 8})
    assert learned.analytic == PostFilter(1024, 1.25)


def test_the_refinement_is_exported_to_onnx_and_matches_pytorch(tmp_path):
    from codecsep.export import OnnxSeparator, export_onnx

    sep = refined_ensemble(tmp_path)
    exported = OnnxSeparator(export_onnx(sep, tmp_path / "onnx", prompts=["dog"]), threads=1)
    assert exported.manifest["postfilter"] == {"n_fft": 1024, "power": 1.25, "net": 8,
                                               "pools": [list(k) for k in POOLS]}
    assert exported.postfilter == sep.postfilter
    assert (tmp_path / "onnx" / "postnet.onnx").is_file()
    wav = torch.randn(1, 9000, generator=torch.Generator().manual_seed(2)) * 0.1
    ref = sep.separate(wav, ["dog", "cat"])
    for prompts in (["dog", "cat"], ["dog"]):  # embedded now, and the baked-in prompt
        out = exported.separate(wav, prompts)
        assert si_sdr(out["target"], ref["target"][: len(prompts)]).min() > 40
    latent = sep.codec.encode(wav[None])
    expected = sep.mask_latent(latent, sep.embed(["dog"]))
    assert torch.allclose(exported.mask_latent(latent, ["dog"]), expected, atol=1e-4)


def _pooled_by_definition(v, k):
    """The refinement's neighbourhood mean as defined: avg_pool2d over a replicate-padded input."""
    pad = (k[1] // 2, k[1] // 2, k[0] // 2, k[0] // 2)
    return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(v, pad, mode="replicate"), k,
                                          stride=1)


def test_neighbourhood_means_by_cumulative_sums_equal_average_pooling():
    from codecsep.separators.postfilter import _box_mean

    g = torch.Generator().manual_seed(3)
    # log-magnitude-like values: a large offset and a trend, where plain float32 sums drift
    v = torch.randn(2, 5, 2049, 40, generator=g) * 3 - 9 + torch.linspace(0, 6, 40)
    for k in POOLS + ((1, 1), (5, 7), (31, 1)):
        got = _box_mean(_box_mean(v, k[0], 2), k[1], 3)
        assert (got - _pooled_by_definition(v, k)).abs().max() < 2e-5, k
    short = v[:, :, :4, :2]  # windows longer than the axis: the edges repeat
    assert torch.allclose(_box_mean(short, 9, 2), _pooled_by_definition(short, (9, 1)), atol=1e-5)


def test_the_shipped_refinement_computes_what_it_was_trained_as():
    """PostNet's fast path (cumulative sums, channels-last products) against its definition
    (average pooling and the 1x1 convolutions it stores) on the shipped default's weights."""
    from codecsep.demo import DEFAULT_MODEL

    net = Separator.load(DEFAULT_MODEL).masker.postnet
    g = torch.Generator().manual_seed(4)
    bins, frames = 2049, 30
    log_x = torch.randn(2, bins, frames, generator=g) * 2 - 6
    log_t = log_x - torch.rand(2, bins, frames, generator=g) * 4
    log_r = log_x - torch.rand(2, bins, frames, generator=g) * 4
    members = (log_t - log_r) * net.power + torch.randn(net.n_members, 2, bins, frames,
                                                        generator=g)
    with torch.no_grad():
        fast = net(log_t, log_r, log_x, members)
        ref = log_x.mean(dim=(1, 2), keepdim=True)
        ratio, level = (log_t - log_r)[:, None], (log_x - ref)[:, None]
        spread = members.transpose(0, 1) - net.power * ratio
        freq = torch.linspace(-1, 1, bins).view(1, 1, -1, 1).expand_as(ratio)
        feats = [ratio, level, (log_t - ref)[:, None], freq, spread]
        feats += [_pooled_by_definition(v, k) for k in net.pools for v in (ratio, level, spread)]
        slow = net.net(torch.cat(feats, 1))[:, 0]
    assert fast.abs().max() > 0.1  # a trained correction, not the zero of an untrained one
    assert (fast - slow).abs().max() < 1e-4


def test_misi_rounds_keep_the_parts_summing_to_the_mixture_and_show_in_the_tag():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 12000, generator=g) * 0.1
    t = 0.4 * x + 0.02 * torch.randn(1, 12000, generator=g)
    parts = torch.stack([t, x - t])
    plain = apply_postfilter(x, parts, PostFilter(1024, 1.25))
    misi = apply_postfilter(x, parts, PostFilter(1024, 1.25, misi=2))
    assert torch.allclose(misi.sum(0), x, atol=1e-5)
    assert 10 < si_sdr(misi[0], plain[0]).item() < 80  # other phases, the same magnitudes roughly
    assert PostFilter(1024, 1.25, misi=2).tag == "postfilter:1024^1.25+misi2"
    assert PostFilter.parse({"n_fft": 1024, "misi": 2}).misi == 2
    with pytest.raises(CodecSepError, match="misi"):
        PostFilter(1024, misi=-1)
