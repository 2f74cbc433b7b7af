"""Combine trained CodecSep separators into one whose mask is the mean of their maskers' masks.

Maskers of different trunks (the time trunk, the band-split one) err on different items, so the
mean of their masks beats each of them; it costs the members' MACs together. The inputs must be
CodecSep checkpoints on one codec latent space with one text encoder and one prompt-embedding
size. The output takes the first input's config (codec, text encoder, inference settings such as
shifts and prompt anchors) with the other inputs' maskers as its `ensemble`, and records every
input (path, step, sha256, recipe) in meta.json's `combined_from`, with this command. The first
input is member 1, so `--members 1` reproduces it exactly (while the output keeps its inference settings).

    python scripts/combine_maskers.py src/codecsep/assets/codecsep-default runs/soup_BS -o runs/ens
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from codecsep.checkpoint import command_line, load_checkpoint, provenance
from codecsep.errors import CodecSepError
from codecsep.separators.separator import Separator, SeparatorConfig, save_built


def combine(paths: list[str]):
    """(config, state, meta) of the ensemble of the CodecSep checkpoints at `paths`."""
    if len(paths) < 2:
        raise CodecSepError("give at least two checkpoints to combine")
    loaded = [load_checkpoint(p) for p in paths]
    configs = []
    for path, (kind, cfg, _, meta) in zip(paths, loaded):
        if kind != Separator.checkpoint_kind:
            raise CodecSepError(f"{path}: holds a {kind!r} checkpoint, not a CodecSep separator")
        config = SeparatorConfig.from_dict(cfg)
        if config.ensemble:
            raise CodecSepError(f"{path}: already an ensemble; combine its members instead")
        configs.append(config)
    first, meta0 = configs[0], loaded[0][3]
    for path, config, (_, _, _, meta) in zip(paths[1:], configs[1:], loaded[1:]):
        same = (config.codec == first.codec and config.text_encoder == first.text_encoder
                and meta.get("latent_space") == meta0.get("latent_space"))
        if not same:
            raise CodecSepError(f"{path}: another codec, latent space or text encoder than "
                                f"{paths[0]}: its masker cannot share the latent and prompt")
    state = {f"members.{i}.{k}": v for i, (_, _, s, _) in enumerate(loaded) for k, v in s.items()}
    config = replace(first, ensemble=tuple(c.masker for c in configs[1:]))
    meta = {k: meta0[k] for k in ("codec_id", "latent_space") if k in meta0}
    meta.update(step=max(int(m.get("step") or 0) for *_, m in loaded), trained_by=command_line(),
                combined_from=[provenance(p, m) for p, (*_, m) in zip(paths, loaded)])
    return config, state, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="CodecSep checkpoint folders (the first is member 1)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        save_built(args.out, lambda: combine(args.checkpoints), args.overwrite)
    except CodecSepError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.out}: mean of the masks of {len(args.checkpoints)} CodecSep maskers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
