"""Where the paraphrase gap comes from: label-prompt and held-out-prompt runs of one model on the
same mixtures (`codecsep eval ... --prompts label` and `--prompts heldout`), paired per item.

    python scripts/paraphrase_gap.py results/eval/codecsep/two_source-label-extract \\
        results/eval/codecsep/two_source-heldout-extract

Prints the mean and median gap (label minus held-out SI-SDRi), its spread, how much of the mean
the items that lose more than --big dB carry, and those items' prompts.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def items(folder: Path) -> dict:
    with open(folder / "items.csv", newline="") as f:
        return {(r["mixture_id"], r["source_index"]): r for r in csv.DictReader(f)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("label", type=Path, help="the run with label prompts")
    ap.add_argument("heldout", type=Path, help="the run with held-out prompts, same mixtures")
    ap.add_argument("--big", type=float, default=5.0, help="a large loss, dB (default 5)")
    ap.add_argument("--show", type=int, default=10, help="items listed (default 10)")
    args = ap.parse_args()
    a, b = items(args.label), items(args.heldout)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("the two runs share no items (not the same mixtures?)")
    gap = np.array([float(a[k]["si_sdri"]) - float(b[k]["si_sdri"]) for k in keys])
    big = gap > args.big
    spread = " / ".join(f"{q:+.2f}" for q in np.percentile(gap, [5, 25, 75, 95]))
    print(f"{len(keys)} items: gap mean {gap.mean():+.2f} dB, median {np.median(gap):+.2f}; "
          f"5/25/75/95th percentiles {spread}")
    print(f"{big.sum()} items lose more than {args.big:g} dB and carry "
          f"{gap[big].sum() / len(gap):+.2f} dB of the mean; the other {(~big).sum()} average "
          f"{gap[~big].mean():+.2f}")
    for i in np.argsort(-gap)[: args.show]:
        k = keys[i]
        print(f"  {gap[i]:+6.2f}  {a[k]['label']:<14} label {float(a[k]['si_sdri']):6.2f}  "
              f"held-out {float(b[k]['si_sdri']):6.2f}  \"{b[k]['prompt']}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
