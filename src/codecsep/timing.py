"""Real-time factors: the one timer behind `bench`, `bench codec`, `bench deploy` and
`export --rtf`, so their numbers can be set side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .errors import CodecSepError


def real_time_factor(fn: Callable[[], object], audio_seconds: float, threads: int = 1,
                     repeats: int = 5) -> dict:
    """fn()'s processing time / `audio_seconds`, median over `repeats` runs after one warm-up,
    with torch on `threads` threads: "wall" (elapsed time) and "cpu" (process CPU time, which on a
    busy shared machine is what the wall time would be on an idle core). < 1 is faster than
    real time."""
    if repeats < 1:
        raise CodecSepError(f"repeats must be >= 1, got {repeats}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            fn()
            wall, cpu = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    finally:
        torch.set_num_threads(previous)
    return {"wall": statistics.median(wall) / audio_seconds,
            "cpu": statistics.median(cpu) / audio_seconds}
