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


def test_latency_is_bounded_while_streaming():
    stream = StreamingSeparator(FrameGainSeparator(), ["x"], 0.1, 0.5)
    received = emitted = 0
    for _ in range(20):
        emitted += stream.push(noise(1, stream.block))["target"].shape[-1]
        received += stream.block
        assert received - emitted <= stream.block + stream.hop  # never more than the latency
    assert emitted + stream.flush()["target"].shape[-1] == received


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
