"""Which classes sound alike? A table of each class's acoustically nearest classes.

    python scripts/confusable_classes.py --manifest runs/manifest_v12.jsonl -o runs/confusable.json

Each class is represented by the mean of the presence check's audio-encoder embeddings of up
to --clips of its train clips (a fixed, seeded choice); classes are near when those means have
a high cosine. `codecsep train separator --confusable TABLE --p-confusable P` then draws, for a
share P of its mixtures, the other sources from the target class's neighbours, so that classes
the masker confuses meet in training more often than uniform drawing makes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from codecsep.audio import load_audio
from codecsep.checkpoint import command_line
from codecsep.data.manifest import read_manifest
from codecsep.separators.api import installed_presence_check


def nearest(means: torch.Tensor, labels: list[str], k: int) -> dict[str, list[list]]:
    """{label: [[other label, cosine], ...]} for the k highest cosines of each class mean."""
    sim = means @ means.T
    sim.fill_diagonal_(-2.0)
    top = sim.topk(k, dim=1)
    return {labels[i]: [[labels[j], round(float(c), 4)]
                        for c, j in zip(top.values[i], top.indices[i])] for i in range(len(labels))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--clips", type=int, default=24, help="train clips per class, at most")
    ap.add_argument("-k", type=int, default=5, help="neighbours per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    check = installed_presence_check()
    if check is None:
        raise SystemExit("no presence check installed: its audio encoder is what compares classes")
    by_label: dict[str, list] = {}
    for clip in read_manifest(a.manifest, split="train"):
        by_label.setdefault(clip.label, []).append(clip)
    rng = np.random.default_rng(a.seed)
    labels = sorted(by_label)
    means = []
    for label in tqdm(labels, desc="classes", unit="class"):
        clips = by_label[label]
        pick = rng.choice(len(clips), min(a.clips, len(clips)), replace=False)
        chosen = [clips[i] for i in sorted(pick)]
        with torch.no_grad():
            emb = torch.stack([check.encoder.embed(*load_audio(c.path)) for c in chosen])
        means.append(torch.nn.functional.normalize(emb.mean(0), dim=0))
    table = nearest(torch.stack(means), labels, a.k)
    out = {"command": command_line(), "encoder": "presence check audio encoder (AE2)",
           "clips_per_class": a.clips, "k": a.k, "neighbours": table}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    for label in labels:
        print(f"{label:18s} " + ", ".join(f"{o} {c:.2f}" for o, c in table[label]))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
