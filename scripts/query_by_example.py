"""How well does query by example (`codecsep separate --query-audio`) separate?

    python scripts/query_by_example.py --protocol two_source --split test --seed 0 \
        [--audio-encoder DIR] [--csv items.csv] > summary.md

For each item of an evaluation set, the query is another recording (another `source_id`) of the
target's class from the same split, its first `--query-seconds` embedded by the audio encoder and
used as the separator's conditioning, as the CLI does (no prompt anchoring). The label prompt runs
in the same pass, so the two are paired. Items whose class has no other recording are skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from codecsep.audio import load_audio
from codecsep.data.manifest import read_manifest
from codecsep.evaluate import (add_item_set_arguments, bootstrap_ci, item_set, parse_item_set_args,
                               run_model, score, write_item_rows)
from codecsep.text.audio_encoder import AudioEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_item_set_arguments(ap, split="test")
    ap.add_argument("--audio-encoder", default="", help="default: the shipped encoder")
    ap.add_argument("--query-seconds", type=float, default=10.0)
    ap.add_argument("--anchor-weight", type=float, default=0.0,
                    help="pull the query toward the training captions, as text prompts are")
    a, model = parse_item_set_args(ap)
    encoder = AudioEncoder.load(a.audio_encoder or None).eval()
    es, items, _ = item_set(a)
    clips = read_manifest(a.manifest, split=a.split)
    rng = np.random.default_rng(a.seed)
    rows, skipped = [], 0
    for it in tqdm(items, desc="items", unit="item"):
        m = es[it.index]
        row = es.rows[it.mixture_id][it.source_index]
        own = [c for c in clips if c.path.endswith(row["clip_path"])]
        others = [c for c in clips if c.label == it.label
                  and all(c.source_id != o.source_id for o in own)]
        if not own or not others:
            skipped += 1
            continue
        query = others[int(rng.integers(len(others)))]
        wav, sr = load_audio(query.path, mono=True)
        emb = encoder.embed(wav[0, : int(a.query_seconds * sr)], sr)
        cond = torch.cat([model.embed([it.prompt]), model.anchor_queries(emb[None], a.anchor_weight)])
        out = run_model(model, m.mixture, m.sources, [it, it], cond)
        mix, src = torch.from_numpy(m.mixture), torch.from_numpy(m.sources[it.source_index])
        text_s, audio_s = (score(out["target"][k], src, mix)["si_sdri"] for k in (0, 1))
        rows.append({"mixture_id": it.mixture_id, "source_index": it.source_index,
                     "label": it.label, "query": Path(query.path).name,
                     "si_sdri_label": text_s, "si_sdri_query": audio_s})
    if a.csv:
        write_item_rows(a.csv, rows)
    lab = np.array([r["si_sdri_label"] for r in rows])
    qry = np.array([r["si_sdri_query"] for r in rows])
    lo, hi = bootstrap_ci(qry - lab)
    enc = (a.audio_encoder or "the shipped audio encoder") + (
        f", queries anchored with weight {a.anchor_weight:g}" if a.anchor_weight else "")
    print(f"# Query by example ({a.model}, {enc}; {a.protocol} {a.split} seed {a.seed})\n")
    print(f"{len(rows)} items scored, {skipped} skipped (no other recording of the class in the split).\n")
    print("| conditioning | SI-SDRi mean | median | items below 0 dB |\n|---|---|---|---|")
    for name, v in (("label prompt (text)", lab), ("audio query (another recording)", qry)):
        print(f"| {name} | {v.mean():.2f} | {np.median(v):.2f} | {100 * np.mean(v < 0):.0f}% |")
    print(f"\nAudio query minus label prompt, paired: {(qry - lab).mean():+.2f} dB [{lo:+.2f}, {hi:+.2f}]\n")
    print(f"Reproduce: `python scripts/query_by_example.py --model {a.model} --n {a.n} --protocol "
          f"{a.protocol} --split {a.split} --seed {a.seed}"
          + (f" --audio-encoder {a.audio_encoder}" if a.audio_encoder else "")
          + (f" --anchor-weight {a.anchor_weight:g}" if a.anchor_weight else "") + "`")


if __name__ == "__main__":
    main()
