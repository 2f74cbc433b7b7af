"""Transformer encoders over codec frames: with FiLM conditioning in every layer (CodecSep masker)
or plain (`Transformer`: Codecformer, the Sepformer cost model, CodeSep).

Post-LN by default as in the CodecSep paper; `norm_first=True` gives the pre-LN variant, which
trains more stably at small batch sizes. FiLM follows each layer norm, as in the public code,
with scale and shift (identity at init).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .film import FiLM


def sinusoidal_positions(n: int, dim: int, device=None) -> torch.Tensor:
    """(n, dim) fixed sinusoidal position table (Vaswani et al., 2017)."""
    pos = torch.arange(n, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class TransformerLayer(nn.Module):
    """Self-attention + feed-forward, post-LN (default) or pre-LN (`norm_first`).

    `modulate(x, site, cond)` is applied after each of the two layer norms; it is the identity
    here and FiLM in `FiLMTransformerLayer`, so both layers share one forward.
    """

    def __init__(self, dim, heads, ffn_dim, dropout=0.1, norm_first=False, act="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.ReLU() if act == "relu" else nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def modulate(self, x: torch.Tensor, site: int, cond) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); `cond` is only used by subclasses that modulate."""
        if self.norm_first:
            x = x + self.drop(self.attn(self.modulate(self.norm1(x), 1, cond)))
            return x + self.drop(self.ffn(self.modulate(self.norm2(x), 2, cond)))
        x = self.modulate(self.norm1(x + self.drop(self.attn(x))), 1, cond)
        return self.modulate(self.norm2(x + self.drop(self.ffn(x))), 2, cond)


class FiLMTransformerLayer(TransformerLayer):
    def __init__(self, dim, heads, ffn_dim, cond_dim, dropout=0.1, norm_first=False, act="relu"):
        super().__init__(dim, heads, ffn_dim, dropout, norm_first, act)
        self.film1, self.film2 = FiLM(cond_dim, dim), FiLM(cond_dim, dim)

    def modulate(self, x: torch.Tensor, site: int, cond: torch.Tensor) -> torch.Tensor:
        return (self.film1 if site == 1 else self.film2)(x, cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, T, C), cond (B, E) -> (B, T, C)."""
        return super().forward(x, cond)


class Transformer(nn.Module):
    """A plain Transformer encoder (no conditioning): the same layers as FiLMTransformer."""

    def __init__(self, dim, depth, heads, ffn_dim, dropout=0.1, norm_first=False, act="relu"):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, ffn_dim, dropout, norm_first, act) for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) with positions already added -> (B, T, C)."""
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)


class FiLMTransformer(nn.Module):
    def __init__(self, dim, depth, heads, ffn_dim, cond_dim, dropout=0.1, norm_first=False):
        super().__init__()
        self.layers = nn.ModuleList(
            FiLMTransformerLayer(dim, heads, ffn_dim, cond_dim, dropout, norm_first)
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) with positions already added, cond (B, E) -> (B, T, C)."""
        for layer in self.layers:
            x = layer(x, cond)
        return self.final_norm(x)
