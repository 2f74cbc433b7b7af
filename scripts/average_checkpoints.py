"""Average the weights of several checkpoints of one model (a "model soup").

Fine-tuned siblings that start from one checkpoint stay in one basin of the loss, and the mean
of their weights often generalises better than any of them. The inputs must share the kind and
the architecture (the config, apart from training-only fields such as dropout and inference
settings such as prompt anchors); the output takes the first input's config and records every
input (path, step, sha256, recipe) in meta.json, with this command. Floating-point tensors are averaged (uniformly, or with --weights); others are copied
from the first input and must be equal in all.

    python scripts/average_checkpoints.py runs/a/checkpoint runs/b/checkpoint -o runs/soup
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from codecsep.checkpoint import load_checkpoint, provenance, save_checkpoint
from codecsep.errors import CodecSepError

# config fields that are not the architecture: training-only ones and inference settings
NOT_ARCHITECTURE = {"dropout", "anchors", "shifts"}


def _architecture(cfg):
    if isinstance(cfg, dict):
        return {k: _architecture(v) for k, v in cfg.items() if k not in NOT_ARCHITECTURE}
    return cfg


def average(paths: list[str], weights: list[float] | None = None):
    """(kind, config, averaged state, meta) of the checkpoints at `paths`."""
    if len(paths) < 2:
        raise CodecSepError("give at least two checkpoints to average")
    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise CodecSepError("--weights: one non-negative number per checkpoint, not all zero")
    loaded = [load_checkpoint(p) for p in paths]
    kind, cfg, first, _ = loaded[0]
    for path, (k, c, state, _) in zip(paths[1:], loaded[1:]):
        if k != kind or _architecture(c) != _architecture(cfg) or state.keys() != first.keys():
            raise CodecSepError(f"{path}: not the same model as {paths[0]} (kind or config differ)")
    total = sum(weights)
    out = {}
    for name, value in first.items():
        if value.is_floating_point():
            out[name] = sum(w / total * s[name] for w, (_, _, s, _) in zip(weights, loaded))
        else:
            if any(not torch.equal(value, s[name]) for _, _, s, _ in loaded[1:]):
                raise CodecSepError(f"non-float tensor {name} differs between checkpoints")
            out[name] = value
    inputs = [provenance(p, m, weight=w) for p, w, (_, _, _, m) in zip(paths, weights, loaded)]
    meta = dict(loaded[0][3])
    meta.pop("sha256", None)
    meta.update(step=max(m.get("step") or 0 for *_, m in loaded), averaged_from=inputs,
                trained_by="python " + " ".join(shlex.quote(a) for a in sys.argv))
    return kind, cfg, out, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--weights", type=float, nargs="+", help="one per checkpoint (default equal)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists: pass --overwrite to replace it")
    try:
        kind, cfg, state, meta = average(args.checkpoints, args.weights)
    except CodecSepError as e:
        raise SystemExit(f"error: {e}") from None
    stored = load_file(str(Path(args.checkpoints[0]) / "model.safetensors")).values()
    half = all(v.dtype == torch.float16 for v in stored if v.is_floating_point())  # as the inputs
    save_checkpoint(args.out, kind, cfg, state, meta=meta, half=half)
    print(f"{args.out}: mean of {len(args.checkpoints)} {kind} checkpoints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
