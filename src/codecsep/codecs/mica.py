"""Mica: a light MDCT codec for CPUs and edge devices (our default codec).

Continuous path: the latent IS the MDCT of the waveform (hop 320 at 16 kHz: 320 coefficients
at 50 frames/s). It is fixed and perfectly invertible, so `decode(encode(x)) == x` and
separators that mask the latent never lose quality to the codec; both directions cost a few
MMACs per second.

Bitstream path: a small ConvNeXt analysis net maps power-compressed MDCT frames to a residual
vector quantizer (factorized 8-d codebooks, quantizer dropout, 1-8 kbps); a synthesis net maps
the dequantized vectors back to MDCT coefficients. `quantize` and `dequantize` run these nets,
so a code stream can be masked in the latent space and re-quantized (codes in -> codes out).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.convnext import ConvNeXtBlock
from .base import Codec
from .mdct import MDCT
from .quantize import ResidualVQ


@dataclass(frozen=True)
class MicaConfig:
    sample_rate: int = 16000
    hop_length: int = 320
    channels: int = 192  # width of the analysis / synthesis nets
    depth: int = 4  # ConvNeXt blocks on each side
    mlp_mult: int = 3
    n_codebooks: int = 16
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    compress_power: float = 0.5  # features = sign(z) |z|^p


def compress(z: torch.Tensor, p: float, eps: float = 1e-4) -> torch.Tensor:
    return torch.sign(z) * ((z.abs() + eps) ** p - eps**p)


def decompress(c: torch.Tensor, p: float, eps: float = 1e-4) -> torch.Tensor:
    return torch.sign(c) * ((c.abs() + eps**p) ** (1 / p) - eps)


class FrameNet(nn.Module):
    """(B, C_in, F) -> (B, C_out, F): pointwise in, ConvNeXt blocks, norm, pointwise out."""

    def __init__(self, c_in: int, c_out: int, channels: int, depth: int, mult: int):
        super().__init__()
        self.inp = nn.Conv1d(c_in, channels, 1)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(channels, mult) for _ in range(depth)))
        self.norm = nn.GroupNorm(1, channels)
        self.out = nn.Conv1d(channels, c_out, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, F) -> (B, channels, F): everything but the output projection."""
        return self.norm(self.blocks(self.inp(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class MicaCodec(Codec):
    def __init__(self, config: MicaConfig = MicaConfig()):
        super().__init__()
        c = config
        self.config = c
        self.codec_id = "mica-16k"
        self.sample_rate, self.hop_length = c.sample_rate, c.hop_length
        self.latent_dim = c.hop_length
        self.n_codebooks, self.codebook_size = c.n_codebooks, c.codebook_size
        self.mdct = MDCT(c.hop_length)
        self.analysis = FrameNet(c.hop_length, c.channels, c.channels, c.depth, c.mlp_mult)
        self.quantizer = ResidualVQ(c.channels, c.n_codebooks, c.codebook_size, c.codebook_dim,
                                    c.quantizer_dropout)
        self.synthesis = FrameNet(c.channels, c.hop_length, c.channels, c.depth, c.mlp_mult)

    def latent_space_id(self) -> str:
        return f"mdct-{self.sample_rate}-{self.hop_length}"  # fixed transform: weights don't matter

    def n_frames(self, n_samples: int) -> int:
        return self.mdct.n_frames(n_samples)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mdct(wav)

    def decode(self, latent: torch.Tensor, length: int | None = None) -> torch.Tensor:
        return self.mdct.inverse(latent, length)

    def quantize(self, latent: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        h = self.analysis(compress(latent, self.config.compress_power))
        return self.quantizer(h, n_quantizers or self.n_codebooks)["codes"]

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return decompress(self.synthesis(self.quantizer.decode(codes)), self.config.compress_power)

    def forward(self, latent: torch.Tensor, n_quantizers: int | None = None) -> dict:
        """Training pass: latent (B, D, F) -> dict(latent_hat, codes, commit, codebook)."""
        h = self.analysis(compress(latent, self.config.compress_power))
        q = self.quantizer(h, n_quantizers)
        q["compressed_hat"] = self.synthesis(q["latent"])
        q["latent_hat"] = decompress(q["compressed_hat"], self.config.compress_power)
        return q
