"""Probe: what does the separator output when extraction fails? (Session 5.)

For each item of an evaluation set (label prompts, extraction) this records the SI-SDRi, the
level of the extracted output and of the true target, both in dB relative to the mixture, and
the prompt. Failures (SI-SDRi below --fail-db) are then summarised: if their outputs were near-
silent, a level check could flag them for the user; if they are as loud as good outputs, the
model has extracted the wrong sound. Writes --out as JSON (every item, sorted by output level).

    python scripts/failure_levels.py --model codecsep --protocol two_source --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from codecsep.evaluate import (
    EVAL_SEED,
    PromptSource,
    ensure_eval_set,
    eval_items,
    load_model,
    run_model,
    score,
)


def level_db(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * np.log10(float((x ** 2).sum()) / float((ref ** 2).sum()) + 1e-12))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="codecsep")
    ap.add_argument("--protocol", default="two_source")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=100, help="mixtures")
    ap.add_argument("--fail-db", type=float, default=-5.0)
    ap.add_argument("--eval-root", default="data/eval")
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out_path = Path(args.out or f"results/experiments/failure-levels/{args.protocol}-{args.split}.json")
    model = load_model(args.model)
    eval_set = ensure_eval_set(args.protocol, args.n, args.eval_root, args.manifest, EVAL_SEED,
                               split=args.split)
    items = eval_items(eval_set, args.n, args.protocol, "label", PromptSource(None))
    rows = []
    for it in tqdm(items, desc=args.protocol, unit="item"):
        m = eval_set[it.index]
        out = run_model(model, m.mixture, m.sources, [it])
        mix, ref = torch.from_numpy(m.mixture), torch.from_numpy(m.sources[it.source_index])
        rows.append({"mixture_id": it.mixture_id, "prompt": it.prompt,
                     "si_sdri": round(score(out["target"][0], ref, mix)["si_sdri"], 2),
                     "output_db": round(level_db(out["target"][0], mix), 2),
                     "target_db": round(level_db(ref, mix), 2)})
    rows.sort(key=lambda r: r["output_db"])
    fail = [r for r in rows if r["si_sdri"] < args.fail_db]
    good = [r for r in rows if r["si_sdri"] >= args.fail_db]

    def med(rs, k):
        return round(float(np.median([r[k] for r in rs])), 2) if rs else None

    summary = {"n": len(rows), "n_fail": len(fail), "fail_db": args.fail_db,
               "mean_si_sdri": round(float(np.mean([r["si_sdri"] for r in rows])), 2),
               "mean_si_sdri_without_failures": round(float(np.mean([r["si_sdri"] for r in good])), 2),
               "median_output_db": {"failures": med(fail, "output_db"), "others": med(good, "output_db")},
               "median_target_db": {"failures": med(fail, "target_db"), "others": med(good, "target_db")},
               "failures_by_prompt": sorted({r["prompt"] for r in fail})}
    print(json.dumps(summary, indent=1))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"model": args.model, "protocol": args.protocol, "split": args.split,
                                    "summary": summary, "items": rows}, indent=1))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
