"""Cheap training augmentations on 1-D float32 numpy clips: speed, EQ tilt, reverb, band limits,
random peaking EQ.

They widen what a few hundred recordings per class look like (other microphones, rooms and
players), which matters more than anything else for recordings from other sound banks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt


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


def band_limit(x: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """A narrower channel than the clip's: low-pass at 3-7.5 kHz (8-16 kHz originals, old
    codecs), and half the time a high-pass at 80-300 Hz too (telephones, small speakers)."""
    sos = butter(6, rng.uniform(3000, 7500), "lowpass", fs=sample_rate, output="sos")
    if rng.random() < 0.5:
        sos = np.vstack([sos, butter(2, rng.uniform(80, 300), "highpass", fs=sample_rate,
                                     output="sos")])
    return sosfilt(sos, x).astype(np.float32)


def peaking_eq(x: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000,
               bands: int = 3, max_db: float = 9.0) -> np.ndarray:
    """`bands` random peaking filters (100 Hz-6 kHz, +-max_db, Q 0.7-2): another instrument
    body, microphone or sample bank colours the same notes differently (RBJ cookbook biquads)."""
    for _ in range(bands):
        f0 = np.exp(rng.uniform(np.log(100.0), np.log(6000.0)))
        gain = 10 ** (rng.uniform(-max_db, max_db) / 40)
        w0 = 2 * np.pi * f0 / sample_rate
        alpha = np.sin(w0) / (2 * rng.uniform(0.7, 2.0))
        b = [1 + alpha * gain, -2 * np.cos(w0), 1 - alpha * gain]
        a = [1 + alpha / gain, -2 * np.cos(w0), 1 - alpha / gain]
        x = lfilter(b, a, x)
    return np.asarray(x, dtype=np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, p: float = 0.3, *,
            p_band: float = 0.0, p_eq: float = 0.0) -> np.ndarray:
    """EQ tilt and reverb each with probability `p`; band limits with `p_band`, peaking EQ with
    `p_eq` (no random draw when 0, so recipes without them keep their mixture stream)."""
    if rng.random() < p:
        x = tilt_eq(x, rng)
    if rng.random() < p:
        x = reverb(x, rng)
    if p_band > 0 and rng.random() < p_band:
        x = band_limit(x, rng)
    if p_eq > 0 and rng.random() < p_eq:
        x = peaking_eq(x, rng)
    return x
