"""`codecsep speech`: two-speaker separation (Codecformer, CodeSep) and 1 kbps speech codes.

    codecsep speech separate --model codecformer:DIR mix.wav -o OUT   # OUT/mix_speaker{1,2}.wav
    codecsep speech separate --model codesep:DIR mix.wav -o OUT
    codecsep speech encode mix.wav -o mix.codes --model DIR           # CodeSep base tokens, 1 kbps
    codecsep speech decode mix.codes -o OUT --model DIR               # OUT/mix_speaker{1,2}.wav
    codecsep speech eval --codecformer DIR --codesep DIR              # results/speech/speech.md

--model defaults to the shipped CodeSep (encode/decode) or Codecformer (separate) once they
exist. --codec overrides the codec a model names (a Mica checkpoint directory). Existing outputs
are kept unless --overwrite is given. `eval` compares both models with the FCTS / FSTC baselines
at matched bitrates on the held-out-speaker test set (`codecsep.speech_eval`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CodecSepError, positive_int
from .registry import SPEAKER_SEPARATORS, model_class

KINDS = SPEAKER_SEPARATORS


def parse_model(spec: str | None, default_kind: str) -> tuple[str, Path | None]:
    """"codecformer:DIR" / "codesep:DIR" / "DIR" (kind read from its config) / None (shipped)."""
    if spec is None:
        return default_kind, None
    kind, sep, path = spec.partition(":")
    if sep and kind in KINDS:
        return kind, Path(path)
    if not (Path(spec) / "config.json").is_file():
        raise CodecSepError(f"{spec}: not a model checkpoint (use codecformer:DIR or codesep:DIR)")
    from ..checkpoint import checkpoint_kind

    kind = checkpoint_kind(spec)
    if kind not in KINDS:
        raise CodecSepError(f"{spec}: holds a {kind!r} checkpoint, not one of {KINDS}")
    return kind, Path(spec)


def load_model(spec: str | None, default_kind: str, codec_name: str | None = None):
    from ..codecs import load_codec

    kind, path = parse_model(spec, default_kind)
    if path is None:
        path = model_class(kind).default_checkpoint
        if not (path / "config.json").is_file():
            raise CodecSepError(f"no shipped {kind} model yet ({path}): pass --model {kind}:DIR")
    codec = load_codec(codec_name) if codec_name else None
    return model_class(kind).load(path, codec=codec)


def speaker_paths(out_dir: Path, stem: str, n: int, overwrite: bool) -> list[Path]:
    paths = [out_dir / f"{stem}_speaker{i + 1}.wav" for i in range(n)]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise CodecSepError(f"{existing[0]} exists (pass --overwrite to replace it)")
    return paths


def write_speakers(wavs, out_dir: Path, stem: str, sample_rate: int, overwrite: bool) -> None:
    """wavs (S, C, T) -> OUT/stem_speaker{i}.wav, one line printed per file."""
    from ..audio import save_audio

    for path, wav in zip(speaker_paths(out_dir, stem, len(wavs), overwrite), wavs):
        save_audio(path, wav, sample_rate, overwrite=overwrite)
        print(path)


def check_speech_inputs(inputs: list[Path], out_dir: Path, overwrite: bool) -> None:
    """Every input readable, no two writing the same files, no output there already (without
    --overwrite): checked for all inputs before the first is separated."""
    from ..audio import check_audio_file

    stems: dict[str, Path] = {}
    for path in inputs:
        check_audio_file(path)
        if path.stem in stems:
            raise CodecSepError(f"{stems[path.stem]} and {path} would write the same files in "
                                f"{out_dir}: rename one or run them separately")
        stems[path.stem] = path
        speaker_paths(out_dir, path.stem, 2, overwrite)


def separate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..audio import load_audio
    from .api import input_warnings

    model = load_model(args.model, "codecformer", args.codec)
    check_speech_inputs([Path(p) for p in args.inputs], Path(args.out), args.overwrite)
    for path in tqdm(args.inputs, desc="separating", unit="file", disable=len(args.inputs) < 2):
        wav, _ = load_audio(path, sample_rate=model.sample_rate)
        for note in input_warnings(wav, model.sample_rate):  # as `codecsep separate` warns
            tqdm.write(f"codecsep: warning: {path}: {note}", file=sys.stderr)
        write_speakers(model.separate_speakers(wav), Path(args.out), Path(path).stem,
                       model.sample_rate, args.overwrite)
    return 0


def encode(args: argparse.Namespace) -> int:
    from ..audio import load_audio

    model = load_model(args.model, "codesep", args.codec)
    if not hasattr(model, "encode"):
        raise CodecSepError("speech encode needs a CodeSep model (codesep:DIR)")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CodecSepError(f"{out} exists (pass --overwrite to replace it)")
    wav, _ = load_audio(args.input, sample_rate=model.sample_rate, mono=True)
    base = model.encode(wav)
    model.codes_file(base, wav.shape[-1]).save(out, overwrite=args.overwrite)
    kbps = model.bitrate() / 1000
    print(f"{out}: {base.shape[0]} speakers x {base.shape[-1]} frames of base tokens, "
          f"{kbps:g} kbps ({out.stat().st_size} bytes)")
    return 0


def decode(args: argparse.Namespace) -> int:
    model = load_model(args.model, "codesep", args.codec)
    if not hasattr(model, "decode"):
        raise CodecSepError("speech decode needs a CodeSep model (codesep:DIR)")
    stem = Path(args.input).stem
    speaker_paths(Path(args.out), stem, 2, args.overwrite)  # fail before decoding
    cf = model.read_codes(args.input)
    wavs = model.decode(cf.codes, cf.length)
    write_speakers(wavs, Path(args.out), stem, model.sample_rate, args.overwrite)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from ..speech_eval import SpeechEvalConfig, run_speech_eval, speech_table

    cfg = SpeechEvalConfig(codecformer=args.codecformer, codesep=args.codesep, n=args.n,
                           kbps=tuple(args.kbps), eval_dir=args.eval_dir, manifest=args.manifest,
                           visqol=args.visqol, out=args.out)
    result = run_speech_eval(cfg, overwrite=args.overwrite)
    print("\n".join(speech_table(result)))
    print(f"-> {Path(args.out) / 'speech.json'}")
    return 0


def _eval_parser(sub) -> None:
    from .. import speech_eval

    d = speech_eval.SpeechEvalConfig()
    p = sub.add_parser("eval", help="Codecformer, CodeSep, FCTS/FSTC on two-speaker test mixtures",
                       description=speech_eval.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for kind in KINDS:
        p.add_argument(f"--{kind}", metavar="DIR",
                       help=f"{kind} checkpoint (default: the shipped one; skipped if absent)")
    p.add_argument("--n", type=positive_int, default=d.n, help="mixtures (default %(default)s)")
    p.add_argument("--kbps", type=float, nargs="+", default=list(d.kbps), metavar="KBPS",
                   help="baseline bitrates besides CodeSep's own (default %(default)s)")
    p.add_argument("--eval-dir", default=d.eval_dir, help="evaluation sets (default %(default)s)")
    p.add_argument("--manifest", default=d.manifest,
                   help="corpus manifest whose test split feeds a new set (default %(default)s)")
    p.add_argument("--out", default=d.out, help="output folder (default %(default)s)")
    p.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=d.visqol,
                   help="ViSQOL in speech mode (slow; default on)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute rows an earlier run in --out computed otherwise")
    p.set_defaults(func=evaluate)


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--model", metavar="SPEC", help=f"{what} (default: the shipped one)")
    p.add_argument("--codec", metavar="NAME_OR_DIR", help="override the codec the model names")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def register(subparsers) -> None:
    speech = subparsers.add_parser("speech", help="two-speaker separation and 1 kbps speech codes",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = speech.add_subparsers(dest="speech_command", metavar="SUBCOMMAND")
    p = sub.add_parser("separate", help="write one file per speaker")
    p.add_argument("inputs", nargs="+", help="mixture audio file(s)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    _common(p, "codecformer:DIR or codesep:DIR")
    p.set_defaults(func=separate)
    p = sub.add_parser("encode", help="store per-speaker CodeSep base tokens (1 kbps)")
    p.add_argument("input", help="mixture audio file")
    p.add_argument("-o", "--out", required=True, help="codes file to write")
    _common(p, "CodeSep checkpoint DIR")
    p.set_defaults(func=encode)
    p = sub.add_parser("decode", help="one wav per speaker from a CodeSep codes file")
    p.add_argument("input", help="codes file written by `speech encode`")
    p.add_argument("-o", "--out", required=True, help="output folder")
    _common(p, "CodeSep checkpoint DIR")
    p.set_defaults(func=decode)
    _eval_parser(sub)
    speech.set_defaults(func=lambda args: speech.print_help() or 0)
