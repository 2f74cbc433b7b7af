"""Set a separator checkpoint's inference settings: prompt anchors, shifted passes, window length.

Prompt anchors (`text.anchors`): the captions of the manifest's train split go into config.json
with the given weight and temperature (checkpoints trained before anchoring existed carry none;
new training runs record theirs). `--shifts N`: average N passes offset within one codec frame
(`SeparatorConfig.shifts`). `--window-seconds S`: long inputs run through S-second windows
(`SeparatorConfig.window_seconds`, crossfaded over `overlap_seconds`); `--code-window-seconds S`:
code streams run through S-second windows (0: as waveforms). `--members K[,K]` /
`--code-members K[,K]`: of a mask-mean checkpoint, the maskers waveforms / code streams run
(`SeparatorConfig.members` / `code_members`; 0: all / as waveforms); `--combine mean|median`:
how their masks become one (`SeparatorConfig.combine`); `--postfilter N_FFT[,POWER]`: the
waveform post-filter (`SeparatorConfig.postfilter`; 0: off); `--wordnet [DIR]`: prompt aliases
from WordNet for the labels the anchors hold (`text.wordnet`; Debian `wordnet-base`). The command is appended to meta.json's
history; the weights are untouched (their sha256 stays valid). `--like OTHER` copies OTHER's
anchors, shifts, windows, combine and post-filter instead, so a new candidate is scored with exactly the
settings of the model it is compared with. A Codecformer (speaker) checkpoint takes `--postfilter`
alone.

    python scripts/set_inference.py src/codecsep/assets/codecsep-default \
        --manifest runs/manifest_v2.jsonl --weight 0.5 --temperature 0.02 --shifts 2
    python scripts/set_inference.py runs/soup_A --like src/codecsep/assets/codecsep-default
    python scripts/set_inference.py src/codecsep/assets/codecformer-default --postfilter 1024
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from codecsep.data.manifest import read_manifest
from codecsep.errors import CodecSepError
from codecsep.separators.base import members_arg, postfilter_arg
from codecsep.separators.postfilter import PostFilter
from codecsep.separators.masker import COMBINES
from codecsep.separators.separator import check_members
from codecsep.text.anchors import TRAINED_TEMPERATURE, TRAINED_WEIGHT, training_anchors
from codecsep.text.wordnet import DEFAULT_DIR, alias_groups


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    source = ap.add_mutually_exclusive_group()  # required for CodecSep checkpoints
    source.add_argument("--manifest", help="the manifest the checkpoint trained on")
    source.add_argument("--like", help="copy the anchors and shifts of this separator checkpoint")
    ap.add_argument("--weight", type=float, default=TRAINED_WEIGHT)
    ap.add_argument("--temperature", type=float, default=TRAINED_TEMPERATURE)
    ap.add_argument("--shifts", type=int, help="shifted passes per window (default: keep)")
    ap.add_argument("--window-seconds", type=float, help="window length for long inputs (default: keep)")
    ap.add_argument("--code-window-seconds", type=float,
                    help="window length for long code streams (0: as waveforms; default: keep)")
    ap.add_argument("--combine", choices=COMBINES,
                    help="of an ensemble, how its masks become one, bin by bin (default: keep)")
    ap.add_argument("--postfilter", type=postfilter_arg, metavar="N_FFT[,POWER]",
                    help="the waveform post-filter (0: off; default: keep)")
    ap.add_argument("--members", type=members_arg, metavar="K[,K]",
                    help="of an ensemble, the maskers waveforms run (1-based; 0: all; default: keep)")
    ap.add_argument("--code-members", type=members_arg, metavar="K[,K]",
                    help="of an ensemble, the maskers code streams run (1-based; 0: as waveforms; "
                         "default: keep)")
    ap.add_argument("--wordnet", nargs="?", const=DEFAULT_DIR, metavar="DIR",
                    help="add prompt aliases from the WordNet database in DIR (default "
                         f"{DEFAULT_DIR}) for the labels the anchors hold")
    args = ap.parse_args(argv)
    if args.shifts is not None and args.shifts < 1:
        raise SystemExit(f"--shifts must be >= 1, got {args.shifts}")
    ckpt = Path(args.checkpoint)
    cfg = json.loads((ckpt / "config.json").read_text())
    meta = json.loads((ckpt / "meta.json").read_text())
    if cfg.get("class") == "codecformer":  # speakers: only the post-filter is an inference setting
        others = [k for k in ("manifest", "like", "shifts", "window_seconds", "code_window_seconds",
                              "combine", "members", "code_members", "wordnet") if getattr(args, k) is not None]
        if args.postfilter is None or others:
            raise SystemExit(f"{ckpt}: a Codecformer checkpoint takes --postfilter only")
        pf = PostFilter.parse(args.postfilter)
        cfg["config"]["postfilter"] = asdict(pf)
        return write(ckpt, cfg, meta, f"post-filter {pf.tag or 'off'}")
    if cfg.get("class") != "codecsep":
        raise SystemExit(f"{ckpt}: not a CodecSep separator or Codecformer checkpoint ({cfg.get('class')})")
    if not (args.manifest or args.like):
        raise SystemExit("give --manifest or --like (the prompt anchors of a CodecSep separator)")
    if args.like:
        like = json.loads((Path(args.like) / "config.json").read_text())["config"]
        cfg["config"]["anchors"] = like["anchors"]
        cfg["config"]["shifts"] = like.get("shifts", 1) if args.shifts is None else args.shifts
        cfg["config"]["window_seconds"] = like.get("window_seconds", cfg["config"]["window_seconds"])
        cfg["config"]["code_window_seconds"] = like.get("code_window_seconds", 0.0)
        cfg["config"]["combine"] = like.get("combine", "mean")
        cfg["config"]["postfilter"] = like.get("postfilter", asdict(PostFilter()))
    else:
        cfg["config"]["anchors"] = asdict(training_anchors(read_manifest(args.manifest, split="train"),
                                                           args.weight, args.temperature))
        if args.shifts is not None:
            cfg["config"]["shifts"] = args.shifts
    if args.wordnet is not None:
        try:
            groups = alias_groups(cfg["config"]["anchors"]["texts"], args.wordnet)
        except CodecSepError as e:
            raise SystemExit(f"error: {e}") from None
        cfg["config"]["anchors"]["aliases"] = [asdict(g) for g in groups]
    if args.combine is not None:
        cfg["config"]["combine"] = args.combine
    if args.postfilter is not None:
        cfg["config"]["postfilter"] = asdict(PostFilter.parse(args.postfilter))
    if args.window_seconds is not None:
        cfg["config"]["window_seconds"] = args.window_seconds
    if args.code_window_seconds is not None:
        cfg["config"]["code_window_seconds"] = args.code_window_seconds
    for key in ("window_seconds", "code_window_seconds"):
        value, overlap = cfg["config"].get(key, 0), cfg["config"]["overlap_seconds"]
        if (value or key == "window_seconds") and not value > overlap:
            raise SystemExit(f"--{key.replace('_', '-')} must exceed the overlap ({overlap:g} s), got {value:g}")
    n = 1 + len(cfg["config"].get("ensemble", []))
    for key in ("members", "code_members"):  # checked before anything is written
        value = getattr(args, key)
        if value is None:
            continue
        try:
            chosen = () if value == 0 else check_members(value, n, f"--{key.replace('_', '-')}")
        except CodecSepError as e:
            raise SystemExit(f"error: {e}") from None
        cfg["config"][key] = list(chosen)
    c, anchors = cfg["config"], cfg["config"]["anchors"]
    return write(ckpt, cfg, meta,
                 f"{len(anchors['texts'])} anchor captions, "
                 f"{sum(len(g['names']) for g in anchors.get('aliases', []))} aliases, weight {anchors['weight']:g}, "
                 f"temperature {anchors['temperature']:g}, shifts {c.get('shifts', 1)}, "
                 f"window {c['window_seconds']:g} s (code streams: "
                 f"{c.get('code_window_seconds') or c['window_seconds']:g} s), members "
                 f"{','.join(map(str, c.get('members') or [])) or 'all'}, code-stream members "
                 f"{','.join(map(str, c.get('code_members') or [])) or 'as waveforms'}, combine "
                 f"{c.get('combine', 'mean')}, post-filter "
                 f"{PostFilter.parse(c.get('postfilter', {})).tag or 'off'}")


def write(ckpt: Path, cfg: dict, meta: dict, summary: str) -> int:
    """Write config.json, append this command to meta.json's history, print `summary`."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    meta.setdefault("history", []).append({"start_step": meta.get("step"), "command": command,
                                           "note": "inference settings set (weights unchanged)"})
    (ckpt / "config.json").write_text(json.dumps(cfg, indent=2))
    (ckpt / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{ckpt}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
