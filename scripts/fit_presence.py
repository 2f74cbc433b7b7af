"""Fit and check the presence detector on feature tables from `scripts/absent_prompts.py --csv`.

    python scripts/fit_presence.py cv A.csv B.csv            # fit on A, score on B, and back
    python scripts/fit_presence.py fit A.csv B.csv --features level,contrast [--text anchored] -o D.json
    python scripts/fit_presence.py report DETECTOR.json T.csv [T2.csv ...] [--plot roc.png]

Candidates in `cv`: a logistic regression on each single feature and on all of them. `fit` sets
the threshold so that 95% of the present prompts in its tables pass (`--keep`).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys

import numpy as np
import torch

from codecsep.separators.presence import FEATURES, PresenceDetector


def read(paths) -> tuple[dict, np.ndarray]:
    rows = [r for p in paths for r in csv.DictReader(open(p))]
    x = {f: np.array([float(r[f]) for r in rows]) for f in FEATURES}
    return x, np.array([int(r["present"]) for r in rows])


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """P(score of a present row > score of an absent row), ties counted half."""
    pos, neg = score[y == 1], score[y == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
                 / (len(pos) * len(neg)))


def fit(x: dict, y: np.ndarray, features, keep: float = 0.95, l2: float = 1e-3,
        text: str = "raw") -> PresenceDetector:
    m = np.array([x[f].mean() for f in features])
    s = np.array([x[f].std() + 1e-9 for f in features])
    z = torch.tensor(np.stack([(x[f] - mi) / si for f, mi, si in zip(features, m, s)], 1))
    t = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(len(features), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, t) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    det = PresenceDetector(tuple(features), tuple(m.tolist()), tuple(s.tolist()),
                           tuple(w.detach().tolist()), float(b.detach()), 0.5,
                           " ".join(shlex.quote(a) for a in ["python"] + sys.argv), text)
    p = np.array(det.probability(rows_of(x)))
    det.threshold = float(np.quantile(p[y == 1], 1 - keep))
    return det


def rows_of(x: dict) -> list[dict]:
    return [dict(zip(x, v)) for v in zip(*x.values())]


def scores(det: PresenceDetector, x: dict, y: np.ndarray) -> dict:
    p = np.array(det.probability(rows_of(x)))
    flagged = p < det.threshold
    return {"auc": auc(p, y), "present_flagged": float(flagged[y == 1].mean()),
            "absent_flagged": float(flagged[y == 0].mean()), "n": int(len(y))}


def roc_figure(det: PresenceDetector, paths, out) -> None:
    """One ROC curve per table (absent prompts flagged against present prompts flagged, as the
    threshold moves), each with the detector's own threshold marked."""
    from pathlib import Path

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    for path in paths:
        x, y = read([path])
        p = np.array(det.probability(rows_of(x)))
        cuts = np.concatenate([[-np.inf], np.sort(p), [np.inf]])
        present = [(p[y == 1] < c).mean() for c in cuts]
        absent = [(p[y == 0] < c).mean() for c in cuts]
        r = scores(det, x, y)
        line, = ax.plot(present, absent, label=f"{Path(path).stem} (AUC {r['auc']:.2f})")
        ax.plot(r["present_flagged"], r["absent_flagged"], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("present prompts flagged (false warnings)")
    ax.set_ylabel("absent prompts flagged (caught)")
    ax.set_title("presence check: dots = the shipped threshold", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(Path(out), dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("cv", "fit", "report"))
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--keep", type=float, default=0.95, help="share of present prompts to pass")
    ap.add_argument("-o", "--out", default="")
    ap.add_argument("--plot", default="", help="report: also write the tables' ROC curves (PNG) here")
    ap.add_argument("--text", default="raw", choices=("raw", "anchored"),
                    help="the prompt embeddings the tables were made with (absent_prompts.py --anchored)")
    a = ap.parse_args()
    if a.mode == "cv":
        if len(a.paths) != 2:
            ap.error("cv takes two tables")
        data = [read([p]) for p in a.paths]
        print("| features | AUC fit A -> B | AUC fit B -> A | mean | present flagged (B, A) "
              "| absent flagged (B, A) |\n|---|---|---|---|---|---|")
        for feats in [(f,) for f in FEATURES] + [FEATURES[:5], FEATURES]:
            r = [scores(fit(*data[i], feats, a.keep), *data[1 - i]) for i in (0, 1)]
            print(f"| {', '.join(feats)} | {r[0]['auc']:.3f} | {r[1]['auc']:.3f} | "
                  f"{(r[0]['auc'] + r[1]['auc']) / 2:.3f} | {r[0]['present_flagged']:.0%}, "
                  f"{r[1]['present_flagged']:.0%} | {r[0]['absent_flagged']:.0%}, "
                  f"{r[1]['absent_flagged']:.0%} |")
    elif a.mode == "fit":
        det = fit(*read(a.paths), tuple(a.features.split(",")), a.keep, text=a.text)
        print(det)
        if a.out:
            det.save(a.out)
    else:
        det = PresenceDetector.load(a.paths[0])
        print(f"| table | AUC | present prompts flagged | absent prompts flagged | rows |\n|---|---|---|---|---|")
        for p in a.paths[1:]:
            r = scores(det, *read([p]))
            print(f"| {p} | {r['auc']:.3f} | {r['present_flagged']:.1%} | {r['absent_flagged']:.1%} "
                  f"| {r['n']} |")
        if a.plot:
            roc_figure(det, a.paths[1:], a.plot)


if __name__ == "__main__":
    main()
