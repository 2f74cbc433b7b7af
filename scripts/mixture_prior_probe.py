"""Probe: would the mixture itself help route an unseen phrasing to the right trained sound?

Prompt anchoring weighs the training captions by the prompt alone, w ~ exp(e.c / t). The shipped
audio encoder embeds audio in the same text space with a learned CLIP scale s, so the mixture's
embedding a gives each caption a second weight, exp(s a.c): sounds that are in the recording.
This probe scores, on an evaluation set's mixtures, how often the anchoring's heaviest label is
the target's, for w ~ exp(e.c / t + beta s a.c) over a range of beta, with two kinds of prompt:

  label         the class name (anchoring must keep these where they are)
  left-out      each training caption of the target's class, removed from the anchor keys: a
                phrasing the anchors have never seen (the held-out paraphrases are not used)

    python scripts/mixture_prior_probe.py data/eval/two_source-valid-0 \\
        data/eval/three_source-valid-0

Nothing here separates audio; it measures routing only.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import torch

from codecsep.audio import load_audio
from codecsep.data.captions import CAPTIONS
from codecsep.separators.separator import Separator
from codecsep.text.audio_encoder import shipped_audio_encoder


def mixtures(folder: Path):
    rows = defaultdict(list)
    with open(folder / "metadata.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows[r["mixture_path"]].append(r["label"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+", type=Path, help="evaluation-set folders (metadata.csv)")
    ap.add_argument("--betas", default="0,0.25,0.5,1,2")
    args = ap.parse_args()
    sep = Separator.load(None)
    enc = shipped_audio_encoder()
    anchors = sep.anchors
    texts = list(anchors.texts)
    label_of = {c: lab for lab, caps in CAPTIONS.items() for c in caps}
    labels = [label_of[t] for t in texts]
    caps = sep.text_encoder.embed(texts).float()
    scale = float(enc.logit_scale.detach().clamp(max=math.log(100)).exp())
    names = sorted(set(labels))
    name_emb = dict(zip(names, sep.text_encoder.embed(names).float()))
    betas = [float(b) for b in args.betas.split(",")]
    hits = {(kind, b): [0, 0] for kind in ("label", "left-out") for b in betas}
    for folder in args.sets:
        for path, targets in mixtures(folder).items():
            wav, sr = load_audio(folder / path)
            prior = scale * (caps @ enc.embed(wav, sr))  # (N,)
            for target in targets:
                prompts = [("label", name_emb[target], None)]
                prompts += [("left-out", caps[i], i) for i, lab in enumerate(labels)
                            if lab == target]
                for kind, e, drop in prompts:
                    logits = caps @ e / anchors.temperature
                    for b in betas:
                        z = logits + b * prior
                        if drop is not None:
                            z[drop] = -float("inf")
                        w = torch.softmax(z, 0)
                        mass = defaultdict(float)
                        for lab, v in zip(labels, w.tolist()):
                            mass[lab] += v
                        hits[kind, b][0] += max(mass, key=mass.get) == target
                        hits[kind, b][1] += 1
    print(f"audio encoder scale s = {scale:.1f}, anchor temperature t = {anchors.temperature:g}")
    for kind in ("label", "left-out"):
        row = "  ".join(f"beta {b:g}: {hits[kind, b][0] / hits[kind, b][1]:.3f}" for b in betas)
        print(f"{kind:9} ({hits[kind, betas[0]][1]} prompts)  {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
