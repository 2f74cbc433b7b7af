"""Pooled SI-SDRi of one model over several `codecsep eval` folders (draws of one protocol).

    python scripts/pool_draws.py results/eval/codecsep/two_source-label-extract \
        results/eval/draws/codecsep/two_source-test-seed{1,2,3,4}

Prints the mean over all items, its 95% bootstrap CI (too narrow: draws reuse the split's clips),
each draw's mean, and the share of items below 0 dB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codecsep.evaluate import ItemLog, describe


def pooled(folders: list[Path], metric: str = "si_sdri") -> dict:
    per_draw = []
    for f in folders:
        rows = ItemLog(Path(f) / "items.csv").rows.values()
        per_draw.append(np.array([float(r[metric]) for r in rows if r.get(metric, "") != ""]))
    values = np.concatenate(per_draw)
    return {**describe(values), "draws": [float(np.nanmean(v)) for v in per_draw],
            "below_0": float(np.mean(values[np.isfinite(values)] < 0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--metric", default="si_sdri")
    a = ap.parse_args()
    r = pooled(a.folders, a.metric)
    lo, hi = r["ci95"]
    print(f"{a.metric}: {r['mean']:.2f} [{lo:.2f}, {hi:.2f}] over {r['n']} items of {len(a.folders)} draws "
          f"(draws: {', '.join(f'{d:.2f}' for d in r['draws'])}; below 0 dB: {100 * r['below_0']:.0f}%)")


if __name__ == "__main__":
    main()
