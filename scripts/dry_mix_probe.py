"""Probe: does mixing a little of the input back into the extracted target ("dry/wet", a mask
floor) raise mean SI-SDRi? (Session 5.)

Most of the mean's shortfall comes from a few items that score -30 to -45 dB SI-SDR (the target
was not recognised; `scripts/failure_levels.py` shows their outputs are not quieter than good ones,
so they are the wrong sound, not silence). With `--dry d` the output is (1 - d) * target + d * mixture, the same as a
mask floor of d on the model's (linear) latent mask. One model pass per mixture, every d scored
on the same outputs. Writes --out as JSON (mean, median, 95% CI per d and protocol).

    python scripts/dry_mix_probe.py --model codecsep --split valid
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
    bootstrap_ci,
    ensure_eval_set,
    eval_items,
    load_model,
    run_model,
    score,
)

DRY = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="codecsep")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--protocols", default="two_source,three_source")
    ap.add_argument("--n", default="100,100", help="mixtures per protocol")
    ap.add_argument("--eval-root", default="data/eval")
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--out", default="results/experiments/dry-mix/probe.json")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    result = {"model": args.model, "split": args.split, "dry": list(DRY), "protocols": {}}
    for protocol, n in zip(args.protocols.split(","), map(int, args.n.split(","))):
        eval_set = ensure_eval_set(protocol, n, args.eval_root, args.manifest, EVAL_SEED,
                                   split=args.split)
        items = eval_items(eval_set, n, protocol, "label", PromptSource(None))
        by_mix: dict[int, list] = {}
        for it in items:
            by_mix.setdefault(it.index, []).append(it)
        scores = {d: [] for d in DRY}
        for index, its in tqdm(by_mix.items(), desc=protocol, unit="mix"):
            m = eval_set[index]
            out = run_model(model, m.mixture, m.sources, its)
            mix = torch.from_numpy(m.mixture)
            for p, it in enumerate(its):
                ref = torch.from_numpy(m.sources[it.source_index])
                for d in DRY:
                    est = (1 - d) * out["target"][p] + d * mix
                    scores[d].append(score(est, ref, mix)["si_sdri"])
        rows = {}
        for d in DRY:
            v = np.array(scores[d])
            v = v[np.isfinite(v)]
            lo, hi = bootstrap_ci(v)
            rows[str(d)] = {"mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
                            "ci95": [round(lo, 3), round(hi, 3)], "n": len(v),
                            "below_-10": int((v < -10).sum())}
            print(f"{protocol} dry {d:<5} mean {v.mean():6.2f} [{lo:.2f}, {hi:.2f}] "
                  f"median {np.median(v):6.2f} items<-10 dB {(v < -10).sum()}")
        result["protocols"][protocol] = rows
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
