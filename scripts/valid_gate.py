"""The VALID gate a candidate separator must pass before it is looked at on TEST.

Scores MODEL on the four VALID draws the experiments use for decisions (label prompts; two- and
three-source; seeds 0 and 1), each paired with a reference's folders on the same draws, and prints
the rule fixed since session 21: the four-number mean of the paired differences must be at least
--bar (default +0.15 dB) and each protocol's two-draw mean at least 0.

    python scripts/valid_gate.py codecsep:runs/ens_D results/experiments/session25/d \\
        --reference results/experiments/session23/default-here

Draws already scored in OUT (a `summary.json` there) are not scored again, so an interrupted gate
resumes. `--json` prints the verdict as JSON as well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from codecsep.compare import paired_difference

DRAWS = [(p, s) for p in ("two_source", "three_source") for s in (0, 1)]


def draw_folder(root: Path, protocol: str, seed: int) -> Path:
    """`codecsep eval`'s folder naming for a VALID draw: <protocol>-valid[-seed<S>]."""
    return root / (f"{protocol}-valid" + (f"-seed{seed}" if seed else ""))


def score(model: str, out: Path, threads: int, codecsep: str) -> None:
    for protocol, seed in DRAWS:
        folder = draw_folder(out, protocol, seed)
        if (folder / "summary.json").exists():
            continue
        cmd = [codecsep, "eval", "--model", model, "--protocol", protocol, "--split", "valid",
               "--seed", str(seed), "--threads", str(threads), "--out", str(folder)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def verdict(out: Path, reference: Path, bar: float) -> dict:
    """Paired differences per draw, per protocol (two-draw mean) and overall, and the gate's call."""
    per_draw = {f"{p} s{s}": paired_difference(draw_folder(out, p, s), draw_folder(reference, p, s))
                for p, s in DRAWS}
    protocol_means = {p: float(np.mean([per_draw[f"{p} s{s}"]["mean_difference"] for s in (0, 1)]))
                      for p in ("two_source", "three_source")}
    overall = float(np.mean([d["mean_difference"] for d in per_draw.values()]))
    passed = overall >= bar and min(protocol_means.values()) >= 0
    return {"draws": per_draw, "protocol_means": protocol_means, "mean": overall, "bar": bar,
            "passed": passed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the candidate, as `codecsep eval --model` takes it")
    ap.add_argument("out", type=Path, help="folder for the candidate's four VALID draws")
    ap.add_argument("--reference", type=Path, required=True,
                    help="folder holding the reference model's four VALID draws")
    ap.add_argument("--bar", type=float, default=0.15, help="four-number mean needed, dB")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--codecsep", default=str(Path(sys.executable).with_name("codecsep")))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    score(a.model, a.out, a.threads, a.codecsep)
    v = verdict(a.out, a.reference, a.bar)
    for name, d in v["draws"].items():
        lo, hi = d["ci95"]
        print(f"{name:16s} {d['a']['mean']:6.2f} vs {d['b']['mean']:6.2f}: "
              f"{d['mean_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] over {d['n']} items")
    print(", ".join(f"{p}: {m:+.2f}" for p, m in v["protocol_means"].items()),
          f"| four-number mean {v['mean']:+.2f} (bar {v['bar']:+.2f}):",
          "PASSES" if v["passed"] else "fails")
    if a.json:
        print(json.dumps(v, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
