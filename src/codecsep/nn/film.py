"""FiLM: feature-wise linear modulation from a conditioning vector (Perez et al., 2018).

`y = (1 + gamma(c)) * x + beta(c)`, with gamma and beta zero-initialised, so an untrained FiLM
layer is the identity and conditioning is learned as a departure from it.
"""

import torch
from torch import nn


class FiLM(nn.Module):
    def __init__(self, cond_dim: int, channels: int, scale: bool = True):
        super().__init__()
        self.scale = scale
        self.proj = nn.Linear(cond_dim, channels * (2 if scale else 1))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) channels-last, cond (B, E) -> (B, T, C)."""
        params = self.proj(cond).unsqueeze(1)
        if not self.scale:
            return x + params
        gamma, beta = params.chunk(2, dim=-1)
        return x * (1 + gamma) + beta
