"""What does a separator return for a prompt whose sound is not in the mixture?

    python scripts/absent_prompts.py --model codecsep --n 50 > results/.../absent.md
    python scripts/absent_prompts.py --n 100 --protocol three_source --split test \
        --csv results/.../presence-test-three.csv      # one feature row per prompt

For the first N mixtures of an evaluation set, each target source is separated with its own
prompt (present) and with a prompt for another class of the same set that is not in the mixture
(absent), in one pass. The table gives the target's level relative to the mixture for both kinds;
`--csv` also writes the presence features of `codecsep.separators.presence` for every prompt, which
`scripts/fit_presence.py` turns into the detector behind the CLI's "may be absent" warning.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from codecsep.evaluate import (add_item_set_arguments, item_set, parse_item_set_args, run_model,
                               write_item_rows)
from codecsep.separators.presence import FEATURES, presence_features
from codecsep.text.audio_encoder import AudioEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_item_set_arguments(ap, n=50)
    ap.add_argument("--prompt-mode", default="label", choices=("label", "caption", "heldout"))
    ap.add_argument("--audio-encoder", default="", help="the features' audio encoder (default: shipped)")
    ap.add_argument("--anchored", action="store_true",
                    help="features from the separator's anchored prompt embeddings (separator.embed)")
    a, model = parse_item_set_args(ap)
    encoder = AudioEncoder.load(a.audio_encoder).eval() if a.audio_encoder else None
    es, items, prompts = item_set(a, a.prompt_mode)
    labels = sorted({it.label for it in items})
    rng = np.random.default_rng(a.seed)
    rows = []
    for it in tqdm(items, desc="items", unit="item"):
        m = es[it.index]
        here = {r["label"] for r in es.rows[it.mixture_id]}
        other = str(rng.choice([lab for lab in labels if lab not in here]))
        if a.prompt_mode != "label":  # a phrasing of the other class of the same kind
            opts = prompts.options(a.prompt_mode, other, "")
            other = opts[int(rng.integers(len(opts)))]
        pair = [it, replace(it, prompt=other)]
        est = run_model(model, m.mixture, m.sources, pair)  # one pass for both prompts
        feats = presence_features(torch.from_numpy(m.mixture), est["target"], est["residual"],
                                  [p.prompt for p in pair], 16000, encoder,
                                  model.embed([p.prompt for p in pair]) if a.anchored else None)
        for present, p, f in zip((1, 0), pair, feats):
            rows.append({"mixture_id": it.mixture_id, "source_index": it.source_index,
                         "label": it.label, "prompt": p.prompt, "present": present, **f})
    if a.csv:
        write_item_rows(a.csv, rows, 5)
    print(f"# Output level for present and absent prompts ({a.model}, {a.protocol} {a.split} "
          f"seed {a.seed}, {a.prompt_mode} prompts, {len(items)} items of {a.n} mixtures)\n")
    print("| prompt | median dB | 10th pct | 90th pct | share below -25 dB |")
    print("|---|---|---|---|---|")
    for name, present in (("present (its own)", 1), ("absent (another class)", 0)):
        v = np.array([r["level"] for r in rows if r["present"] == present])
        print(f"| {name} | {np.median(v):.1f} | {np.percentile(v, 10):.1f} | {np.percentile(v, 90):.1f} "
              f"| {100 * np.mean(v < -25):.0f}% |")
    print("\n| feature | median, present | median, absent |\n|---|---|---|")
    for f in FEATURES:
        med = [np.median([r[f] for r in rows if r["present"] == p]) for p in (1, 0)]
        print(f"| {f} | {med[0]:.3f} | {med[1]:.3f} |")
    print(f"\nReproduce: `python scripts/absent_prompts.py --model {a.model} --n {a.n} --protocol "
          f"{a.protocol} --split {a.split} --seed {a.seed} --prompt-mode {a.prompt_mode}"
          + (f" --csv {a.csv}" if a.csv else "")
          + (f" --audio-encoder {a.audio_encoder}" if a.audio_encoder else "")
          + (" --anchored`" if a.anchored else "`"))


if __name__ == "__main__":
    main()
