"""`codecsep curves`: runs compared at equal steps, copied into results/, plotted."""

import csv
import json

from codecsep import cli
from codecsep.curves import matched_table, read_log, smoothed


def _write_log(run, rows):
    run.mkdir(parents=True)
    with open(run / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_smoothing_is_a_trailing_moving_average():
    rows = [{"step": s, "m": float(v)} for s, v in zip((10, 20, 30), (0, 3, 6))]
    steps, vals = smoothed(rows, "m", window=2)
    assert steps == [10, 20, 30] and vals == [0.0, 1.5, 4.5]


def test_table_only_holds_steps_every_run_reached():
    a = [{"step": s, "m": 1.0} for s in range(100, 3001, 100)]
    b = [{"step": s, "m": 2.0} for s in range(100, 1501, 100)]
    t = matched_table({"a": a, "b": b}, "m", every=500, window=1)
    assert t["steps"] == [500, 1000, 1500]
    assert t["values"] == {"a": [1.0] * 3, "b": [2.0] * 3}
    assert t["last_step"] == {"a": 3000, "b": 1500}


def test_cli_copies_logs_plots_and_refuses_unknown_metric(tmp_path, capsys):
    for name, slope in (("ours", 2.0), ("peer", 1.0)):
        _write_log(tmp_path / name, [{"step": s, "lr": 1e-3, "target_sisdri": slope * s / 1000}
                                     for s in range(25, 2001, 25)])
    out = tmp_path / "results"
    assert cli.main(["curves", "--run", f"ours={tmp_path / 'ours'}", "--run",
                     f"peer={tmp_path / 'peer'}", "--out", str(out)]) == 0
    table = json.loads((out / "curves.json").read_text())
    assert table["steps"] == [1000, 2000]
    assert all(o > p for o, p in zip(table["values"]["ours"], table["values"]["peer"]))
    assert (out / "curves.png").stat().st_size > 1000
    assert len(read_log(out / "ours" / "log.csv")) == 80
    assert "| 1000 |" in capsys.readouterr().out
    for argv, message in (([f"ours={tmp_path / 'ours'}", "--metric", "nope"], "no column"),
                          ([str(tmp_path / "ours")], "NAME=RUN_DIR"),
                          ([f"x={tmp_path / 'missing'}"], "no training log")):
        assert cli.main(["curves", "--run", *argv, "--out", str(tmp_path / "r2")]) == 2
        assert message in capsys.readouterr().err


def test_report_shows_the_curves_section(tmp_path):
    from codecsep.report import build_report

    for name in ("ours", "peer"):
        _write_log(tmp_path / name, [{"step": s, "target_sisdri": s / 1000} for s in range(25, 1001, 25)])
    cli.main(["curves", "--run", f"ours={tmp_path / 'ours'}", "--run", f"peer={tmp_path / 'peer'}",
              "--out", str(tmp_path / "training")])
    readme = tmp_path / "README.md"
    readme.write_text("# X\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    _, new = build_report(readme, tmp_path / "none", tmp_path / "none.json",
                          deploy_file=tmp_path / "none.json", codec_file=tmp_path / "none.json",
                          speech_file=tmp_path / "none.json",
                          curves_file=tmp_path / "training" / "curves.json")
    assert "### Training curves at equal steps" in new and "| 1000 | 0.91 | 0.91 |" in new


def test_steps_logged_twice_after_a_resume_keep_the_later_row(tmp_path):
    rows = [{"step": s, "m": 1.0} for s in (25, 50, 75)] + [{"step": s, "m": 2.0} for s in (50, 75, 100)]
    _write_log(tmp_path / "r", rows)
    log = read_log(tmp_path / "r" / "log.csv")
    assert [r["step"] for r in log] == [25, 50, 75, 100]
    assert [r["m"] for r in log] == [1.0, 2.0, 2.0, 2.0]
