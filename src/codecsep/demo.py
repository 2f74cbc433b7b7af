"""`codecsep demo`: separate the shipped demo mixture with the shipped default model.

    codecsep demo                                  # scores + outputs in outputs/demo
    codecsep demo --model runs/sep/checkpoint      # the same with another separator
    codecsep demo --make-assets --manifest data/corpus/manifest.jsonl   # (re)build the mixture

Re-running keeps existing outputs (it still prints the scores) unless --overwrite is given.
Where the default separator or the demo mixture is missing (an install without the package's
assets), a bare `codecsep demo` runs the furthest step that exists and says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .codecs import ASSETS
from .errors import CodecSepError

DEFAULT_MODEL = ASSETS / "codecsep-default"
DEFAULT_DEMO = ASSETS / "demo"


def codec_check() -> int:
    """The fallback: the Mica codec's continuous path round trip, which needs no weights."""
    import torch

    from .codecs.mica import MicaCodec
    from .metrics import si_sdr

    codec = MicaCodec().eval()
    wav = torch.randn(1, 1, 16000) * 0.1
    with torch.no_grad():
        rec = codec.decode(codec.encode(wav), wav.shape[-1])
    print(f"Mica continuous path (MDCT) round trip SI-SDR: {float(si_sdr(rec, wav)):.1f} dB")
    return 0


def make_assets(args: argparse.Namespace) -> int:
    if not args.manifest:
        raise CodecSepError("--make-assets needs --manifest PATH (e.g. data/corpus/manifest.jsonl)")
    from .separators.demo import make_demo_assets

    make_demo_assets(args.manifest, Path(args.demo_dir or DEFAULT_DEMO), seed=args.seed,
                     overwrite=args.overwrite)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.make_assets:
        return make_assets(args)
    sep_dir = Path(args.model) if args.model else DEFAULT_MODEL
    demo_dir = Path(args.demo_dir) if args.demo_dir else DEFAULT_DEMO
    shipped = (sep_dir / "model.safetensors").is_file() and (demo_dir / "metadata.csv").is_file()
    if not shipped and not args.model and not args.demo_dir:
        missing = [str(p) for p, f in ((sep_dir, "model.safetensors"), (demo_dir, "metadata.csv"))
                   if not (p / f).is_file()]
        print(f"codecsep demo: not shipped yet: {', '.join(missing)}; checking the codec path "
              "instead (or run `codecsep demo --model DIR`)", file=sys.stderr)
        return codec_check()
    from .separators.demo import run_demo

    return run_demo(sep_dir, demo_dir, Path(args.out), overwrite=args.overwrite)


def register(sub) -> None:
    p = sub.add_parser("demo", help="separate the shipped demo mixture with the default model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="outputs/demo",
                   help="output folder (default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (with --make-assets: the demo mixture)")
    p.add_argument("--model", metavar="DIR", help="separator checkpoint (default: the shipped one)")
    p.add_argument("--demo-dir", metavar="DIR",
                   help="demo mixture folder (default: the shipped one)")
    p.add_argument("--make-assets", action="store_true",
                   help="build the demo mixture from the test split of --manifest")
    p.add_argument("--manifest", help="corpus manifest (JSONL) for --make-assets")
    p.add_argument("--seed", type=int, default=0, help="mixture draw for --make-assets")
    p.set_defaults(func=run)
