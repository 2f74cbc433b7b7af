"""Streaming separation: audio in blocks (a microphone, a file read block by block) -> separated
blocks out, with a bounded algorithmic latency.

Each time a block has arrived, the separator runs on a sliding window made of up to
`context_seconds` of past audio plus everything new, aligned to the codec's hop so its MDCT
frames are the frames offline processing would see, and emits the samples that became final.
A sample is final once both MDCT frames that overlap it are complete, so the newest `hop`
samples wait for the next block (one hop of lookahead), plus `lookahead_seconds` (rounded up to
whole hops, default 0) that the masker sees to the right of what is emitted. Worst-case
algorithmic latency:

    latency = block + hop + lookahead    (e.g. 200 ms + 20 ms at 16 kHz with hop 320)

The context is at least one hop, so every emitted sample lies between two complete frames of
its window. Compute time comes on top; each run costs about (context + block + lookahead) /
block times what offline processing of the block would. The masker is non-causal and decides
from its whole window, so output differs from offline output where the window differs: the
first seconds (little context) and the newest samples of every window. See
`streaming_vs_offline` to measure how much.

    stream = StreamingSeparator(sep, ["dog barking"], block_seconds=0.2, context_seconds=2.0,
                                lookahead_seconds=0.06)  # latency 280 ms
    for block in mic_blocks:                 # (C, b) or (b,) at sep.sample_rate
        out = stream.push(block)             # {"target", "residual"}: (P, C, n) each, n >= 0
    out = stream.flush()                     # the rest, so output length == input length
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..errors import CodecSepError


def codec_hop(separator) -> int:
    """The hop of a `Separator` (its codec's) or of an `OnnxSeparator`."""
    hop = getattr(separator, "hop_length", None)
    if hop is None and getattr(separator, "codec", None) is None:
        raise CodecSepError("streaming needs a codec-based separator (its hop sets the block "
                            f"grid), not a {getattr(separator, 'checkpoint_kind', '?')!r} model")
    return int(hop if hop is not None else separator.codec.hop_length)


def round_to_hops(seconds: float, sample_rate: int, hop: int, minimum: int = 1) -> int:
    """Samples in `seconds`, rounded up to a whole number of hops (at least `minimum` hops)."""
    return max(minimum, math.ceil(seconds * sample_rate / hop - 1e-9)) * hop


def algorithmic_latency_ms(block_samples: int, hop: int, sample_rate: int,
                           lookahead_samples: int = 0) -> float:
    """Worst-case delay between a sample arriving and its separated sample being emitted."""
    return 1000.0 * (block_samples + hop + lookahead_samples) / sample_rate


class StreamingSeparator:
    def __init__(self, separator, prompts=None, block_seconds: float = 0.2,
                 context_seconds: float = 2.0, cond: torch.Tensor | None = None,
                 lookahead_seconds: float = 0.0):
        if block_seconds <= 0 or context_seconds < 0 or lookahead_seconds < 0:
            raise CodecSepError("block_seconds must be > 0, context_seconds and "
                                "lookahead_seconds >= 0")
        self.separator = separator
        self.sample_rate = int(separator.sample_rate)
        self.hop = codec_hop(separator)
        self.block = round_to_hops(block_seconds, self.sample_rate, self.hop)
        self.context = round_to_hops(context_seconds, self.sample_rate, self.hop)  # >= 1 hop
        self.lookahead = round_to_hops(lookahead_seconds, self.sample_rate, self.hop, minimum=0)
        self.prompts = list(prompts) if prompts is not None else []
        self.cond = separator.embed(self.prompts) if cond is None else cond
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next block starts a new one."""
        self._buffer: torch.Tensor | None = None  # (C, n): input from self._start on
        self._start = self._emitted = self._received = 0
        self._next_run = self.block

    @property
    def latency_ms(self) -> float:
        return algorithmic_latency_ms(self.block, self.hop, self.sample_rate, self.lookahead)

    def _append(self, block) -> None:
        x = torch.as_tensor(np.asarray(block, dtype=np.float32))
        x = x.unsqueeze(0) if x.ndim == 1 else x
        if x.ndim != 2:
            raise CodecSepError(f"a block must be (b,) or (C, b), got {tuple(x.shape)}")
        if self._buffer is not None and x.shape[0] != self._buffer.shape[0]:
            raise CodecSepError(f"block has {x.shape[0]} channels, the stream has "
                                f"{self._buffer.shape[0]}")
        self._buffer = x if self._buffer is None else torch.cat([self._buffer, x], -1)
        self._received += x.shape[-1]

    def _empty(self) -> dict:
        c = self._buffer.shape[0] if self._buffer is not None else 1
        empty = torch.zeros(self.cond.shape[0], c, 0)
        return {"target": empty, "residual": empty.clone()}

    def _emit(self, end: int, window_end: int) -> dict:
        """Separate input [window start, window_end) and emit output [emitted, end)."""
        start = max(self._start, (self._emitted - self.context) // self.hop * self.hop)
        window = self._buffer[:, start - self._start: window_end - self._start]
        out = self.separator.separate(window, self.prompts, cond=self.cond)
        a, b = self._emitted - start, end - start
        result = {k: v[..., a:b] for k, v in out.items()}
        self._emitted = end
        keep_from = max(self._start, (end - self.context) // self.hop * self.hop)
        self._buffer, self._start = self._buffer[:, keep_from - self._start:], keep_from
        return result

    def push(self, block) -> dict:
        """Add a block (b,) or (C, b); returns the newly final output, (P, C, n) each."""
        self._append(block)
        if self._received < self._next_run:
            return self._empty()
        self._next_run = (self._received // self.block + 1) * self.block
        aligned = self._received // self.hop * self.hop
        end = aligned - self.hop - self.lookahead  # the last hop waits for the next frame
        if end <= self._emitted:
            return self._empty()
        return self._emit(end, aligned)

    def flush(self) -> dict:
        """End of stream: emit everything not yet emitted (zero-padded like offline)."""
        if self._buffer is None or self._emitted >= self._received:
            return self._empty()
        return self._emit(self._received, self._received)

    def process(self, blocks: Iterable) -> Iterator[dict]:
        """Yield the output for each block, then the flush."""
        for block in blocks:
            yield self.push(block)
        yield self.flush()


def stream_all(stream: StreamingSeparator, audio: torch.Tensor, block_samples: int) -> dict:
    """Feed audio (C, T) in blocks of `block_samples`; returns the joined output, (P, C, T)."""
    blocks = [audio[..., i: i + block_samples] for i in range(0, audio.shape[-1], block_samples)]
    parts = list(stream.process(blocks))
    return {k: torch.cat([p[k] for p in parts], -1) for k in ("target", "residual")}


def streaming_vs_offline(separator, audio, prompts, block_seconds: float = 0.2,
                         context_seconds: float = 2.0, references=None,
                         lookahead_seconds: float = 0.0) -> dict:
    """How much streaming loses: SI-SDR of the streamed target against the offline target, and,
    with `references` (P, C, T) and the mixture, the SI-SDR improvement of both."""
    from ..metrics import si_sdr, si_sdr_improvement

    wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    wav = wav.unsqueeze(0) if wav.ndim == 1 else wav
    stream = StreamingSeparator(separator, prompts, block_seconds, context_seconds,
                                lookahead_seconds=lookahead_seconds)
    streamed = stream_all(stream, wav, stream.block)["target"]
    offline = separator.separate(wav, prompts, cond=stream.cond)["target"]
    report = {"latency_ms": stream.latency_ms,
              "lookahead_ms": 1000.0 * stream.lookahead / stream.sample_rate,
              "si_sdr_stream_vs_offline": float(si_sdr(streamed, offline).mean())}
    if references is not None:
        mix = wav.expand_as(references)
        report["si_sdri_offline"] = float(si_sdr_improvement(offline, references, mix).mean())
        report["si_sdri_stream"] = float(si_sdr_improvement(streamed, references, mix).mean())
    return report
