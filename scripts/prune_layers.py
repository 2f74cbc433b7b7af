"""Drop Transformer layers from a CodecSep masker: a cheaper masker that starts near the original.

Every layer of both trunks is residual, so a masker without some of its layers still computes a
sensible mask, and a short fine-tune (with the original as a distillation teacher,
`codecsep train separator --init-from OUT --teacher ORIGINAL`) recovers most of the loss at the
cost of the kept layers alone. `--keep` lists the layers to keep (0-based, in order): for the
time trunk its Transformer layers, for the band-split trunk its blocks (each a layer over time
and one across bands). Of a mask mean, `--member N` (1-based) prunes that member only. Everything
else (codec, text encoder, inference settings) is kept; meta.json records the source checkpoint
(path, step, sha256) and this command in `pruned_from`, and appends the command to the training history (of a mask
mean: that member's), so a run continued from the output (`--init-from`) keeps the whole record.
`--alone` writes the member by itself (a single-masker checkpoint, as `codecsep train separator
--init-from` and `--teacher` take); keeping every layer with `--alone` extracts a member unchanged.

    python scripts/prune_layers.py runs/member2 --keep 0,3 -o runs/member2_d2
    python scripts/prune_layers.py src/codecsep/assets/codecsep-default --member 2 --keep 0,3 --alone -o runs/m2_d2
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

from codecsep.checkpoint import command_line, load_checkpoint, provenance
from codecsep.errors import CodecSepError
from codecsep.separators.separator import Separator, SeparatorConfig, save_built

# state-dict keys of one layer, per trunk: group 1 is the prefix before the layer index
LAYER_KEYS = {"time": re.compile(r"^(transformer\.layers\.)(\d+)\."),
              "bandsplit": re.compile(r"^((?:time|band)_layers\.)(\d+)\.")}


def prune_masker_state(state: dict, trunk: str, keep: list[int], prefix: str = "") -> dict:
    """A masker state dict with only the layers `keep` (renumbered 0..len-1, in that order);
    keys not under `prefix` pass through untouched."""
    pattern, new_index = LAYER_KEYS[trunk], {old: new for new, old in enumerate(keep)}
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        m = pattern.match(key[len(prefix):])
        if m is None:
            out[key] = value
        elif int(m.group(2)) in new_index:
            rest = key[len(prefix) + m.end():]
            out[f"{prefix}{m.group(1)}{new_index[int(m.group(2))]}.{rest}"] = value
    return out


def prune(path: str, keep: list[int], member: int | None = None, alone: bool = False):
    """(config, state, meta) of the checkpoint at `path` with only the layers `keep` of its
    masker (of a mask mean: of member `member`, 1-based; `alone`: that member by itself)."""
    kind, cfg, state, meta = load_checkpoint(path)
    if kind != Separator.checkpoint_kind:
        raise CodecSepError(f"{path}: holds a {kind!r} checkpoint, not a CodecSep separator")
    config = SeparatorConfig.from_dict(cfg)
    members = [config.masker, *config.ensemble]
    if member is None:
        if len(members) > 1:
            raise CodecSepError(f"{path} is a mean of {len(members)} maskers: say which with --member")
        member = 1
    if not 1 <= member <= len(members):
        raise CodecSepError(f"--member {member}: {path} has {len(members)} masker(s)")
    target = members[member - 1]
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= target.depth:
        raise CodecSepError(f"--keep must list distinct layers in increasing order within "
                            f"0..{target.depth - 1}, got {keep}")
    prefix = f"members.{member - 1}." if len(members) > 1 else ""
    state = prune_masker_state(state, target.trunk, keep, prefix)
    members[member - 1] = replace(target, depth=len(keep))
    # the record the output continues: the member's own when it is written alone
    source = meta["combined_from"][member - 1] if alone and len(members) > 1 else meta
    if alone:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        members = [members[member - 1]]
    config = replace(config, masker=members[0], ensemble=tuple(members[1:]))
    if alone:  # an ensemble's choice of members and way of combining them mean nothing alone
        config = replace(config, members=(), code_members=(), combine="mean")
    out_meta = {k: meta[k] for k in ("codec_id", "latent_space") if k in meta}
    out_meta["step"] = source.get("step", meta.get("step"))
    if len(members) > 1 and "combined_from" in meta:
        out_meta["combined_from"] = meta["combined_from"]
    out_meta.update(trained_by=command_line(),
                    pruned_from=provenance(path, meta, member=member, keep=keep),
                    history=[*source.get("history", []),
                             {"start_step": out_meta["step"], "command": "python " + command_line(),
                              "note": f"layers {keep} of member {member} kept (weights otherwise unchanged)"}])
    return config, state, out_meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a CodecSep checkpoint folder")
    ap.add_argument("--keep", required=True, help="layers to keep, 0-based, e.g. 0,3")
    ap.add_argument("--member", type=int, help="of a mask mean: the member to prune (1-based)")
    ap.add_argument("--alone", action="store_true", help="write the member by itself")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        keep = [int(k) for k in args.keep.split(",")]
    except ValueError:
        raise SystemExit(f"--keep takes comma-separated layer numbers, got {args.keep!r}") from None
    try:
        save_built(args.out, lambda: prune(args.checkpoint, keep, args.member, args.alone), args.overwrite)
    except CodecSepError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{args.out}: kept layers {keep} of {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
