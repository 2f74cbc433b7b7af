"""Overlap-add over the last axis: long inputs in bounded memory, windows joined by crossfades."""

from __future__ import annotations

from typing import Callable

import torch


def crossfade_weights(length: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    """(length,) ones with linear ramps of `overlap` samples on the edges that meet a neighbour."""
    w = torch.ones(length)
    ramp = torch.linspace(0, 1, overlap + 2)[1:-1] if overlap > 0 else torch.zeros(0)
    n = min(overlap, length)
    if not first and n:
        w[:n] = ramp[:n]
    if not last and n:
        w[-n:] = torch.minimum(w[-n:], ramp.flip(0)[-n:])
    return w


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    if length <= window:
        return [0]
    hop = window - overlap
    starts = list(range(0, length - window, hop))
    return starts + [length - window]


def overlap_add(x: torch.Tensor, window: int, overlap: int,
                fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply `fn` to windows of x (..., L) and crossfade the results (..., L) into (*lead, L).

    `fn` maps a window (..., w) to an output whose last axis is w; its leading axes may differ
    from the input's (e.g. one row per prompt) but must be the same for every window.
    """
    length = x.shape[-1]
    starts = window_starts(length, window, overlap)
    out = norm = None
    for i, s in enumerate(starts):
        e = min(s + window, length)
        y = fn(x[..., s:e])
        if out is None:
            out = y.new_zeros(*y.shape[:-1], length)
            norm = y.new_zeros(length)
        real_overlap = overlap if i == 0 else min(overlap, starts[i - 1] + window - s)
        w = crossfade_weights(e - s, real_overlap, first=i == 0, last=i == len(starts) - 1)
        out[..., s:e] += y * w
        norm[s:e] += w
    return out / norm.clamp_min(1e-8)


def shift_offsets(shifts: int, hop: int) -> list[int]:
    """Sample offsets of `shifts` passes spread evenly over one frame hop ([0] for one pass)."""
    if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 1:
        raise ValueError(f"shifts must be a whole number >= 1, got {shifts!r}")
    return [round(k * hop / shifts) for k in range(shifts)]


def shifted_mean(chunk: torch.Tensor, offsets: list[int],
                 fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Mean of `fn` over copies of `chunk` (..., w) delayed by each offset, realigned and cut
    back to w: a frame-based model sees its frame grid fall elsewhere each time."""
    if offsets == [0]:
        return fn(chunk)
    w = chunk.shape[-1]
    outs = [fn(torch.nn.functional.pad(chunk, (s, 0)))[..., s:s + w] for s in offsets]
    return torch.stack(outs).mean(0)
