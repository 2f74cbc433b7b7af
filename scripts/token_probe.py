"""Probe: how predictable are Mica's first-codebook (base) tokens from a CLEAN speaker's log-mel
versus from its MDCT? The answer chose CodeSep's input features (`CodeSepConfig.features`).

    python scripts/token_probe.py --manifest runs/manifest_v2.jsonl --steps 400

For each feature kind, the same small net (front end to 192 channels at 50 Hz, a 2-layer
Transformer, a linear head over the codebook) is trained for `--steps` Adam steps on 2 s crops of
train-split speech (batch 8, one CPU thread) to predict the shipped codec's base tokens; prints
the cross-entropy and accuracy of the last 50 steps (training batches: a learnability probe,
not a held-out score) and writes them to --out as JSON.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codecsep.codecs import load_mica
from codecsep.data.bank import ClipBank
from codecsep.nn.transformer import Transformer
from codecsep.separators.codesep import LogMel, mdct_features, mel_downsampler
from codecsep.train.speech import speech_clips

DIM, BATCH, SECONDS = 192, 8, 2.0


def front_end(kind: str, codec):
    """(B, 1, T) -> (B, DIM, F') features of one kind, with their trainable layers."""
    if kind == "mel":
        mel, down = LogMel(codec.sample_rate, 512, 80, 80), mel_downsampler(80, DIM, 2)
        return down, lambda w: down(mel(w[:, 0]))
    conv = nn.Conv1d(codec.latent_dim, DIM, 1)
    return conv, lambda w: conv(mdct_features(codec, w, 0.5))


def probe(kind: str, codec, bank, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    layers, features = front_end(kind, codec)
    body, head = Transformer(DIM, 2, 4, 512, 0.0, True), nn.Linear(DIM, codec.codebook_size)
    params = [*layers.parameters(), *body.parameters(), *head.parameters()]
    opt, rng = torch.optim.AdamW(params, 1e-3), np.random.default_rng(seed)
    hist, t0 = [], time.time()
    for step in range(steps):
        wav = bank.random_batch(BATCH, int(SECONDS * codec.sample_rate), rng)
        with torch.no_grad():
            tokens = codec.quantize(codec.encode(wav), 1)[:, 0]  # (B, F)
        f = features(wav)
        n = min(f.shape[-1], tokens.shape[-1])
        logits = head(body(f[..., :n].transpose(1, 2)))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, :n].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((loss.item(), (logits.argmax(-1) == tokens[:, :n]).float().mean().item()))
        if (step + 1) % 50 == 0:
            ce, acc = np.mean(hist[-50:], axis=0)
            print(f"{kind} step {step + 1}: CE {ce:.3f} acc {acc:.3f} ({time.time() - t0:.0f} s)",
                  flush=True)
    ce, acc = np.mean(hist[-50:], axis=0)
    return {"ce_last50": round(float(ce), 3), "acc_last50": round(float(acc), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/codesep/token_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    codec = load_mica().float()
    bank = ClipBank(speech_clips(args.manifest, "train"), codec.sample_rate)
    result = {"steps": args.steps, "batch": BATCH, "seconds": SECONDS,
              "chance_ce": round(float(np.log(codec.codebook_size)), 3),
              **{kind: probe(kind, codec, bank, args.steps, args.seed) for kind in ("mel", "mdct")}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
