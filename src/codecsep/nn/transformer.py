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


def sinusoidal_positions(n: int, dim: int, device=None, start: int = 0,
                         max_wavelength: float = 0) -> torch.Tensor:
    """(n, dim) fixed sinusoidal position table (Vaswani et al., 2017) of positions start..start+n-1;
    `max_wavelength` > 0: the sinusoids slower than that many positions hold their position-0 value."""
    pos = torch.arange(start, start + n, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    if max_wavelength:
        freq = torch.where(2 * math.pi / freq > max_wavelength, 0.0, freq)
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, context: int,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """Attention in which each position sees the keys within `context` positions of it.

    q, k, v (B, H, T, e) -> (B, H, T, e). Computed on blocks of `context` queries, each against
    its own block and the two beside it (3 * context keys, masked to the window), so the cost
    grows with T rather than T^2 and a long sequence needs no cutting into windows. Sequences of
    up to 3 * context positions (and every sequence in an ONNX export) are computed whole, with
    the same mask.
    """
    b, h, t, e = q.shape
    if t <= 3 * context or torch.onnx.is_in_onnx_export():
        # the whole sequence masked to the window: as cheap for short ones, and one graph for
        # every length in an ONNX export (tracing would freeze the blocks' count)
        i = torch.arange(t, device=q.device)
        near = (i[:, None] - i[None]).abs() <= context
        return F.scaled_dot_product_attention(q, k, v, attn_mask=near, dropout_p=dropout_p)
    n = -(-t // context)  # blocks
    pad = n * context - t

    def blocks(x, before, after, size):  # (B, H, T, e) -> (B * n, H, size, e)
        x = F.pad(x, (0, 0, before, after)).unfold(2, size, context)  # (B, H, n, e, size)
        return x.permute(0, 2, 1, 4, 3).reshape(b * n, h, size, e)

    qb = blocks(q, 0, pad, context)
    kb, vb = (blocks(x, context, pad + context, 3 * context) for x in (k, v))
    i = torch.arange(context, device=q.device)[:, None] + context  # query, in its block's key frame
    j = torch.arange(3 * context, device=q.device)
    near = (i - j).abs() <= context  # (context, 3 * context)
    key_pos = torch.arange(n, device=q.device)[:, None] * context - context + j  # (n, 3 * context)
    real = (key_pos >= 0) & (key_pos < t)
    mask = (near & real[:, None, :]).unsqueeze(1).repeat(b, 1, 1, 1)  # (B * n, 1, context, 3 * context)
    y = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout_p)
    return y.view(b, n, h, context, e).permute(0, 2, 1, 3, 4).reshape(b, h, n * context, e)[:, :, :t]


class SelfAttention(nn.Module):
    """Multi-head self-attention over the whole sequence, or (`context` > 0) over the positions
    within `context` of each query (`local_attention`)."""

    def __init__(self, dim: int, heads: int, dropout: float, context: int = 0):
        super().__init__()
        self.heads, self.context = heads, context
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if self.context:
            y = local_attention(q, k, v, self.context, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class TransformerLayer(nn.Module):
    """Self-attention + feed-forward, post-LN (default) or pre-LN (`norm_first`).

    `modulate(x, site, cond)` is applied after each of the two layer norms; it is the identity
    here and FiLM in `FiLMTransformerLayer`, so both layers share one forward.
    """

    def __init__(self, dim, heads, ffn_dim, dropout=0.1, norm_first=False, act="relu", context=0):
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(dim, heads, dropout, context)
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
    def __init__(self, dim, heads, ffn_dim, cond_dim, dropout=0.1, norm_first=False, act="relu",
                 context=0):
        super().__init__(dim, heads, ffn_dim, dropout, norm_first, act, context)
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
    def __init__(self, dim, depth, heads, ffn_dim, cond_dim, dropout=0.1, norm_first=False, context=0):
        super().__init__()
        self.layers = nn.ModuleList(
            FiLMTransformerLayer(dim, heads, ffn_dim, cond_dim, dropout, norm_first, context=context)
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) with positions already added, cond (B, E) -> (B, T, C)."""
        for layer in self.layers:
            x = layer(x, cond)
        return self.final_norm(x)
