"""The CodecSep masker: a FiLM-conditioned Transformer over codec latent frames.

latent (B, D, F) + text embedding (B, E) -> mask (B, D, F). Input 1x1 (or k-wide) conv D->d,
sinusoidal positions, `depth` Transformer layers with FiLM after each norm, 1x1 conv d->D,
FiLM, Snake, 1x1 conv, then a bounded (sigmoid) or unbounded (linear) mask.
The paper's configuration (DAC-16k: D=1024, d=256, 16 layers) and our compact default (Mica:
D=320) are two configs of this one class: see `PAPER_DAC16K` and `MaskerConfig()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.film import FiLM
from ..nn.snake import Snake
from ..nn.transformer import FiLMTransformer, sinusoidal_positions


@dataclass(frozen=True)
class MaskerConfig:
    latent_dim: int = 320
    dim: int = 256
    depth: int = 6
    heads: int = 8
    ffn_dim: int = 768
    cond_dim: int = 384
    cond_hidden: int = 128  # text embedding -> shared hidden conditioning -> every FiLM
    dropout: float = 0.1
    norm_first: bool = True
    input_kernel: int = 3  # frames seen by the input conv
    features: str = "logmag"  # "logmag" (MDCT latents) | "linear" (DAC latents, as the paper)
    mask: str = "sigmoid"  # "sigmoid" (bounded in [0, 1]) | "unbounded" (as the public code)


PAPER_DAC16K = MaskerConfig(latent_dim=1024, dim=256, depth=16, heads=8, ffn_dim=1024,
                            cond_dim=512, cond_hidden=0, norm_first=False, input_kernel=1, features="linear",
                            mask="unbounded")


def latent_features(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Level-normalised log-magnitudes for MDCT latents; the latent itself for DAC's."""
    if kind == "linear":
        return z
    f = torch.log(z.abs() + 1e-5)
    return f - f.mean(dim=(1, 2), keepdim=True)


class Masker(nn.Module):
    def __init__(self, config: MaskerConfig = MaskerConfig()):
        super().__init__()
        c = self.config = config
        film_dim = c.cond_hidden or c.cond_dim
        self.cond = (nn.Sequential(nn.Linear(c.cond_dim, c.cond_hidden), nn.GELU())
                     if c.cond_hidden else nn.Identity())
        self.inp = nn.Conv1d(c.latent_dim, c.dim, c.input_kernel, padding=c.input_kernel // 2)
        self.transformer = FiLMTransformer(c.dim, c.depth, c.heads, c.ffn_dim, film_dim,
                                           c.dropout, c.norm_first)
        self.out = nn.Conv1d(c.dim, c.latent_dim, 1)
        self.out_film = FiLM(film_dim, c.latent_dim)
        self.act = Snake(c.latent_dim)
        self.head = nn.Conv1d(c.latent_dim, c.latent_dim, 1)

    def forward(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F), cond (B, E) -> mask (B, D, F)."""
        cond = self.cond(cond)
        h = self.inp(latent_features(latent, self.config.features)).transpose(1, 2)  # (B, F, d)
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device)
        h = self.transformer(h, cond)
        h = self.out_film(self.out(h.transpose(1, 2)).transpose(1, 2), cond).transpose(1, 2)
        m = self.head(self.act(h))
        return torch.sigmoid(m) if self.config.mask == "sigmoid" else m
