"""Codecformer: shapes, permutation invariance, persistence, the Sepformer cost model, recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import write_speech_manifest

from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.errors import CodecSepError
from codecsep.flops import count_parameters, macs_per_second
from codecsep.losses import pit_neg_si_sdr
from codecsep.separators.chunking import overlap_add
from codecsep.separators.codecformer import (
    PAPER_DAC16K,
    Codecformer,
    CodecformerConfig,
    CodecformerNet,
    PermutationAligner,
    SepformerConfig,
    SepformerCost,
    codec_reference,
    from_chunks,
    to_chunks,
)

torch.set_num_threads(1)
TINY_CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)


def tiny(mask: str = "softmax", **kw) -> Codecformer:
    torch.manual_seed(0)
    cfg = CodecformerConfig(dim=32, depth=1, heads=2, ffn_dim=64, mask=mask, **kw)
    return Codecformer(cfg, codec=MicaCodec(TINY_CODEC)).eval()


@pytest.mark.parametrize("mask", ["softmax", "sigmoid", "snake"])
def test_shapes_with_odd_lengths(mask):
    model = tiny(mask)
    for t in (1, 319, 4801):
        assert model(torch.randn(2, 1, t)).shape == (2, 2, t)
    assert model.separate_speakers(torch.randn(3001)).shape == (2, 1, 3001)
    assert model.separate_speakers(np.random.randn(2, 3001).astype("float32")).shape == (2, 2, 3001)
    with pytest.raises(CodecSepError, match="audio must be"):
        model.separate_speakers(torch.zeros(2, 2, 5))


def test_softmax_estimates_sum_to_the_mixture():
    """Mica's latent is a perfectly invertible MDCT and the masks sum to one over speakers."""
    model = tiny("softmax")
    mix = torch.randn(2, 1, 4001)
    assert torch.allclose(model(mix).sum(1), mix[:, 0], atol=1e-4)


def test_pit_loss_is_invariant_to_output_order():
    torch.manual_seed(0)
    refs, est = torch.randn(3, 2, 800), torch.randn(3, 2, 800)
    loss, perm = pit_neg_si_sdr(est, refs)
    loss_swapped, perm_swapped = pit_neg_si_sdr(est.flip(1), refs)
    assert torch.allclose(loss, loss_swapped)
    assert torch.equal(perm_swapped, perm.flip(1))
    exact, _ = pit_neg_si_sdr(refs.flip(1), refs)  # a swapped perfect answer is perfect
    assert (exact < -60).all()


