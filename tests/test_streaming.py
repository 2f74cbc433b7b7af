"""Streaming separation: lengths, latency, frame alignment, and closeness to offline output."""

from __future__ import annotations

import pytest
import torch
from helpers import save_tiny_separator

from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.errors import CodecSepError
from codecsep.metrics import si_sdr
from codecsep.separators.separator import Separator
from codecsep.separators.streaming import (
    StreamingSeparator,
    algorithmic_latency_ms,
    stream_all,
    streaming_vs_offline,
)

torch.set_num_threads(1)
SR, HOP = 16000, 320


class FrameGainSeparator:
    """A separator whose mask is a fixed gain per MDCT coefficient: each output frame depends on
    its input frame only, so streaming must reproduce offline output exactly if (and only if)
    its windows are aligned to the hop and it never emits a sample before both of its frames
    are complete."""

    sample_rate = SR

    def __init__(self):
        self.codec = MicaCodec(MicaConfig(channels=8, depth=1, n_codebooks=1, codebook_size=4))
        self.gain = torch.rand(HOP, 1, generator=torch.Generator().manual_seed(0))

    def embed(self, prompts):
        return torch.zeros(len(prompts), 4)

    def separate(self, audio, prompts, cond=None):
        z = self.codec.encode(audio.unsqueeze(1))  # (C, D, F)
        target = self.codec.decode(z * self.gain, audio.shape[-1])[:, 0]
        target = target.unsqueeze(0).expand(cond.shape[0], *target.shape)
        return {"target": target, "residual": audio - target}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Separator.load(save_tiny_separator(tmp_path_factory.mktemp("model")))


