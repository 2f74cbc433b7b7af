"""Training losses, named by what they return. Inputs are (estimate, reference), shape (..., T)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def neg_si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative SI-SDR in dB per item, (..., T) -> (...)."""
    estimate = estimate - estimate.mean(-1, keepdim=True)
    reference = reference - reference.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return -10 * torch.log10(ratio)


def pairwise_neg_si_sdr(estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(B, K, T) x (B, K, T) -> (B, K, K) matrix: [b, i, j] = -SI-SDR(estimate i, reference j)."""
    return neg_si_sdr(estimates.unsqueeze(2), references.unsqueeze(1))


def pit_neg_si_sdr(estimates: torch.Tensor, references: torch.Tensor):
    """Permutation-invariant loss for K sources: (loss per item (B,), best permutation (B, K))."""
    from itertools import permutations

    pair = pairwise_neg_si_sdr(estimates, references)
    k = estimates.shape[1]
    perms = torch.tensor(list(permutations(range(k))), device=estimates.device)  # (P, K)
    idx = torch.arange(k, device=estimates.device)
    costs = pair[:, idx[None, :], perms].mean(-1)  # (B, P)
    best = costs.argmin(-1)
    return costs.gather(1, best[:, None]).squeeze(1), perms[best]


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Spectral convergence + log-magnitude L1 over several STFT resolutions (Yamamoto et al.)."""

    def __init__(self, ffts=(256, 512, 1024, 2048), hop_div: int = 4):
        super().__init__()
        self.ffts, self.hop_div = ffts, hop_div
        for n in ffts:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        est, ref = estimate.reshape(-1, estimate.shape[-1]), reference.reshape(-1, reference.shape[-1])
        total = 0.0
        for n in self.ffts:
            kw = dict(n_fft=n, hop_length=n // self.hop_div, window=getattr(self, f"win{n}"),
                      return_complex=True)
            e, r = torch.stft(est, **kw).abs(), torch.stft(ref, **kw).abs()
            sc = torch.linalg.norm(r - e, dim=(1, 2)) / (torch.linalg.norm(r, dim=(1, 2)) + 1e-7)
            mag = F.l1_loss(torch.log(e.clamp_min(1e-5)), torch.log(r.clamp_min(1e-5)))
            total = total + sc.mean() + mag
        return total / len(self.ffts)
