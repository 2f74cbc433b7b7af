"""The MDCT as a fixed, critically sampled, perfectly invertible filterbank.

Frames of 2N samples with hop N, a sine window (Princen-Bradley condition) and an orthonormal
scaling, so the inverse transform with overlap-add reconstructs the input exactly (TDAC).
Both directions are (transposed) strided convolutions with a fixed basis: cheap, differentiable
and exportable to ONNX as plain Conv/ConvTranspose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mdct_basis(n: int) -> torch.Tensor:
    """(N, 1, 2N) windowed, orthonormally scaled MDCT basis."""
    t = torch.arange(2 * n, dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    window = torch.sin(math.pi / (2 * n) * (t + 0.5))
    phase = math.pi / n * (t[None, :] + 0.5 + n / 2) * (k[:, None] + 0.5)
    basis = math.sqrt(2.0 / n) * window[None, :] * torch.cos(phase)
    return basis.float().unsqueeze(1)


class MDCT(nn.Module):
    """waveform (B, 1, T) <-> coefficients (B, N, F) with F = ceil(T / N) + 1."""

    def __init__(self, hop: int):
        super().__init__()
        self.hop = hop
        self.register_buffer("basis", mdct_basis(hop), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // self.hop) + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n = self.hop
        pad_right = (-wav.shape[-1]) % n + n
        wav = F.pad(wav, (n, pad_right))
        return F.conv1d(wav, self.basis, stride=n)

    def inverse(self, coeffs: torch.Tensor, length: int | None = None) -> torch.Tensor:
        n = self.hop
        wav = F.conv_transpose1d(coeffs, self.basis, stride=n)[..., n:]
        return wav if length is None else wav[..., :length]
