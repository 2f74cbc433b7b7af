"""Training augmentations: what each one does to a clip, and that adding one keeps old streams."""

import numpy as np

from codecsep.data.augment import augment, band_limit, peaking_eq


def band_energy(x, lo, hi, sr=16000):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum()


def test_band_limit_removes_the_top_octave_and_keeps_the_middle():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    y = band_limit(x, np.random.default_rng(1))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert band_energy(y, 7600, 8000) < 1e-3 * band_energy(x, 7600, 8000)  # above every cutoff
    assert band_energy(y, 1000, 2000) > 0.5 * band_energy(x, 1000, 2000)  # inside every band


def test_band_limit_off_draws_nothing_so_old_recipes_keep_their_stream():
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(augment(x, a, 0.5), augment(x, b, 0.5, p_band=0.0, p_eq=0.0))
    assert a.random() == b.random()


def test_peaking_eq_colours_the_spectrum_but_keeps_the_level_roughly():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    y = peaking_eq(x, np.random.default_rng(3))
    assert y.dtype == np.float32 and np.isfinite(y).all()
    edges = np.geomspace(100, 6000, 9)
    change_db = [10 * np.log10(band_energy(y, lo, hi) / band_energy(x, lo, hi))
                 for lo, hi in zip(edges[:-1], edges[1:])]
    assert max(np.abs(change_db)) > 2.0  # some band moved by more than 2 dB
    assert max(np.abs(change_db)) < 3 * 9.0 + 1  # never beyond three bands' worth of gain
