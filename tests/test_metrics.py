"""codecsep.metrics: agreement with reference implementations, invariances, and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codecsep.metrics import (
    MAX_DB,
    sdr,
    sdr_improvement,
    si_sdr,
    si_sdr_improvement,
    visqol,
    visqol_batch,
)

T = 8000


def signals(*shape: int, snr_spread: bool = True, seed: int = 0):
    """Reference, and an estimate = reference + noise at a range of noise levels (dB -20..30)."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(*shape, T, generator=g)
    noise = torch.randn(*shape, T, generator=g)
    n = int(np.prod(shape))
    gains = torch.logspace(1, -1.5, n).reshape(*shape, 1) if snr_spread else 0.3
    return ref + gains * noise, ref


def audiosep_sdr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-10) -> float:
    """AudioSep's `calculate_sdr` (utils.py), re-implemented in numpy: note (ref, est) order."""
    noise = est - ref
    numerator = np.clip(np.mean(ref**2), eps, None)
    denominator = np.clip(np.mean(noise**2), eps, None)
    return float(10.0 * np.log10(numerator / denominator))


# ---------------------------------------------------------------------------------------------
# SI-SDR
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_matches_torchmetrics(zero_mean):
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    est, ref = signals(3, 4)
    est, ref = est + 0.2, ref - 0.1  # DC offsets, so zero_mean matters
    ours = si_sdr(est, ref, zero_mean=zero_mean)
    theirs = scale_invariant_signal_distortion_ratio(est, ref, zero_mean=zero_mean)
    assert ours.shape == (3, 4)
    assert (ours - theirs).abs().max() < 1e-3
    assert ours.max() - ours.min() > 30  # the test covers a wide range of qualities


def test_si_sdr_matches_fast_bss_eval():
    import fast_bss_eval

    est, ref = signals(6)
    theirs = fast_bss_eval.si_sdr(ref[:, None].double(), est[:, None].double(), zero_mean=True)
    assert (si_sdr(est, ref).double() - theirs[:, 0]).abs().max() < 1e-3


def test_si_sdr_analytic_value():
    # estimate = reference + orthogonal noise with 1/10 of its energy -> exactly 10 dB
    t = torch.arange(T, dtype=torch.float64)
    ref = torch.sin(2 * math.pi * 5 * t / T)
    noise = math.sqrt(0.1) * torch.cos(2 * math.pi * 5 * t / T)
    assert si_sdr(ref + noise, ref).item() == pytest.approx(10.0, abs=1e-6)


@pytest.mark.parametrize("scale", [3.7, 0.01, -2.0])
def test_si_sdr_is_scale_invariant(scale):
    est, ref = signals(5)
    assert torch.allclose(si_sdr(est * scale, ref), si_sdr(est, ref), atol=1e-4)
    assert torch.allclose(si_sdr(est, ref * abs(scale)), si_sdr(est, ref), atol=1e-4)


def test_batch_shapes_match_per_signal_values():
    est, ref = signals(2, 3)
    batched = si_sdr(est, ref)
    assert batched.shape == (2, 3) and sdr(est, ref).shape == (2, 3)
    looped = torch.stack([torch.stack([si_sdr(est[i, j], ref[i, j]) for j in range(3)])
                          for i in range(2)])
    assert looped.shape == (2, 3) and torch.allclose(batched, looped)
    assert si_sdr(est[0, 0], ref[0, 0]).shape == ()


def test_identical_signals_are_capped_at_max_db():
    _, ref = signals(4)
    assert torch.equal(si_sdr(ref, ref), torch.full((4,), MAX_DB))
    assert torch.equal(si_sdr(2.5 * ref, ref), torch.full((4,), MAX_DB))
    assert torch.equal(sdr(ref, ref), torch.full((4,), MAX_DB))
    assert MAX_DB == 100.0


def test_silent_reference_is_nan_and_nanmean_friendly():
    est, ref = signals(3)
    ref[1] = 0.0
    ref_dc = ref.clone()
    ref_dc[1] = 0.5  # a constant is silent once the mean is removed
    for values in (si_sdr(est, ref), sdr(est, ref), si_sdr(est, ref_dc)):
        assert torch.isnan(values[1]) and torch.isfinite(values[[0, 2]]).all()
        assert torch.nanmean(values) == pytest.approx(values[[0, 2]].mean().item())
    assert torch.isfinite(si_sdr(est, ref_dc, zero_mean=False)).all()  # energy is not zero
    assert torch.isnan(si_sdr(ref[1], ref[1]))  # silent reference wins over "identical"


def test_silent_estimate():
    _, ref = signals(2)
    silent = torch.zeros_like(ref)
    assert torch.equal(si_sdr(silent, ref), torch.full((2,), -MAX_DB))  # no information: floor
    assert torch.allclose(sdr(silent, ref), torch.zeros(2))  # |s|^2 / |0 - s|^2 = 1


