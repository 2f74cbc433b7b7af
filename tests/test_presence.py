"""The presence check: its features from one separation's outputs, and the logistic detector."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import load_script

from codecsep.errors import CodecSepError
from codecsep.separators.presence import FEATURES, PresenceDetector, presence_features
from codecsep.text.audio_encoder import AudioEncoder, AudioEncoderConfig
from codecsep.text.base import get_text_encoder

SR = 16000
TINY = AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=32, text_encoder="hash")


def tiny_encoder() -> AudioEncoder:
    torch.manual_seed(0)
    return AudioEncoder(TINY, text_encoder=get_text_encoder("hash", dim=TINY.embed_dim)).eval()


def test_features_are_the_levels_and_cosines_of_the_outputs():
    enc = tiny_encoder()
    mix = torch.randn(1, SR) * 0.1
    targets = torch.stack([0.5 * mix, 0.01 * mix])  # -6 dB, -40 dB
    residuals = mix[None] - targets
    rows = presence_features(mix, targets, residuals, ["dog", "piano"], SR, encoder=enc)
    assert len(rows) == 2 and all(set(r) == set(FEATURES) for r in rows)
    assert rows[0]["level"] == pytest.approx(-6.02, abs=0.01)
    assert rows[1]["level"] == pytest.approx(-40.0, abs=0.01)
    text = enc.embed_text(["dog"])[0]
    assert rows[0]["sem_target"] == pytest.approx(float(text @ enc.embed(targets[0])), abs=1e-5)
    assert rows[0]["sem_mixture"] == pytest.approx(float(text @ enc.embed(mix)), abs=1e-5)
    for r in rows:
        assert r["contrast"] == pytest.approx(r["sem_target"] - r["sem_residual"], abs=1e-6)
    with pytest.raises(CodecSepError, match="1 prompt"):
        presence_features(mix, targets, residuals, ["dog"], SR, encoder=enc)


def test_the_detector_is_a_logistic_regression_with_a_threshold(tmp_path):
    det = PresenceDetector(("level", "contrast"), (-10.0, 0.1), (10.0, 0.1), (1.0, 0.5), 0.0, 0.3)
    rows = [{"level": lv, "contrast": 0.1} for lv in (-40.0, -10.0, 0.0)]
    p = det.probability(rows)
    assert p[1] == pytest.approx(0.5) and p[0] < p[1] < p[2]
    assert det.absent(rows) == [True, False, False]
    back = PresenceDetector.load(det.save(tmp_path / "d.json"))
    assert back == det
    with pytest.raises(CodecSepError, match="unknown presence feature"):
        PresenceDetector(("loudness",), (0.0,), (1.0,), (1.0,), 0.0, 0.5)
    with pytest.raises(CodecSepError, match="one mean, std and weight"):
        PresenceDetector(("level",), (0.0, 1.0), (1.0,), (1.0,), 0.0, 0.5)
    with pytest.raises(CodecSepError, match="no presence detector"):
        PresenceDetector.load(tmp_path / "missing.json")


def test_fit_separates_present_from_absent_rows_and_keeps_the_asked_share(tmp_path):
    fp = load_script("fit_presence")
    rng = np.random.default_rng(0)
    y = np.repeat([1, 0], 200)
    x = {f: rng.standard_normal(400) for f in FEATURES}
    x["level"] = np.where(y == 1, -4.0, -14.0) + 4 * rng.standard_normal(400)  # informative
    det = fp.fit(x, y, ("level", "sem_residual"), keep=0.9)
    s = fp.scores(det, x, y)
    assert s["auc"] > 0.9 and s["present_flagged"] == pytest.approx(0.1, abs=0.01)
    assert abs(det.weights[0]) > 5 * abs(det.weights[1])  # the noise feature gets little weight
    assert fp.auc(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 1.0
    assert fp.auc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    table = tmp_path / "t.csv"  # a table as absent_prompts.py --csv writes it, and its ROC plot
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, [*FEATURES, "present"])
        w.writeheader()
        w.writerows({**row, "present": int(v)} for row, v in zip(fp.rows_of(x), y))
    assert fp.scores(det, *fp.read([table])) == pytest.approx(s)
    fp.roc_figure(det, [table], tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_the_check_is_off_until_one_is_installed_and_uses_the_separators_prompts(
        tmp_path, monkeypatch):
    from codecsep.separators import presence

    monkeypatch.setattr(presence, "DEFAULT_PRESENCE", tmp_path / "none")
    assert presence.PresenceCheck.load() is None
    with pytest.raises(CodecSepError, match="no audio encoder"):
        presence.PresenceCheck.load(tmp_path / "none")
    enc = tiny_encoder()
    folder = tmp_path / "check"
    enc.save(folder / "audio-encoder")
    PresenceDetector(("level",), (-10.0,), (5.0,), (1.0,), 0.0, 0.3, text="anchored").save(
        folder / "detector.json")
    check = presence.PresenceCheck.load(folder)
    assert check.detector.text == "anchored"

    class Sep:  # the two things the check reads from a separator
        sample_rate, text_dim = SR, TINY.embed_dim
        config = type("C", (), {"text_encoder": "hash"})()

        def embed(self, prompts):
            return torch.nn.functional.normalize(torch.ones(len(prompts), TINY.embed_dim), dim=-1)

    sep = Sep()
    assert torch.equal(check.prompt_embeddings(sep, ["a", "b"]), sep.embed(["a", "b"]))
    sep.text_dim = 16  # another text space: raw prompt embeddings
    assert check.prompt_embeddings(sep, ["a"]) is None
    mix = torch.randn(1, SR) * 0.1
    p = check.probabilities(sep, mix, torch.stack([mix, 1e-3 * mix]), torch.stack([0 * mix, mix]),
                            ["dog", "cat"])
    assert len(p) == 2 and p[0] > 0.5 > p[1]


def test_the_installed_check_hears_the_demo_and_flags_prompts_for_noise(capsys):
    """The shipped check (AE2 + detector E, `results/experiments/README.md`, sessions 22-23):
    the separator's anchored prompts, and the three sources of the demo mixture all pass while
    sounds asked of white noise are flagged. Outputs are the same with the check off."""
    import codecsep
    from codecsep.separators import api
    from codecsep.separators.presence import DEFAULT_PRESENCE

    check = api.installed_presence_check()
    assert check is not None and check.detector.text == "anchored"
    sep = api.get_separator(None)
    assert check.prompt_embeddings(sep, ["piano"]) is not None  # the same text space
    demo = DEFAULT_PRESENCE.parent / "demo" / "mixtures" / "three_source-s0-000000.wav"
    labels = ["piano", "flowing water", "speech"]  # the demo's sources (metadata.csv)
    found = codecsep.separate(str(demo), labels)["presence"]
    assert found["absent"] == [False] * 3, found
    noise = 0.05 * np.random.default_rng(0).standard_normal(4 * SR).astype("float32")
    with pytest.warns(UserWarning, match="may not be in the input"):
        out = codecsep.separate(noise, ["speech", "piano"], sample_rate=SR)
    assert out["presence"]["absent"] == [True, True], out["presence"]
    with warnings.catch_warnings():  # the quiet-target notes, which the check replaced above
        warnings.simplefilter("ignore")
        off = codecsep.separate(noise, ["speech", "piano"], sample_rate=SR, presence_check=False)
    assert off["presence"] is None and torch.equal(off["target"], out["target"])


def test_member_selection_rules_pick_per_item():
    ms = load_script("member_selection")
    names = ["median", "m1", "m2"]
    gain = {"median": [5.0, 5.0, 5.0], "m1": [9.0, 1.0, 5.0], "m2": [1.0, 6.0, 4.0]}
    sem = {"median": [0.1, 0.1, 0.1], "m1": [0.3, 0.0, 0.12], "m2": [0.0, 0.2, 0.5]}
    table = {f"{v}:{k}": np.array(d[v]) for k, d in (("si_sdri", gain), ("sem", sem)) for v in names}
    r = ms.rules(table, names)
    assert r["median (shipped)"] == 5.0 and r["m1 alone"] == 5.0
    assert r["oracle: best variant per item"] == pytest.approx((9 + 6 + 5) / 3)
    assert r["highest sem of all variants"] == pytest.approx((9 + 6 + 4) / 3)
    # margin 0.05: items 1 and 2 switch (sem +0.2 / +0.1 over the median's), item 3 too (+0.4)
    assert r["a member if its sem beats the median's by 0.05"] == pytest.approx((9 + 6 + 4) / 3)
