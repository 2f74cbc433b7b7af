"""`codecsep codec`: audio to a code stream and back, with the codec the separators work on.

    codecsep codec encode mix.wav -o mix.codes                  # Mica, 16 codebooks: 8 kbps
    codecsep codec encode mix.wav -o mix.codes --n-quantizers 12   # 6 kbps
    codecsep separate mix.codes --codes-in --codes-out -p piano -o out/
    codecsep codec decode out/mix/piano.codes -o piano.wav

Every channel gets its own stream. The codes file records the codec and a hash of its weights, so
a stream is only ever decoded (or separated) by the codec that wrote it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..audio import load_audio, resample, save_audio
from ..errors import CodecSepError
from .base import CodesFile, check_codebooks, decode_codes, encode_to_codes


def check_new(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing output without --overwrite."""
    if out.exists() and not overwrite:
        raise CodecSepError(f"{out}: already exists; pass --overwrite to replace it")


def encode_file(codec, path: Path, out: Path, n_quantizers: int | None,
                overwrite: bool) -> CodesFile:
    check_new(out, overwrite)
    wav, rate = load_audio(path)  # (C, T)
    if rate != codec.sample_rate:
        print(f"codecsep: {path}: resampling {rate} Hz -> {codec.sample_rate} Hz", file=sys.stderr)
        wav = resample(wav, rate, codec.sample_rate)
    n = check_codebooks(codec, codec.n_codebooks if n_quantizers is None else n_quantizers)
    with torch.inference_mode():
        cf = encode_to_codes(codec, wav, n)
    cf.save(out, overwrite=overwrite)
    return cf


def decode_file(codec, path: Path, out: Path, overwrite: bool) -> torch.Tensor:
    check_new(out, overwrite)
    cf = CodesFile.load(path)
    cf.check_codec(codec)
    with torch.inference_mode():
        wav = decode_codes(codec, cf.codes, cf.length)  # (C, T)
    save_audio(out, wav, codec.sample_rate, overwrite=overwrite)
    return wav


def _codec(args):
    from . import load_codec

    return load_codec(args.codec)


def _encode(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.out)
    if not src.is_file():
        raise CodecSepError(f"{src}: no such file")
    codec = _codec(args)
    cf = encode_file(codec, src, out, args.n_quantizers, args.overwrite)
    seconds = cf.length / cf.sample_rate
    size = out.stat().st_size
    print(f"{src} -> {out}: {cf.codes.shape[0]} channel(s), {cf.n_quantizers} codebooks, "
          f"{seconds:.2f} s, {size} bytes "
          f"({8 * size / max(seconds, 1e-9) / 1000:.1f} kbps with the header)")
    return 0


def _decode(args: argparse.Namespace) -> int:
    codec = _codec(args)
    wav = decode_file(codec, Path(args.input), Path(args.out), args.overwrite)
    print(f"{args.input} -> {args.out}: {wav.shape[0]} channel(s), "
          f"{wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")
    return 0


def register(sub) -> None:
    p = sub.add_parser("codec", help="encode audio to a code stream, or decode one",
                       description=__doc__.split("\n\n")[0])
    csub = p.add_subparsers(dest="codec_command", metavar="ACTION", required=True)
    enc = csub.add_parser("encode", help="audio file -> codes file")
    enc.add_argument("input", help="audio file (resampled to the codec's rate)")
    enc.add_argument("-o", "--out", required=True, help="codes file to write")
    enc.add_argument("--n-quantizers", type=int, metavar="N",
                     help="codebooks to keep (default: all; Mica: 16 = 8 kbps, each 0.5 kbps)")
    dec = csub.add_parser("decode", help="codes file -> audio file")
    dec.add_argument("input", help="codes file (from `codec encode` or `separate --codes-out`)")
    dec.add_argument("-o", "--out", required=True, help="audio file to write (.wav, .flac)")
    for q in (enc, dec):
        q.add_argument("--codec", default="mica",
                       help="'mica' (default: the shipped separators' codec), a Mica checkpoint "
                            "folder, or 'dac-16k:PATH'")
        q.add_argument("--overwrite", action="store_true", help="replace an existing output")
    enc.set_defaults(func=_encode)
    dec.set_defaults(func=_decode)
