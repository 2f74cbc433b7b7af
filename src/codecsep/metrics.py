"""Separation metrics. Every metric takes `(estimate, reference)` in that order.

Shapes: tensors `(..., T)` with identical shapes (no broadcasting: a mismatch is a bug, so it
raises `ValueError`); the result is `(...)` in dB, one value per signal.

Edge cases, handled on purpose and the same way in every dB metric:
- silent reference (energy `sum(s**2) <= eps`, after mean removal for SI-SDR): the ratio is
  undefined, the result is NaN. Average with `torch.nanmean` and report how many were skipped.
- perfect estimate (identical signals): the noise energy is zero; values are capped at
  `MAX_DB` = 100 dB, a large finite number that keeps means finite.
- SI-SDR of a silent estimate (energy <= eps, after mean removal) for a non-silent reference:
  it carries no information about the target and scores the floor, `-MAX_DB`, so failures
  are not hidden.
  (SDR needs no special case: a silent estimate scores 0 dB by its definition.)
All values are clamped to [-MAX_DB, MAX_DB]. Computation runs in float64 (near-perfect
estimates cancel badly in float32); the result has the input's floating dtype.

References: SI-SDR, Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019
(https://arxiv.org/abs/1811.02508); SDR as AudioSep evaluates it, 10 log10(|s|^2 / |s_hat - s|^2)
(Liu et al., https://arxiv.org/abs/2308.05037); ViSQOL v3, Chinen et al., QoMEX 2020.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from .errors import require

MAX_DB = 100.0
VISQOL_RATES = {"speech": 16_000, "audio": 48_000}


# ---------------------------------------------------------------------------------------------
# Energy-ratio metrics
# ---------------------------------------------------------------------------------------------
def si_sdr(
    estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8, zero_mean: bool = True
) -> torch.Tensor:
    """Scale-invariant SDR in dB: `(..., T), (..., T) -> (...)`; see the module notes on edges."""
    est, ref, out_dtype = _prepare(estimate, reference)
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    ref_energy = ref.pow(2).sum(-1)
    alpha = (est * ref).sum(-1) / ref_energy.clamp_min(eps)
    target = alpha.unsqueeze(-1) * ref
    noise = est - target
    db = _ratio_db(target.pow(2).sum(-1), noise.pow(2).sum(-1))
    db = torch.where(est.pow(2).sum(-1) <= eps, torch.full_like(db, -MAX_DB), db)
    return _nan_where(db, ref_energy <= eps).to(out_dtype)


def sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SDR in dB as AudioSep defines it, `10 log10(|s|^2 / |s_hat - s|^2)` (not scale-invariant)."""
    est, ref, out_dtype = _prepare(estimate, reference)
    ref_energy = ref.pow(2).sum(-1)
    db = _ratio_db(ref_energy, (est - ref).pow(2).sum(-1))
    return _nan_where(db, ref_energy <= eps).to(out_dtype)


def si_sdr_improvement(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, **kwargs
) -> torch.Tensor:
    """SI-SDRi: `si_sdr(estimate, reference) - si_sdr(mixture, reference)`, in dB."""
    _check_shapes(mixture, reference, "mixture")
    return si_sdr(estimate, reference, **kwargs) - si_sdr(mixture, reference, **kwargs)


def sdr_improvement(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, **kwargs
) -> torch.Tensor:
    """SDRi: `sdr(estimate, reference) - sdr(mixture, reference)`, in dB."""
    _check_shapes(mixture, reference, "mixture")
    return sdr(estimate, reference, **kwargs) - sdr(mixture, reference, **kwargs)


def _prepare(estimate, reference) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    estimate, reference = torch.as_tensor(estimate), torch.as_tensor(reference)
    _check_shapes(estimate, reference, "estimate")
    dtype = torch.promote_types(estimate.dtype, reference.dtype)
    out_dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    return estimate.to(torch.float64), reference.to(torch.float64), out_dtype


