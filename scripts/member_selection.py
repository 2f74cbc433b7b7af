"""Could a separator pick, item by item, between its ensemble's median and its members alone?

    python scripts/member_selection.py --protocol three_source --split valid --seed 0 \
        --csv results/.../three_source-valid-s0.csv

For each item of an evaluation set, the separator runs as shipped (the bin-wise median of its
members' masks) and with each member alone (`members = (k,)`, the same anchors and post-filter).
Every variant's SI-SDRi is logged with what a selector could see without the reference: the
audio encoder's cosine of the estimate with the prompt as the separator hears it (`sem`, the
presence check's `sem_target`), and how close the estimate is to the median's (`agree`, SI-SDR of
the estimate against the median's estimate). The summary compares the median with the oracle
(the best variant per item, an upper bound) and with simple rules on those two numbers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codecsep.evaluate import (add_item_set_arguments, by_mixture, item_set, parse_item_set_args,
                               run_model, score, write_item_rows)
from codecsep.metrics import si_sdr
from codecsep.separators.api import installed_presence_check


def rules(table: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    """Mean SI-SDRi of each selection rule. table[f"{v}:{k}"]: (items,) per variant v, key k."""
    gain = np.stack([table[f"{v}:si_sdri"] for v in names], 1)
    sem = np.stack([table[f"{v}:sem"] for v in names], 1)
    rows = np.arange(len(gain))
    out = {"median (shipped)": gain[:, 0].mean(), **{f"{v} alone": gain[:, i].mean()
                                                     for i, v in enumerate(names) if i},
           "oracle: best variant per item": gain.max(1).mean(),
           "highest sem of all variants": gain[rows, sem.argmax(1)].mean(),
           "highest sem of the members": gain[rows, 1 + sem[:, 1:].argmax(1)].mean()}
    for margin in (0.02, 0.05):
        pick = np.where(sem[:, 1:].max(1) > sem[:, 0] + margin, 1 + sem[:, 1:].argmax(1), 0)
        out[f"a member if its sem beats the median's by {margin}"] = gain[rows, pick].mean()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_item_set_arguments(ap)
    a, model = parse_item_set_args(ap)
    check = installed_presence_check()
    if check is None:
        raise SystemExit("no presence check installed: its audio encoder gives `sem`")
    shipped = model.members
    variants = {"median": shipped, **{f"m{k}": (k,) for k in shipped}}
    es, items, _ = item_set(a)
    rows = []
    for m, its in by_mixture(es, items):
        text = model.embed([it.prompt for it in its])
        est = {}
        for name, members in variants.items():
            model.members = members
            est[name] = run_model(model, m.mixture, m.sources, its)
        mix = torch.from_numpy(m.mixture)
        for p, it in enumerate(its):
            row = {"mixture_id": it.mixture_id, "source_index": it.source_index, "label": it.label}
            ref = torch.from_numpy(m.sources[it.source_index])
            for name in variants:
                y = est[name]["target"][p]
                row[f"{name}:si_sdri"] = score(y, ref, mix)["si_sdri"]
                row[f"{name}:sem"] = float(text[p] @ check.encoder.embed(y, 16000))
                row[f"{name}:agree"] = float(si_sdr(y, est["median"]["target"][p]))
            rows.append(row)
    model.members = shipped
    if a.csv:
        write_item_rows(a.csv, rows, 4)
    table = {k: np.array([r[k] for r in rows]) for k in rows[0] if ":" in k}
    print(f"# Median or one member, item by item ({a.model}, {a.protocol} {a.split} seed {a.seed}, "
          f"label prompts, {len(rows)} items)\n\n| rule | mean SI-SDRi (dB) |\n|---|---|")
    for name, v in rules(table, list(variants)).items():
        print(f"| {name} | {v:.2f} |")
    print(f"\nReproduce: `python scripts/member_selection.py --model {a.model} --n {a.n} --protocol "
          f"{a.protocol} --split {a.split} --seed {a.seed}" + (f" --csv {a.csv}`" if a.csv else "`"))


if __name__ == "__main__":
    main()