def test_long_inputs_keep_speaker_order_across_windows():
    """A separator that swaps its outputs on every other window is re-aligned on the overlaps."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 5000), 0.5 * torch.randn(1, 5000)
    x = torch.stack([a, b])  # (2, C, T): the "true" speakers, passed along as the input
    calls = {"n": 0}

    def flaky(chunk):  # (2, C, w) -> (2, C, w), order flipped on odd windows
        calls["n"] += 1
        return chunk.flip(0) if calls["n"] % 2 == 0 else chunk

    out = overlap_add(x, 1000, 200, PermutationAligner(flaky, 5000, 1000, 200))
    assert calls["n"] >= 5 and torch.allclose(out, x, atol=1e-5)


def test_windowed_separation_keeps_shape_and_sums_to_the_mixture():
    model = tiny()
    wav = torch.randn(16000 * 2 + 33)
    whole = model.separate_speakers(wav)
    windowed = tiny(window_seconds=0.75, overlap_seconds=0.25)
    windowed.net.load_state_dict(model.net.state_dict())
    out = windowed.separate_speakers(wav)
    assert out.shape == whole.shape
    assert torch.allclose(out.sum(0), wav[None], atol=1e-4)  # still sums to the mixture


def test_save_load_round_trip(tmp_path):
    model = tiny("snake")
    path = model.save(tmp_path / "cf", meta={"step": 7})
    loaded = Codecformer.load(path, codec=model.codec)
    assert loaded.config == model.config and loaded.meta["step"] == 7
    for k, v in model.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v.half().float()), k
    wav = torch.randn(2001)
    assert torch.allclose(loaded.separate_speakers(wav), model.separate_speakers(wav), atol=1e-2)
    cfg = json.loads((path / "config.json").read_text())
    cfg["class"] = "codecsep"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CodecSepError, match="not a Codecformer"):
        Codecformer.load(path, codec=model.codec)


def test_latent_dim_mismatch_is_a_clear_error():
    with pytest.raises(CodecSepError, match="1024-d latents"):
        Codecformer(PAPER_DAC16K, codec=MicaCodec(TINY_CODEC))


def test_codec_reference_modes():
    codec = MicaCodec(TINY_CODEC).eval()
    src = torch.randn(2, 2, 1601)
    assert codec_reference(codec, src, "off") is src
    assert torch.allclose(codec_reference(codec, src, "latent"), src, atol=1e-4)  # MDCT: exact
    coded = codec_reference(codec, src, "codes", 2)
    assert coded.shape == src.shape and not torch.allclose(coded, src, atol=1e-2)
    with pytest.raises(CodecSepError, match="codec reference"):
        codec_reference(codec, src, "bogus")


def test_chunking_round_trip():
    x = torch.randn(2, 3, 1037)
    chunks = to_chunks(x, 250)
    assert chunks.shape[-1] == 250
    assert torch.allclose(from_chunks(chunks, 1037), 2 * x, atol=1e-5)  # every frame twice


def test_sepformer_cost_model_runs_and_dwarfs_codecformer():
    small = SepformerCost(SepformerConfig(filters=16, layers=1, dim=16, heads=2, ffn_dim=32,
                                          chunk=20)).eval()
    with torch.no_grad():
        assert small(torch.randn(2, 1, 1001)).shape == (2, 2, 1001)
    with torch.device("meta"):  # the full model's cost is counted on shapes alone: no compute
        sep, paper = SepformerCost().eval(), CodecformerNet(PAPER_DAC16K).eval()
    assert abs(count_parameters(sep) - 25.7e6) < 0.3e6  # Sepformer's published size
    sep_macs = macs_per_second(sep, torch.empty(1, 1, 8000, device="meta"), 0.5)
    paper_macs = macs_per_second(paper, torch.empty(1, 1024, 25, device="meta"), 0.5)
    assert 0.9e9 < paper_macs < 1.2e9  # ~1.05 GMACs/s on DAC-16k's 50 Hz latent
    assert sep_macs > 50 * paper_macs  # the paper reports 52x against Sepformer


def test_speech_clips_use_speakers_and_keep_tts_for_training(tmp_path):
    from codecsep.train.speech import speech_clips

    manifest = write_speech_manifest(tmp_path, ("a", "b", "tts-x"))
    assert {c.source_id for c in speech_clips(manifest, "train")} == {"a", "b", "tts-x"}
    assert {c.source_id for c in speech_clips(manifest, "train", tts=False)} == {"a", "b"}


def test_tiny_training_run_exports_a_loadable_model(tmp_path):
    from codecsep.train.loop import LoopConfig
    from codecsep.train.speech import SpeechRecipe, train_codecformer

    manifest = write_speech_manifest(tmp_path)
    codec = MicaCodec(TINY_CODEC)
    cfg = CodecformerConfig(dim=16, depth=1, heads=2, ffn_dim=32)
    out = train_codecformer(manifest, tmp_path / "run", cfg,
                            LoopConfig(steps=3, warmup=1, log_every=1, ckpt_every=3),
                            SpeechRecipe(batch_size=2, seconds=0.5), codec=codec)
    model = Codecformer.load(out, codec=codec)
    assert model.meta["step"] == 3 and (tmp_path / "run" / "log.csv").is_file()
