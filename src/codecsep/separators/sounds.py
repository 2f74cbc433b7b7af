"""`codecsep sounds`: which sounds a separator was trained on, so a user knows which prompts it
knows before trying one it does not."""

from __future__ import annotations

import argparse


def describe(labels: list[str]) -> str:
    """The labels by kind of source (music, speech, effects), one line each."""
    from ..compare import label_category

    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(label_category(label), []).append(label)
    return "\n".join(f"{kind} ({len(names)}): {', '.join(names)}"
                     for kind in ("music", "speech", "effects") if (names := groups.get(kind)))


def _run(args: argparse.Namespace) -> int:
    from .api import get_separator

    sep = get_separator(args.model)
    labels = sep.anchors.labels()
    name = args.model or "the shipped separator"
    if not labels:
        print(f"{name} carries no training captions: it cannot say which sounds it knows")
        return 0
    print(f"{name} was trained on {len(labels)} sounds; prompts that name them work best:\n"
          f"{describe(labels)}")
    if sep.anchors.active:
        print("Other prompts are pulled toward the nearest of these (prompt anchoring, "
              "--anchor-weight); for a sound it never learned, expect a poor separation, which the "
              "presence check may flag as absent.")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sounds", help="list the sounds a separator was trained on",
                              description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--model", metavar="DIR", help="separator checkpoint folder (default: the "
                                                  "shipped model)")
    p.set_defaults(func=_run)
