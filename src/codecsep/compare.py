"""`codecsep compare`: is one model better than another on the same evaluation items?

    codecsep compare results/eval/codecsep-runs-sep/two_source-label-extract \\
                     results/eval/codecsep/two_source-label-extract

Two `codecsep eval` result folders scored on the same evaluation set (same protocol, prompt mode
and task, and the same draw: the same fingerprint, or, for a set rendered again on another
machine, the same items with the same labels and mixture input SI-SDRs) are paired item by item;
the mean of the per-item differences A - B of a metric (SI-SDRi by default) comes with a 95%
percentile-bootstrap CI. Pairing removes the
difficulty of each mixture from the comparison, so the CI is much narrower than the two
unpaired CIs suggest. Items scored by only one side, or NaN on either, are left out and counted.
`--by label` adds the paired mean per value of an items.csv column (which classes moved);
`--by category` groups the labels into music, speech and effects.

Several draws pool: `codecsep compare A0 B0 A1 B1 ...` pairs each A folder with the B folder after
it (each pair one draw) and takes the mean and CI over all their items together. Draws of one split
reuse its clips, so items of different draws are not independent and the pooled CI is too narrow;
the mean is what pooling sharpens.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from .errors import CodecSepError
from .evaluate import ItemLog, bootstrap_ci, item_inputs, same_draw

SAME = ("protocol", "prompt_mode", "task")


def _run_info(folder: Path) -> dict:
    path = folder / "run.json"
    if not path.is_file():
        raise CodecSepError(f"{folder}: not a `codecsep eval` result folder (no run.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CodecSepError(f"{path}: unreadable ({e})") from e


def label_category(label: str) -> str:
    """music (an instrument class), speech, or effects: the corpus's three kinds of source."""
    from .data.sources.instruments import INSTRUMENTS

    return "music" if label in INSTRUMENTS else "speech" if label == "speech" else "effects"


DERIVED = {"category": ("label", label_category)}  # --by columns computed from another column


def _rows(folder: Path, *columns: str) -> dict:
    rows = ItemLog(folder / "items.csv").rows
    for column in columns:
        if column in DERIVED and rows and column not in next(iter(rows.values())):
            source, derive = DERIVED[column]
            for row in rows.values():
                row[column] = derive(row[source])
        if rows and column not in next(iter(rows.values())):
            raise CodecSepError(f"{folder}: items.csv has no column {column!r}")
    return rows


def _scores(rows: dict, metric: str) -> dict:
    out = {}
    for key, row in rows.items():
        try:
            out[key] = float(row[metric])
        except ValueError:  # an empty cell: the metric was not computed for this item
            out[key] = math.nan
    return out


def _groups(sa: dict, sb: dict, keys: list, group_of: dict) -> list[dict]:
    """Paired mean difference per group, largest gain first."""
    by: dict[str, list[tuple[float, float]]] = {}
    for k in keys:
        by.setdefault(group_of[k], []).append((sa[k], sa[k] - sb[k]))
    out = [{"group": g, "n": len(v), "a": float(np.mean([x for x, _ in v])),
            "mean_difference": float(np.mean([d for _, d in v]))} for g, v in by.items()]
    return sorted(out, key=lambda r: -r["mean_difference"])


def _pair(a: Path, b: Path, metric: str, by: str | None):
    """Per-item scores of one pair of folders scored on the same draw: (sa, sb, a_rows, infos)."""
    info_a, info_b = _run_info(a), _run_info(b)
    for k in SAME:
        if info_a.get(k) != info_b.get(k):
            raise CodecSepError(f"{a} and {b} differ in {k} ({info_a.get(k)} vs {info_b.get(k)}): "
                                "their items cannot be paired")
    fa, fb = info_a.get("eval_set_fingerprint"), info_b.get("eval_set_fingerprint")
    if fa != fb and not same_draw(item_inputs(a), item_inputs(b)):
        raise CodecSepError(f"{a} and {b} differ in eval_set_fingerprint ({fa} vs {fb}) and in "
                            "their items: they were scored on different draws and cannot be paired")
    rows_a = _rows(a, metric, *([by] if by else []))
    return _scores(rows_a, metric), _scores(_rows(b, metric), metric), rows_a, (info_a, info_b)


