"""`codecsep compare`: paired differences of two eval result folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codecsep import cli
from codecsep.compare import paired_difference
from codecsep.errors import CodecSepError
from codecsep.evaluate import ItemLog


def result(folder, model, scores, fingerprint="set1", labels=None, inputs=None, **run):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "model": model, "protocol": "two_source", "prompt_mode": "label", "task": "extract",
        "eval_set_fingerprint": fingerprint, **run}))
    log = ItemLog(folder / "items.csv")
    for i, s in enumerate(scores):
        x = inputs[i] if inputs is not None else -float(i)  # the mixture's input SI-SDR
        log.append({"mixture_id": f"m{i}", "source_index": 0, "si_sdri": s, "si_sdr": s + x,
                    "label": labels[i] if labels else "dog"})
    return folder


def test_paired_difference_matches_the_item_differences(tmp_path):
    rng = np.random.default_rng(0)
    b = rng.normal(3.0, 5.0, 50)  # very different items, a constant gain of 0.5 dB
    a = b + 0.5 + rng.normal(0, 0.1, 50)
    r = paired_difference(result(tmp_path / "a", "new", a), result(tmp_path / "b", "old", b))
    assert r["n"] == 50 and r["left_out"] == 0 and r["a_wins"] == int((a > b).sum())
    assert r["mean_difference"] == pytest.approx(float(np.mean(a - b)), abs=1e-3)
    lo, hi = r["ci95"]
    assert 0.4 < lo < r["mean_difference"] < hi < 0.6  # pairing cancels the 5 dB item spread
    assert r["a"]["mean"] == pytest.approx(float(a.mean()), abs=1e-3)


def test_unpaired_items_and_nans_are_left_out(tmp_path):
    a = result(tmp_path / "a", "new", [1.0, 2.0, float("nan"), 4.0, 5.0])
    b = result(tmp_path / "b", "old", [0.0, 1.0, 1.0])
    r = paired_difference(a, b)
    assert r["n"] == 2 and r["left_out"] == 3 and r["mean_difference"] == pytest.approx(1.0)


def test_different_sets_and_bad_folders_are_refused(tmp_path, capsys):
    a = result(tmp_path / "a", "new", [1.0, 2.0])
    b = result(tmp_path / "b", "old", [1.0, 2.0], fingerprint="other", inputs=[3.0, 5.0])
    with pytest.raises(CodecSepError, match="eval_set_fingerprint"):
        paired_difference(a, b)
    assert cli.main(["compare", str(a), str(tmp_path / "nothing")]) == 2
    assert "not a `codecsep eval` result folder" in capsys.readouterr().err
    with pytest.raises(CodecSepError, match="no column"):
        paired_difference(a, a, metric="pesq")


def test_a_draw_rendered_again_elsewhere_still_pairs(tmp_path):
    """Another fingerprint (the metadata's levels differ in the 4th decimal on another machine)
    pairs when every item has the same label and mixture input SI-SDR; a redraw does not."""
    a = result(tmp_path / "a", "new", [2.0, 3.0], inputs=[-1.0, 4.0])
    same = result(tmp_path / "b", "old", [1.0, 2.0], fingerprint="other", inputs=[-1.0, 4.004])
    assert paired_difference(a, same)["mean_difference"] == pytest.approx(1.0)
    redraw = result(tmp_path / "c", "old", [1.0, 2.0], fingerprint="other", inputs=[-1.0, 5.0])
    with pytest.raises(CodecSepError, match="different draws"):
        paired_difference(a, redraw)  # same labels, other clips: the inputs differ
    relabelled = result(tmp_path / "d", "old", [1.0, 2.0], fingerprint="other",
                        inputs=[-1.0, 4.0], labels=["dog", "cat"])
    with pytest.raises(CodecSepError, match="different draws"):
        paired_difference(a, relabelled)


def test_cli_prints_the_difference(tmp_path, capsys):
    a = result(tmp_path / "a", "new", [2.0, 3.0, 4.0])
    b = result(tmp_path / "b", "old", [1.0, 2.0, 3.0])
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "A - B = +1.00" in out and "3 items" in out
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_difference"] == pytest.approx(1.0)


def test_by_label_gives_the_paired_mean_of_each_class(tmp_path):
    labels = ["cow", "cow", "violin", "violin", "violin"]
    a = result(tmp_path / "a", "new", [5.0, 7.0, 1.0, 1.0, 1.0], labels=labels)
    b = result(tmp_path / "b", "old", [1.0, 1.0, 2.0, 2.0, 2.0], labels=labels)
    r = paired_difference(a, b, by="label")
    assert [(g["group"], g["n"], g["mean_difference"], g["a"]) for g in r["groups"]] == [
        ("cow", 2, 5.0, 6.0), ("violin", 3, -1.0, 1.0)]  # largest gain first
    with pytest.raises(CodecSepError, match="no column 'speaker'"):
        paired_difference(a, b, by="speaker")


def test_by_category_groups_labels_into_music_speech_and_effects(tmp_path):
    labels = ["violin", "piano", "speech", "cow", "dog"]
    a = result(tmp_path / "a", "new", [3.0, 5.0, 1.0, 2.0, 2.0], labels=labels)
    b = result(tmp_path / "b", "old", [1.0, 1.0, 1.0, 3.0, 3.0], labels=labels)
    groups = {g["group"]: (g["n"], g["mean_difference"]) for g in
              paired_difference(a, b, by="category")["groups"]}
    assert groups == {"music": (2, 3.0), "speech": (1, 0.0), "effects": (2, -1.0)}


def test_draws_pool_item_by_item(tmp_path, capsys):
    """Several pairs of folders (draws) pool their items; a pair from different draws is refused."""
    a0 = result(tmp_path / "a0", "new", [2.0, 3.0])
    b0 = result(tmp_path / "b0", "old", [1.0, 2.0])
    a1 = result(tmp_path / "a1", "new", [0.0, 0.0, 0.0], fingerprint="set2", inputs=[1.0, 2.0, 3.0])
    b1 = result(tmp_path / "b1", "old", [1.0, 1.0, 1.0], fingerprint="set2", inputs=[1.0, 2.0, 3.0])
    r = paired_difference([a0, a1], [b0, b1])  # the same mixture ids in both draws stay apart
    assert r["draws"] == 2 and r["n"] == 5 and r["a_wins"] == 2
    assert r["mean_difference"] == pytest.approx((1 + 1 - 1 - 1 - 1) / 5)
    assert cli.main(["compare", str(a0), str(b0), str(a1), str(b1)]) == 0
    assert "5 items of 2 draws" in capsys.readouterr().out
    assert cli.main(["compare", str(a0), str(b0), str(a1)]) == 2
    assert "in pairs" in capsys.readouterr().err
    with pytest.raises(CodecSepError, match="different draws"):
        paired_difference([a0, a1], [b1, b0])


def test_pool_draws_script_gives_the_mean_over_all_items(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts/pool_draws.py"
    d0 = result(tmp_path / "d0", "m", [2.0, 4.0])
    d1 = result(tmp_path / "d1", "m", [-3.0, 5.0, 7.0], fingerprint="set2")
    r = subprocess.run([sys.executable, str(script), str(d0), str(d1)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3.00 [" in r.stdout and "5 items of 2 draws" in r.stdout  # (2+4-3+5+7)/5
    assert "draws: 3.00, 3.00" in r.stdout and "below 0 dB: 20%" in r.stdout


def test_valid_gate_applies_the_pre_registered_rule(tmp_path):
    """scripts/valid_gate.py: mean of the four paired draw differences >= bar, and each
    protocol's two-draw mean >= 0; it reads already-scored draws without scoring them again."""
    from helpers import load_script

    gate = load_script("valid_gate")
    gains = {("two_source", 0): 0.6, ("two_source", 1): 0.4, ("three_source", 0): 0.1,
             ("three_source", 1): -0.3}  # mean +0.2, three-source's two-draw mean -0.1
    for (p, s), g in gains.items():
        base = [1.0, 2.0, 3.0, 4.0]
        result(gate.draw_folder(tmp_path / "ref", p, s), "old", base, fingerprint=f"{p}{s}")
        result(gate.draw_folder(tmp_path / "new", p, s), "new", [b + g for b in base],
               fingerprint=f"{p}{s}")
        (gate.draw_folder(tmp_path / "new", p, s) / "summary.json").write_text("{}")
    gate.score("unused", tmp_path / "new", 1, "/nonexistent/codecsep")  # all four already scored
    v = gate.verdict(tmp_path / "new", tmp_path / "ref", bar=0.15)
    assert v["mean"] == pytest.approx(0.2) and v["protocol_means"]["three_source"] == pytest.approx(-0.1)
    assert not v["passed"]  # over the bar, but one protocol below 0
    assert gate.verdict(tmp_path / "new", tmp_path / "ref", bar=0.25)["passed"] is False
    reverse = gate.verdict(tmp_path / "ref", tmp_path / "new", bar=-0.25)  # -0.2, two-source < 0
    assert reverse["mean"] == pytest.approx(-0.2) and not reverse["passed"]
    for s in (0, 1):  # make three-source's draws equal to the reference's: now it passes
        folder = gate.draw_folder(tmp_path / "new", "three_source", s)
        shutil.rmtree(folder)
        result(folder, "new", [1.0, 2.0, 3.0, 4.0], fingerprint=f"three_source{s}")
    assert gate.verdict(tmp_path / "new", tmp_path / "ref", bar=0.15)["passed"]  # +0.25, 0
    assert gate.draw_folder(tmp_path, "two_source", 0).name == "two_source-valid"
    assert gate.draw_folder(tmp_path, "three_source", 1).name == "three_source-valid-seed1"