def _check_shapes(other: torch.Tensor, reference: torch.Tensor, name: str) -> None:
    if tuple(other.shape) != tuple(reference.shape):
        raise ValueError(
            f"{name} shape {tuple(other.shape)} does not match reference shape "
            f"{tuple(reference.shape)}; metrics take (..., T) tensors of the same shape"
        )
    if reference.ndim == 0 or reference.shape[-1] == 0:
        raise ValueError(f"metrics need (..., T) signals with T > 0, got {tuple(reference.shape)}")


def _ratio_db(signal_energy: torch.Tensor, noise_energy: torch.Tensor) -> torch.Tensor:
    """10 log10(signal / noise), capped to [-MAX_DB, MAX_DB] without dividing by zero."""
    limit = 10.0 ** (MAX_DB / 10.0)
    tiny = torch.finfo(torch.float64).tiny
    num = torch.maximum(signal_energy, noise_energy / limit).clamp_min(tiny)
    den = torch.maximum(noise_energy, signal_energy / limit).clamp_min(tiny)
    return (10.0 * torch.log10(num / den)).clamp(-MAX_DB, MAX_DB)


def _nan_where(db: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    return torch.where(undefined, torch.full_like(db, float("nan")), db)


# ---------------------------------------------------------------------------------------------
# ViSQOL (perceptual quality, MOS-LQO in [1, 5])
# ---------------------------------------------------------------------------------------------
def visqol(
    estimate: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    sample_rate: int,
    mode: str = "speech",
) -> float:
    """ViSQOL MOS-LQO of `estimate` against `reference`, both `(T,)` or `(C, T)` at `sample_rate`.

    Speech mode scores at 16 kHz, audio mode at 48 kHz; inputs are resampled as needed and
    multi-channel inputs are averaged to mono. Speech mode uses the deep-lattice mapper when
    `ai-edge-litert` is installed, else ViSQOL's polynomial mapper (can read 1-2 points higher
    on degraded speech): compare scores only within one environment. A silent reference -> NaN.
    Needs the optional `visqol-python` package (extra "metrics").
    """
    if mode not in VISQOL_RATES:
        raise ValueError(f"ViSQOL mode must be one of {sorted(VISQOL_RATES)}, got {mode!r}")
    est = _visqol_signal(estimate, sample_rate, mode, "estimate")
    ref = _visqol_signal(reference, sample_rate, mode, "reference")
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {est.shape} does not match reference shape {ref.shape}")
    if not np.any(ref):
        return float("nan")
    result = _visqol_api(mode).measure_from_arrays(ref, est, VISQOL_RATES[mode])
    return float(result.moslqo)


def visqol_batch(
    estimates: Sequence[torch.Tensor | np.ndarray],
    references: Sequence[torch.Tensor | np.ndarray],
    sample_rate: int,
    mode: str = "speech",
) -> list[float]:
    """`visqol` over paired lists of signals (lengths may differ between pairs)."""
    if len(estimates) != len(references):
        raise ValueError(f"{len(estimates)} estimates but {len(references)} references")
    return [visqol(e, r, sample_rate, mode) for e, r in zip(estimates, references)]


def _visqol_signal(wav, sample_rate: int, mode: str, name: str) -> np.ndarray:
    wav = torch.as_tensor(wav).detach().cpu().to(torch.float64)
    if wav.ndim == 2:
        wav = wav.mean(dim=0)
    if wav.ndim != 1 or wav.shape[0] == 0:
        raise ValueError(f"ViSQOL {name} must be (T,) or (C, T) with T > 0, got {tuple(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise ValueError(f"ViSQOL {name} contains NaN or infinite samples")
    from .audio import resample

    return resample(wav, sample_rate, VISQOL_RATES[mode]).numpy()


@functools.lru_cache(maxsize=None)
def _visqol_api(mode: str):
    visqol_pkg = require("visqol", "metrics")
    from visqol.quality_mapper import has_lattice_runtime

    api = visqol_pkg.VisqolApi()
    # Decide the speech mapper here so ViSQOL does not log a fallback warning on every run.
    lattice = has_lattice_runtime() if mode == "speech" else None
    api.create(mode=mode, use_lattice_model=lattice)
    return api