def paired_difference(a, b, metric: str = "si_sdri", by: str | None = None) -> dict:
    """Mean and 95% CI of metric(A) - metric(B) over the items both scored (and per value of
    the items.csv column `by`, when given). `a` and `b` are result folders, or equally long
    lists of them (draw i of A paired with draw i of B, all items pooled)."""
    a_list, b_list = ([a], [b]) if isinstance(a, (str, Path)) else (list(a), list(b))
    if not a_list or len(a_list) != len(b_list):
        raise CodecSepError("compare takes result folders in pairs: A B [A B ...]")
    sa, sb, rows_a, infos = {}, {}, {}, []
    for i, (fa, fb) in enumerate(zip(a_list, b_list)):
        pa, pb, ra, info = _pair(Path(fa), Path(fb), metric, by)
        sa.update({(i, *k): v for k, v in pa.items()})  # keys: (draw, mixture id, source)
        sb.update({(i, *k): v for k, v in pb.items()})
        rows_a.update({(i, *k): v for k, v in ra.items()})
        infos.append(info)
    keys = [k for k in sorted(set(sa) & set(sb)) if np.isfinite([sa[k], sb[k]]).all()]
    pairs = np.array([(sa[k], sb[k]) for k in keys]).reshape(-1, 2)
    if len(pairs) < 2:
        raise CodecSepError(f"{a} and {b} share fewer than 2 items scored with {metric}")
    diff = pairs[:, 0] - pairs[:, 1]
    lo, hi = bootstrap_ci(diff)
    info_a, info_b = infos[0]
    return {"metric": metric, "draws": len(a_list),
            "a": {"model": info_a.get("model"), "mean": float(pairs[:, 0].mean())},
            "b": {"model": info_b.get("model"), "mean": float(pairs[:, 1].mean())},
            "mean_difference": float(diff.mean()), "ci95": [lo, hi], "n": len(diff),
            "a_wins": int((diff > 0).sum()), "left_out": len(set(sa) | set(sb)) - len(diff),
            **({"by": by, "groups": _groups(sa, sb, keys, {k: r[by] for k, r in rows_a.items()})}
               if by else {})}


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="paired difference of two `codecsep eval` results",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", type=Path, nargs="+", metavar="A B",
                   help="result folder of model A, then of model B on the same evaluation set; "
                        "more pairs (other draws) pool their items")
    p.add_argument("--metric", default="si_sdri", help="items.csv column (default %(default)s)")
    p.add_argument("--by", default=None, metavar="COLUMN",
                   help="also the paired mean per value of this items.csv column (e.g. label), "
                        "or per category (music, speech, effects)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if len(args.folders) % 2:
        raise CodecSepError("compare takes result folders in pairs: A B [A B ...]")
    a, b = args.folders[0::2], args.folders[1::2]
    r = paired_difference(a[0] if len(a) == 1 else a, b[0] if len(b) == 1 else b,
                          args.metric, args.by)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    lo, hi = r["ci95"]
    print(f"{r['metric']}: A {r['a']['model']} {r['a']['mean']:.2f}, B {r['b']['model']} "
          f"{r['b']['mean']:.2f}; A - B = {r['mean_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] "
          f"(95% paired bootstrap, {r['n']} items"
          + (f" of {r['draws']} draws" if r["draws"] > 1 else "")
          + f", A better on {r['a_wins']}; "
          f"{r['left_out']} left out)")
    for g in r.get("groups", []):
        print(f"  {r['by']} {g['group']:<20} A {g['a']:6.2f}  A - B {g['mean_difference']:+6.2f}  ({g['n']} items)")
    return 0
