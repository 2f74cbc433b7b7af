"""Residual vector quantization with factorized, L2-normalised codebooks and quantizer dropout.

Each stage projects the residual to a low-dimensional space (Yu et al., 2022; as DAC does),
looks up the nearest L2-normalised code, and projects back. Training one model with a random
number of stages per item (quantizer dropout, SoundStream) lets it serve several bitrates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FactorizedVQ(nn.Module):
    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = nn.Conv1d(dim, codebook_dim, 1)
        self.out_proj = nn.Conv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.register_buffer("usage", torch.zeros(codebook_size), persistent=False)

    @torch.no_grad()
    def revive_dead_codes(self, z: torch.Tensor) -> int:
        """Replace codes unused since the last call by random projected inputs z (B, d, F)."""
        dead = (self.usage == 0).nonzero().squeeze(1)
        if len(dead):
            pool = z.transpose(1, 2).reshape(-1, z.shape[1])
            pick = torch.randint(0, len(pool), (len(dead),), device=z.device)
            self.codebook.weight[dead] = F.normalize(pool[pick], dim=-1)
        self.usage.zero_()
        return len(dead)

    def _normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook.weight, dim=-1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D, F) -> (indices (B, F), projected latent (B, d, F))."""
        z = self.in_proj(x)
        zn = F.normalize(z.transpose(1, 2), dim=-1)  # (B, F, d)
        sim = zn @ self._normalized_codebook().t()  # (B, F, K)
        return sim.argmax(-1), z

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, F) -> quantized low-dim vectors (B, d, F)."""
        return F.embedding(indices, self._normalized_codebook()).transpose(1, 2)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, F) -> (B, D, F)."""
        return self.out_proj(self.lookup(indices))

    def forward(self, x: torch.Tensor):
        """Returns (quantized (B, D, F), indices, commitment loss, codebook loss)."""
        idx, z = self.encode(x)
        q = self.lookup(idx)
        zn = F.normalize(z, dim=1)
        commit = F.mse_loss(zn, q.detach(), reduction="none").mean([1, 2])
        codebook = F.mse_loss(q, zn.detach(), reduction="none").mean([1, 2])
        if self.training:
            self.usage += torch.bincount(idx.flatten(), minlength=self.usage.numel()).float()
            self._last_input = z.detach()
        q = zn + (q - zn).detach()  # straight-through estimator
        return self.out_proj(q), idx, commit, codebook


class ResidualVQ(nn.Module):
    def __init__(self, dim, n_codebooks, codebook_size, codebook_dim, dropout_p: float = 0.5):
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.dropout_p = dropout_p
        self.stages = nn.ModuleList(
            FactorizedVQ(dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )

    def revive_dead_codes(self) -> int:
        """Restart dead codes of every stage from its latest training input; returns how many."""
        return sum(s.revive_dead_codes(s._last_input) for s in self.stages
                   if getattr(s, "_last_input", None) is not None)

    def forward(self, x: torch.Tensor, n_quantizers: int | None = None):
        """x (B, D, F) -> dict(latent, codes (B, N, F), commit, codebook losses)."""
        b = x.shape[0]
        n_q = torch.full((b,), n_quantizers or self.n_codebooks, device=x.device)
        if self.training and n_quantizers is None:
            drop = torch.rand(b, device=x.device) < self.dropout_p
            n_q = torch.where(drop, torch.randint(1, self.n_codebooks + 1, (b,)), n_q)
        residual, out = x, torch.zeros_like(x)
        codes, commit, codebook = [], 0.0, 0.0
        n_stages = self.n_codebooks if self.training else int(n_q.max())
        for i, stage in enumerate(self.stages[:n_stages]):
            q, idx, c_loss, cb_loss = stage(residual)
            active = (i < n_q).float()
            out = out + q * active[:, None, None]
            residual = residual - q
            codes.append(idx)
            commit = commit + (c_loss * active).mean()
            codebook = codebook + (cb_loss * active).mean()
        return {"latent": out, "codes": torch.stack(codes, 1), "commit": commit,
                "codebook": codebook, "n_quantizers": n_q}

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, N, F) with N <= n_codebooks -> (B, D, F)."""
        return sum(stage.decode(codes[:, i]) for i, stage in enumerate(self.stages[: codes.shape[1]]))