def noise(channels: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(channels, length, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_latency_is_block_plus_one_hop():
    assert algorithmic_latency_ms(3200, HOP, SR) == pytest.approx(220.0)
    s = StreamingSeparator(FrameGainSeparator(), ["x"], block_seconds=0.19, context_seconds=0)
    assert s.block == 3200 and s.context == HOP  # rounded up to whole hops, context >= 1 hop
    assert s.latency_ms == pytest.approx(220.0)


@pytest.mark.parametrize("block,push", [(0.2, 3200), (0.05, 1000), (0.02, 7)])
def test_output_length_equals_input_length(block, push):
    x = noise(2, SR + 123)
    stream = StreamingSeparator(FrameGainSeparator(), ["a", "b"], block, 0.5)
    out = stream_all(stream, x, push)
    assert out["target"].shape == out["residual"].shape == (2, 2, x.shape[-1])
    assert torch.allclose(out["target"] + out["residual"], x.expand(2, -1, -1), atol=1e-6)


def test_frame_local_masks_stream_exactly_like_offline():
    sep, x = FrameGainSeparator(), noise(1, 2 * SR + 77)
    offline = sep.separate(x, ["x"], cond=sep.embed(["x"]))["target"]
    for block, context in [(0.02, 0.0), (0.2, 0.05), (0.13, 1.0)]:
        streamed = stream_all(StreamingSeparator(sep, ["x"], block, context), x, 555)["target"]
        assert si_sdr(streamed, offline).min() > 60


@pytest.mark.parametrize("lookahead", [0.0, 0.05])
def test_latency_is_bounded_while_streaming(lookahead):
    stream = StreamingSeparator(FrameGainSeparator(), ["x"], 0.1, 0.5, lookahead_seconds=lookahead)
    received = emitted = 0
    for _ in range(20):
        emitted += stream.push(noise(1, stream.block))["target"].shape[-1]
        received += stream.block
        assert received - emitted <= stream.block + stream.hop + stream.lookahead  # the latency
        assert emitted == 0 or received - emitted == stream.hop + stream.lookahead
    assert emitted + stream.flush()["target"].shape[-1] == received


def test_lookahead_is_rounded_to_hops_and_adds_to_the_latency():
    s = StreamingSeparator(FrameGainSeparator(), ["x"], 0.2, 1.0, lookahead_seconds=0.03)
    assert s.lookahead == 2 * HOP and s.latency_ms == pytest.approx(200 + 20 + 40)
    assert StreamingSeparator(FrameGainSeparator(), ["x"], 0.2, 1.0).lookahead == 0
    with pytest.raises(CodecSepError, match="lookahead_seconds"):
        StreamingSeparator(FrameGainSeparator(), ["x"], 0.2, 1.0, lookahead_seconds=-0.02)


@pytest.mark.parametrize("block,context,lookahead,seconds", [
    (0.2, 2.0, 0.0, 3), (0.1, 1.0, 0.06, 3), (0.02, 0.0, 0.0, 1), (1.0, 10.0, 0.02, 12)])
def test_constant_masks_stream_exactly_through_the_real_separator(tiny, monkeypatch, block,
                                                                  context, lookahead, seconds):
    """The bench's path (Separator.separate: windows, mask_latent, MDCT, decode) with the mask
    fixed to 1 and to a gain per coefficient: the stream must give the input back exactly, and
    exactly the offline output. Past `window_seconds` (12 s, 10 s of context) `separate` cuts
    windows off the hop grid, so only the identity mask is grid-independent there."""
    x = noise(1, seconds * SR + 77, seed=2)
    gain = torch.rand(HOP, 1, generator=torch.Generator().manual_seed(1))
    masks = ((torch.ones(HOP, 1), 1234), (gain, 1234), (gain, 999))
    for mask, push in masks[:1] if seconds > tiny.config.window_seconds else masks:
        monkeypatch.setattr(tiny.masker, "forward", lambda z, cond, m=mask: m.expand_as(z))
        stream = StreamingSeparator(tiny, ["dog"], block, context, lookahead_seconds=lookahead)
        streamed = stream_all(stream, x, push)["target"]
        offline = tiny.separate(x, ["dog"])["target"]
        assert torch.allclose(streamed, offline, atol=1e-5)
        if mask.min() == 1:
            assert torch.allclose(streamed[0], x, atol=1e-5)


def test_each_block_is_the_offline_separation_of_its_window(tiny):
    """What streaming computes, written out: after each block, separate the window [emitted -
    context, received) offline and emit [emitted, received - hop - lookahead) of it."""
    x = noise(1, SR, seed=3)
    stream = StreamingSeparator(tiny, ["dog"], 0.1, 0.3, lookahead_seconds=0.04)
    emitted = 0
    for received in range(stream.block, x.shape[-1] + 1, stream.block):
        out = stream.push(x[:, received - stream.block: received])["target"]
        end = received - stream.hop - stream.lookahead
        start = max(0, emitted - stream.context)
        window = tiny.separate(x[:, start:received], ["dog"], cond=stream.cond)["target"]
        assert torch.allclose(out, window[..., emitted - start: end - start], atol=1e-5)
        emitted = end


def test_lookahead_brings_a_non_causal_masker_closer_to_offline(tiny):
    x = noise(1, 3 * SR, seed=1)
    gaps = [streaming_vs_offline(tiny, x, ["dog barking"], 0.1, 0.5, lookahead_seconds=look)
            for look in (0.0, 0.2, 1.0)]
    assert [g["lookahead_ms"] for g in gaps] == [0, 200, 1000]
    assert [g["latency_ms"] for g in gaps] == [120, 320, 1120]
    sdr = [g["si_sdr_stream_vs_offline"] for g in gaps]
    assert min(sdr[1:]) > sdr[0] + 0.1  # the newest frames see what comes after them


def test_long_context_is_close_to_offline(tiny):
    x = noise(1, 3 * SR, seed=1)
    long = streaming_vs_offline(tiny, x, ["dog barking"], 0.2, context_seconds=4.0)
    short = streaming_vs_offline(tiny, x, ["dog barking"], 0.2, context_seconds=0.1)
    assert long["si_sdr_stream_vs_offline"] > 20
    assert long["si_sdr_stream_vs_offline"] > short["si_sdr_stream_vs_offline"]
    refs = x.unsqueeze(0) * 0.5
    both = streaming_vs_offline(tiny, x, ["dog barking"], 0.2, 4.0, references=refs)
    assert {"si_sdri_offline", "si_sdri_stream"} <= set(both)


def test_bad_blocks_and_settings():
    stream = StreamingSeparator(FrameGainSeparator(), ["x"], 0.1, 0.5)
    stream.push(noise(2, 100))
    with pytest.raises(CodecSepError, match="channels"):
        stream.push(noise(1, 100))
    with pytest.raises(CodecSepError, match="block_seconds"):
        StreamingSeparator(FrameGainSeparator(), ["x"], 0.0, 0.5)
    stream.reset()
    assert stream.push(noise(1, 10))["target"].shape == (1, 1, 0)
