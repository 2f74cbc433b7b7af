"""The `codecsep` command line: thin, it parses arguments and calls the Python API.

Each subcommand lives next to the code it drives and exposes `register(subparsers)`; the table
below is the only place that lists them, so adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import CodecSepError

# name -> module providing `register(subparsers)`; the module is imported only when present.
COMMANDS: dict[str, str] = {
    "demo": "codecsep.demo",
    "separate": "codecsep.separators.cli",
    "sounds": "codecsep.separators.sounds",
    "corpus": "codecsep.data.cli",
    "train": "codecsep.train.cli",
    "eval": "codecsep.evaluate",
    "compare": "codecsep.compare",
    "bench": "codecsep.bench",
    "report": "codecsep.report",
    "curves": "codecsep.curves",
    "codec": "codecsep.codecs.cli",
    "speech": "codecsep.separators.speech_cli",
    "serve": "codecsep.app",
    "export": "codecsep.export",
}


def base_parser() -> argparse.ArgumentParser:
    """`codecsep` with its own options (--help, --version) and no command yet."""
    parser = argparse.ArgumentParser(
        prog="codecsep",
        description="Text-prompted sound separation on neural-codec latents and code streams.",
    )
    parser.add_argument("--version", action="version", version=f"codecsep {__version__}")
    return parser


def asks_version(argv: list[str]) -> bool:
    """`--version` (or an abbreviation) comes first: argparse answers it before anything else,
    so the commands, whose modules import torch, need not be built."""
    return bool(argv) and len(argv[0]) > 2 and "--version".startswith(argv[0])


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):  # the command's module is not written yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = base_parser() if asks_version(argv) else build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CodecSepError as e:
        print(f"codecsep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codecsep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