def test_values_stay_within_bounds():
    t = torch.arange(T, dtype=torch.float64)
    ref = torch.sin(2 * math.pi * 5 * t / T)
    orthogonal = torch.cos(2 * math.pi * 5 * t / T)
    assert si_sdr(orthogonal, ref).item() == pytest.approx(-MAX_DB, abs=1.0)
    assert sdr(1e9 * orthogonal, ref).item() >= -MAX_DB


def test_dtypes_and_numpy_inputs():
    est, ref = signals(2)
    assert si_sdr(est, ref).dtype == torch.float32
    assert si_sdr(est.double(), ref.double()).dtype == torch.float64
    from_numpy = si_sdr(est.numpy(), ref.numpy())
    assert isinstance(from_numpy, torch.Tensor) and torch.allclose(from_numpy, si_sdr(est, ref))


def test_gradients_are_finite():
    est, ref = signals(2)
    est.requires_grad_(True)
    (-si_sdr(est, ref).mean()).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


@pytest.mark.parametrize("metric", [si_sdr, sdr])
def test_mismatched_shapes_raise(metric):
    with pytest.raises(ValueError, match=r"estimate shape \(2, 100\) does not match reference"):
        metric(torch.zeros(2, 100), torch.zeros(2, 101))
    with pytest.raises(ValueError, match="does not match"):
        metric(torch.zeros(1, 100), torch.zeros(100))  # no silent broadcasting
    with pytest.raises(ValueError, match="T > 0"):
        metric(torch.zeros(2, 0), torch.zeros(2, 0))


@pytest.mark.parametrize("improvement", [si_sdr_improvement, sdr_improvement])
def test_improvement_mixture_shape_is_checked(improvement):
    with pytest.raises(ValueError, match=r"mixture shape \(3, 100\)"):
        improvement(torch.zeros(2, 100), torch.zeros(2, 100), torch.zeros(3, 100))


# ---------------------------------------------------------------------------------------------
# SDR (AudioSep definition) and improvements
# ---------------------------------------------------------------------------------------------
def test_sdr_matches_audiosep_formula():
    est, ref = signals(8)
    ours = sdr(est, ref)
    theirs = torch.tensor([audiosep_sdr(r.numpy(), e.numpy()) for r, e in zip(ref, est)])
    assert (ours - theirs).abs().max() < 1e-3


def test_sdr_is_not_scale_invariant():
    _, ref = signals(1)
    assert sdr(2 * ref, ref).item() == pytest.approx(0.0, abs=1e-5)  # |s|^2 / |s|^2
    assert sdr(1.1 * ref, ref).item() == pytest.approx(20.0, abs=1e-4)  # |s|^2 / |0.1 s|^2


def test_improvements_are_differences():
    g = torch.Generator().manual_seed(1)
    ref, other = torch.randn(2, 3, T, generator=g)
    mixture = ref + other
    estimate = ref + 0.1 * other
    for metric, improvement in [(si_sdr, si_sdr_improvement), (sdr, sdr_improvement)]:
        expected = metric(estimate, ref) - metric(mixture, ref)
        assert torch.allclose(improvement(estimate, ref, mixture), expected)
        assert (improvement(estimate, ref, mixture) > 15).all()  # 20 dB less interference
        assert torch.allclose(improvement(mixture, ref, mixture), torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# ViSQOL
# ---------------------------------------------------------------------------------------------
def speech_like(seconds: float, sr: int) -> np.ndarray:
    """A voiced, syllable-modulated harmonic tone: enough for ViSQOL's speech VAD."""
    t = np.arange(int(seconds * sr)) / sr
    voiced = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([150, 300, 450, 900]))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    rng = np.random.default_rng(0)
    return (0.2 * voiced * envelope + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.slow
def test_visqol_identical_high_noisy_lower():
    sr = 24_000  # not ViSQOL's rate: exercises the internal resampling to 16 kHz
    clean = torch.from_numpy(speech_like(3.0, sr))
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    same, degraded = visqol_batch([clean, noisy[None]], [clean, clean[None]], sr, mode="speech")
    assert 4.0 < same <= 5.0
    assert 1.0 <= degraded < same - 1.0


def test_visqol_input_checks():
    clean = speech_like(0.5, 16_000)
    assert math.isnan(visqol(clean, np.zeros_like(clean), 16_000))  # silent reference
    with pytest.raises(ValueError, match="mode"):
        visqol(clean, clean, 16_000, mode="music")
    with pytest.raises(ValueError, match="does not match"):
        visqol(clean[:-10], clean, 16_000)
    bad = clean.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        visqol(bad, clean, 16_000)
    with pytest.raises(ValueError, match="2 estimates but 1 references"):
        visqol_batch([clean, clean], [clean], 16_000)
