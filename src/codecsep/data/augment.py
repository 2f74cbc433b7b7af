"""Cheap training augmentations on 1-D float32 numpy clips: speed, EQ tilt, reverb.

They widen what a few hundred recordings per class look like (other microphones, rooms and
players), which matters more than anything else for recordings from other sound banks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, lfilter


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Resample by linear interpolation: pitch and tempo move together by `factor`."""
    n = int(len(x) / factor)
    return np.interp(np.arange(n) * factor, np.arange(len(x)), x).astype(np.float32)


def tilt_eq(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random first-order low- or high-shelf-like tilt."""
    a = rng.uniform(-0.6, 0.6)
    y = lfilter([1.0, -a], [1.0], x) if rng.random() < 0.5 else lfilter([1.0 - abs(a)], [1.0, -abs(a)], x)
    return y.astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (RT60 0.1-0.8 s)."""
    rt60 = rng.uniform(0.1, 0.8)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct path
    wet = fftconvolve(x, ir)[: len(x)]
    return (wet / (np.abs(ir).sum() ** 0.5 + 1e-8)).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    if rng.random() < p:
        x = tilt_eq(x, rng)
    if rng.random() < p:
        x = reverb(x, rng)
    return x
