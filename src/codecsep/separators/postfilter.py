"""The spectral post-filter: the separated waveforms re-split the mixture in a longer STFT.

A latent mask acts on the codec's frames (Mica: the MDCT, 40-ms frames at hop 320), so each
estimate carries the transform's time aliasing and frame-rate noise. The post-filter takes the
decoded target t and residual r = x - t of one window and re-splits the mixture x with their
magnitude ratio on a Hann STFT of `n_fft` (hop n_fft / 4):

    t' = iSTFT(|T|^a / (|T|^a + |R|^a) * X),    r' = x - t'

(for K parts, e.g. speakers, part k gets |P_k|^a / sum_j |P_j|^a), so t' + r' = x still
holds, the bins where both estimates are silent go to the residual, and a silent mixture stays
silent. Power a = 2 is the Wiener ratio of powers; measured on our VALID draws
(`results/experiments/README.md`, session 19), a = 1 to 1.25 gains and a = 2 loses.
No weights, no training; four FFT passes per prompt (`postfilter_macs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CodecSepError


@dataclass(frozen=True)
class PostFilter:
    n_fft: int = 0  # 0: off
    power: float = 1.0

    def __post_init__(self):
        if self.n_fft and (self.n_fft < 16 or self.n_fft % 4):
            raise CodecSepError(f"postfilter n_fft must be 0 (off) or a multiple of 4 >= 16, "
                                f"got {self.n_fft}")
        if not self.power > 0:
            raise CodecSepError(f"postfilter power must be > 0, got {self.power}")

    @property
    def enabled(self) -> bool:
        return self.n_fft > 0

    @property
    def tag(self) -> str:
        """"postfilter:2048^1.25" for inference tags; "" when off."""
        return f"postfilter:{self.n_fft}^{self.power:g}" if self.enabled else ""

    @classmethod
    def parse(cls, text) -> PostFilter:
        """ "2048" -> (2048, 1), "2048,1.25" -> (2048, 1.25), "0" -> off; or a dict / PostFilter."""
        if isinstance(text, PostFilter):
            return text
        if isinstance(text, dict):
            return cls(int(text.get("n_fft", 0)), float(text.get("power", 1.0)))
        parts = str(text).split(",")
        try:
            if len(parts) > 2:
                raise ValueError
            return cls(int(parts[0]), float(parts[1]) if len(parts) == 2 else 1.0)
        except ValueError:
            raise CodecSepError(f"postfilter: expected N_FFT or N_FFT,POWER (0: off), "
                                f"got {text!r}") from None


def _stft(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    # constant padding: any input length works (reflection needs more than n_fft / 2 samples)
    return torch.stft(x, n_fft, n_fft // 4, window=window, center=True, pad_mode="constant",
                      return_complex=True)


def apply_postfilter(mixture: torch.Tensor, parts: torch.Tensor, pf: PostFilter,
                     floor: float = 0.0) -> torch.Tensor:
    """mixture (C, w), parts (K, ..., C, w) that sum to it (target and residual: K = 2; speakers)
    -> the same, re-split: part k gets the STFT ratio |P_k|^a / sum_j |P_j|^a of the mixture, and
    the last part is the mixture minus the others, so the parts still sum to the mixture
    exactly. Unchanged when `pf` is off. `floor` bounds the ratio's denominator from below
    (training passes a small one, so the gradient stays finite where every part is near silent;
    inference keeps the smallest float)."""
    if not pf.enabled:
        return parts
    k, w = parts.shape[0], parts.shape[-1]
    window = torch.hann_window(pf.n_fft, dtype=mixture.dtype, device=mixture.device)
    spec = _stft(parts.reshape(-1, w), pf.n_fft, window)
    mag = spec.reshape(k, -1, *mixture.shape[:-1], *spec.shape[1:]).abs() ** pf.power
    ratio = mag[:-1] / mag.sum(0).clamp_min(max(floor, torch.finfo(mag.dtype).tiny))  # (K-1, R, C, bins, frames)
    x = _stft(mixture, pf.n_fft, window)  # (C, bins, frames)
    kept = torch.istft((ratio * x).reshape(-1, *x.shape[1:]), pf.n_fft, pf.n_fft // 4,
                       window=window, center=True, length=w).reshape(k - 1, *parts.shape[1:])
    return torch.cat([kept, (mixture - kept.sum(0)).unsqueeze(0)])


def postfilter_macs(pf: PostFilter, n_samples: int, n_prompts: int = 1) -> int:
    """Multiply-accumulates of `apply_postfilter` on target and residual (FFTs are not seen by
    the FLOP counter): per frame and prompt four real FFTs of n_fft (three forward, one
    inverse) at n_fft log2(n_fft) real MACs each, their windowing, and about ten per bin for the
    ratio and the product."""
    if not pf.enabled:
        return 0
    frames = n_samples // (pf.n_fft // 4) + 1
    per_frame = 4 * (pf.n_fft * math.log2(pf.n_fft) + pf.n_fft) + 10 * (pf.n_fft // 2 + 1)
    return int(n_prompts * frames * per_frame)
