"""How loud is the output for a prompt whose sound is not in the mixture?

    python scripts/absent_prompts.py --model codecsep --n 50 > results/.../absent.md

For the first N mixtures of a two-source evaluation set, each mixture is separated with one of its
own labels (present) and with a label of another class drawn from the same set (absent). A
separator that knows a sound is missing returns near silence for it; the table gives the target's
level relative to the mixture (dB) for both kinds of prompt.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from codecsep.evaluate import PromptSource, ensure_eval_set, eval_items, load_model, run_model


def level_db(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(x.double().pow(2).mean() / ref.double().pow(2).mean() + 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="codecsep")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--split", default="valid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model)
    es = ensure_eval_set("two_source", a.n, "data/eval", a.manifest, a.seed, 100, a.split)
    items = eval_items(es, a.n, "two_source", "label", PromptSource(None))
    labels = sorted({it.label for it in items})
    rng = np.random.default_rng(a.seed)
    present, absent = [], []
    for it in items:
        m = es[it.index]
        here = {r["label"] for r in es.rows[it.mixture_id]}
        other = rng.choice([lab for lab in labels if lab not in here])
        mix = torch.from_numpy(m.mixture)
        est = run_model(model, m.mixture, m.sources, [it, replace(it, prompt=str(other))])  # one pass
        present.append(level_db(est["target"][0], mix))
        absent.append(level_db(est["target"][1], mix))
    print(f"# Output level for present and absent prompts ({a.model}, two_source {a.split} seed {a.seed}, "
          f"{len(items)} mixtures)\n")
    print("| prompt | median dB | 10th pct | 90th pct | share below -25 dB |")
    print("|---|---|---|---|---|")
    for name, v in (("present (its own label)", present), ("absent (another class)", absent)):
        v = np.array(v)
        print(f"| {name} | {np.median(v):.1f} | {np.percentile(v, 10):.1f} | {np.percentile(v, 90):.1f} "
              f"| {100 * np.mean(v < -25):.0f}% |")
    print(f"\nReproduce: `python scripts/absent_prompts.py --model {a.model} --n {a.n} --split {a.split} "
          f"--seed {a.seed}`")


if __name__ == "__main__":
    main()
