"""Separate a file as if it were a live stream: read it block by block (a stand-in for a
microphone), separate each block with bounded latency, and write the output.

    python examples/streaming.py street.wav voice.wav --prompt "a man speaking" --block-ms 200

Prints the algorithmic latency (block + one MDCT hop) and how fast the stream ran.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import soundfile as sf
import soxr
import torch

from codecsep import save_audio
from codecsep.errors import CodecSepError
from codecsep.separators.api import get_separator
from codecsep.separators.streaming import StreamingSeparator


def file_blocks(path, block_samples: int, sample_rate: int):
    """Yield (C, b) float32 blocks of `path` at `sample_rate`, resampled on the fly."""
    with sf.SoundFile(path) as f:
        resampler = (soxr.ResampleStream(f.samplerate, sample_rate, f.channels, dtype="float32")
                     if f.samplerate != sample_rate else None)
        in_block = max(1, round(block_samples * f.samplerate / sample_rate))
        for data in f.blocks(blocksize=in_block, dtype="float32", always_2d=True):
            if resampler is not None:
                data = resampler.resample_chunk(data, last=f.tell() == f.frames)
            if len(data):
                yield torch.from_numpy(np.ascontiguousarray(data.T))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="audio file to stream")
    p.add_argument("output", help="where to write the separated stream (.wav, .flac)")
    p.add_argument("--prompt", required=True, help="the sound to separate")
    p.add_argument("--task", choices=["extract", "remove"], default="extract")
    p.add_argument("--model", default=None, help="separator checkpoint dir (default: shipped)")
    p.add_argument("--block-ms", type=float, default=200.0, help="block size (default 200 ms)")
    p.add_argument("--context-s", type=float, default=2.0, help="past context (default 2 s)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = p.parse_args(argv)
    try:
        torch.set_num_threads(args.threads)
        separator = get_separator(args.model)
        stream = StreamingSeparator(separator, [args.prompt], args.block_ms / 1000, args.context_s)
        print(f"algorithmic latency: {stream.latency_ms:.0f} ms "
              f"(block {1000 * stream.block / stream.sample_rate:.0f} ms + one "
              f"{1000 * stream.hop / stream.sample_rate:.0f} ms MDCT hop)")
        key = "target" if args.task == "extract" else "residual"
        t0, parts = time.perf_counter(), []
        for out in stream.process(file_blocks(args.input, stream.block, stream.sample_rate)):
            parts.append(out[key][0])  # (C, n): the one prompt
        elapsed = time.perf_counter() - t0
        wav = torch.cat(parts, -1)
        save_audio(args.output, wav, stream.sample_rate, overwrite=args.overwrite)
    except CodecSepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = wav.shape[-1] / stream.sample_rate
    print(f"wrote {args.output}: {seconds:.1f} s in {elapsed:.1f} s "
          f"(real-time factor {elapsed / max(seconds, 1e-9):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
