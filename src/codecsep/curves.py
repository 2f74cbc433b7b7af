"""Training curves of several runs side by side, kept in results/ so the README can show them.

    codecsep curves --run codecsep=runs/sep --run resunet=runs/resunet
        -> results/training/<name>/log.csv (+ history.json), results/training/curves.png,
           results/training/curves.json (the metric at steps every run reached)

Runs trained by the same recipe (`codecsep train separator` and `codecsep train resunet` draw
identical mixtures and prompts from the same seed) can be compared at equal steps on their
training batches: that is a matched protocol, independent of how long each run went on.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from pathlib import Path

from .errors import CodecSepError, positive_int

DEFAULT_METRIC = "target_sisdri"  # SI-SDRi of the extracted target on the training batch


def read_log(path) -> list[dict]:
    """A Trainer's log.csv as a list of {column: float} (empty cells -> NaN), one row per step
    in step order: a run interrupted between checkpoints logs its last steps twice, and the
    rows written after the resume are the ones its weights descend from."""
    path = Path(path)
    if not path.is_file():
        raise CodecSepError(f"{path}: no training log (log.csv) there")
    with open(path, newline="") as f:
        rows = {}
        for row in csv.DictReader(f):
            row = {k: _float(v) for k, v in row.items()}
            rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def smoothed(rows: list[dict], metric: str, window: int = 8) -> tuple[list[float], list[float]]:
    """(steps, moving average of `metric` over `window` logged points) for the rows that have it."""
    pts = [(r["step"], r[metric]) for r in rows if math.isfinite(r.get(metric, math.nan))]
    steps, values = [p[0] for p in pts], [p[1] for p in pts]
    out = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
           for i in range(len(values))]
    return steps, out


def matched_table(runs: dict[str, list[dict]], metric: str, every: int = 1000,
                  window: int = 8) -> dict:
    """The smoothed metric of every run at the steps (multiples of `every`) that all runs reached."""
    curves = {name: dict(zip(*smoothed(rows, metric, window))) for name, rows in runs.items()}
    reached = min((max(c) for c in curves.values() if c), default=0)
    steps = [s for s in range(every, int(reached) + 1, every)
             if all(s in c for c in curves.values())]
    return {"metric": metric, "window": window,
            "steps": steps, "values": {n: [curves[n][s] for s in steps] for n in curves},
            "last_step": {n: max(c) if c else None for n, c in curves.items()}}


def plot_curves(runs: dict[str, list[dict]], metric: str, png, window: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, rows in runs.items():
        ax.plot(*smoothed(rows, metric, window), label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} (moving average of {window} logs)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def collect(runs: dict[str, str], out_dir="results/training", metric: str = DEFAULT_METRIC,
            every: int = 1000, command: str = "", note: str = "") -> dict:
    """Copy each run's log into out_dir/<name>/, plot them together, write curves.json."""
    out = Path(out_dir)
    logs = {}
    for name, run in runs.items():
        run = Path(run)
        rows = read_log(run / "log.csv")
        if rows and metric not in rows[0]:
            raise CodecSepError(f"{run}/log.csv has no column {metric!r}: "
                                f"use one of {', '.join(rows[0])}")
        dest = out / name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "log.csv", dest / "log.csv")
        if (run / "history.json").is_file():
            shutil.copyfile(run / "history.json", dest / "history.json")
        logs[name] = rows
    plot_curves(logs, metric, out / "curves.png")
    table = {**matched_table(logs, metric, every), "command": command, "note": note}
    (out / "curves.json").write_text(json.dumps(table, indent=2))
    return table


def curves_markdown(table: dict, png: str = "results/training/curves.png") -> list[str]:
    names = list(table["values"])
    lines = [f"![training curves]({png})", "",
             (f"`{table['metric']}` on each run's own training batches (moving average of "
              f"{table['window']} logged points) at the steps every run reached; last step "
              "logged: " + ", ".join(f"{n} {table['last_step'][n]:.0f}" for n in names) + "."), "",
             "| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, step in enumerate(table["steps"]):
        lines.append(f"| {step} | " + " | ".join(f"{table['values'][n][i]:.2f}" for n in names)
                     + " |")
    return lines + (["", table["note"]] if table.get("note") else [])


def register(subparsers) -> None:
    p = subparsers.add_parser("curves", help="plot several training runs together into results/",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR",
                   help="a run directory holding log.csv (repeat)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="log.csv column (default %(default)s)")
    p.add_argument("--every", type=positive_int, default=1000, help="table step spacing")
    p.add_argument("--out", default="results/training", help="output folder")
    p.add_argument("--note", default="", help="a caveat printed under the table")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    runs = {}
    for spec in args.run:
        name, sep, run = spec.partition("=")
        if not sep or not name or not run:
            raise CodecSepError(f"--run {spec!r}: write NAME=RUN_DIR")
        runs[name] = run
    command = shlex.join(["codecsep", *sys.argv[1:]])
    table = collect(runs, args.out, args.metric, args.every, command, args.note)
    print("\n".join(curves_markdown(table, f"{args.out}/curves.png")))
    return 0
