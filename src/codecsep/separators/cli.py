"""`codecsep separate`: separate audio files, folders or code streams by text prompts.

    codecsep separate street.wav --prompt "birdsong" -o out/          # out/street/birdsong.wav
    codecsep separate songs/ --prompt "speech" --remove -o out/   # out/<stem>/speech_removed.wav
    codecsep separate a.wav --instruction "remove the speech and keep the music" -o out/
    codecsep separate a.codes --codes-in --codes-out --prompt "piano" -o out/   # codes -> codes
    codecsep separate a.wav --query-audio bark.wav -o out/   # by example: out/a/bark.wav

Files written per input and prompt: `<slug>` = the target, `<slug>_residual` = the rest (with
--residual); with --remove the rest is the main output, `<slug>_removed`, and --residual adds the
removed sound as `<slug>`. Every input is checked and every output path planned before anything
is separated: a bad input or an existing output (without --overwrite) writes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..audio import (
    AUDIO_EXTENSIONS,
    ClippingWarning,
    check_audio_file,
    list_audio_files,
    save_audio,
)
from ..codecs.base import CodesFile, check_codebooks, decode_codes, encode_to_codes, is_codes_file
from ..errors import AudioError, CodecSepError, CodesFileError
from ..text.anchors import AUDIO_QUERY_WEIGHT
from .api import (
    check_separation,
    get_separator,
    installed_presence_check,
    prompt_notes,
    query_embeddings,
    read_input,
    slug,
)
from .base import INFERENCE_OVERRIDES, apply_overrides, members_arg, postfilter_arg
from .postfilter import PostFilter
from .separator import check_prompts

CODES_EXT = ".codes"


@dataclass(frozen=True)
class Output:
    prompt: int  # row of the prompt
    which: str  # "target" | "residual"
    path: Path


@dataclass(frozen=True)
class Job:
    source: Path
    outputs: tuple[Output, ...]


# ------------------------------------------------------------------------------ the request
def resolve_prompts(args, sep) -> tuple[list[str], bool]:
    """(prompts, remove) from --prompt/--remove, a free-form --instruction (read as the
    separator `sep` reads it), or --query-audio (then the "prompts" are the examples' stems:
    they name the outputs)."""
    if args.query_audio:
        if args.prompt or args.instruction is not None:
            raise CodecSepError("--query-audio gives the target by example: do not combine it "
                                "with --prompt/--instruction")
        return check_prompts([Path(q).stem for q in args.query_audio]), args.remove
    for given, flag in ((args.audio_encoder, "--audio-encoder"),
                        (args.query_anchor_weight, "--query-anchor-weight")):
        if given is not None:
            raise CodecSepError(f"{flag} is for --query-audio examples: add --query-audio")
    if args.instruction is None:
        if not args.prompt:
            raise CodecSepError("no prompts: give --prompt TEXT (repeatable), --instruction TEXT or "
                                 "--query-audio EXAMPLE.wav")
        return check_prompts(args.prompt), args.remove
    if args.prompt or args.remove:
        raise CodecSepError("--instruction says what to do: do not combine it with "
                            "--prompt/--remove")
    if not args.instruction.strip():
        raise CodecSepError("empty --instruction: say which sound to keep or remove")
    ins = sep.read_instruction(args.instruction)
    print(f"codecsep: instruction -> {ins.task} {ins.description!r}", file=sys.stderr)
    return [ins.description], ins.task == "remove"


def check_options(args) -> None:
    if args.n_quantizers is not None and not args.codes_out:
        raise CodecSepError("--n-quantizers sets the bitrate of --codes-out outputs: "
                            "add --codes-out")
    if args.n_quantizers is not None and args.n_quantizers < 1:
        raise CodecSepError(f"--n-quantizers must be >= 1, got {args.n_quantizers}")
    if args.codes_out and args.format is not None:
        raise CodecSepError("--format applies to audio outputs, not to --codes-out")
    if args.float and (args.codes_out or args.format == "flac"):
        raise CodecSepError("--float writes 32-bit float WAV files: not with --codes-out or "
                            "--format flac")
    if args.codes_in and args.channels == "mono":
        raise CodecSepError("--channels mono applies to audio inputs, not to --codes-in")


def output_names(prompts: list[str], remove: bool, residual: bool) -> list[tuple[int, str, str]]:
    """(prompt row, "target"|"residual", file stem) for every output of one input."""
    names, seen = [], {}
    for i, p in enumerate(prompts):
        s = slug(p)
        if s in seen:
            raise CodecSepError(f"prompts {seen[s]!r} and {p!r} would write the same file {s!r}")
        seen[s] = p
        main, other = ("residual", "target") if remove else ("target", "residual")
        names.append((i, main, f"{s}_removed" if remove else s))
        if residual:
            names.append((i, other, s if remove else f"{s}_residual"))
    return names


# ------------------------------------------------------------------------------ inputs and plan
def expand_inputs(paths: list[str], codes_in: bool) -> list[Path]:
    """Files as given; a directory gives its audio (or .codes) files, sorted."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = (sorted(f for f in p.iterdir() if f.suffix == CODES_EXT and f.is_file())
                     if codes_in else list_audio_files(p))
            subfolders = sum(1 for f in p.iterdir() if f.is_dir() and not f.name.startswith("."))
            unsearched = f" ({subfolders} subfolder(s) not searched)" if subfolders else ""
            if not found:
                kind = "codes (.codes)" if codes_in else "audio"
                raise AudioError(f"{p}: no {kind} files in this directory{unsearched}")
            if unsearched:
                print(f"codecsep: {p}: {len(found)} file(s){unsearched}", file=sys.stderr)
            files.extend(found)
        elif not p.exists():
            raise AudioError(f"{p}: no such file")
        else:
            files.append(p)
    return files


def plan(files: list[Path], out: Path, names, ext: str) -> list[Job]:
    if out.exists() and not out.is_dir():
        raise CodecSepError(f"{out}: exists and is not a directory")
    if not out.exists() and out.suffix.lower() in (*AUDIO_EXTENSIONS, CODES_EXT):
        raise CodecSepError(f"-o names the output folder, got the file name {out}: outputs go to "
                            f"OUT/<input>/<prompt>{ext}")
    stems: dict[str, Path] = {}
    jobs = []
    for f in files:
        if f.stem in stems and f.resolve() == stems[f.stem].resolve():
            raise CodecSepError(f"{f}: given twice")
        if f.stem in stems:
            raise CodecSepError(f"{stems[f.stem]} and {f} would write to the same folder "
                                f"{out / f.stem}: rename one or run them separately")
        stems[f.stem] = f
        jobs.append(Job(f, tuple(Output(i, w, out / f.stem / f"{n}{ext}") for i, w, n in names)))
    return jobs


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    inputs = {j.source.resolve() for j in jobs}
    paths = [o.path for j in jobs for o in j.outputs]
    clash = [p for p in paths if p.resolve() in inputs]
    if clash:
        raise CodecSepError(f"{clash[0]}: output would replace an input; choose another -o folder")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CodecSepError(f"{existing[0]}: already exists{more}; pass --overwrite to replace")


def check_writable(jobs: list[Job]) -> None:
    """Create the output folders and write a scratch file in each, so that a folder that cannot be
    written fails now rather than after the first separation (folders this made are removed)."""
    made: list[Path] = []
    try:
        for folder in sorted({o.path.parent for j in jobs for o in j.outputs}):
            made += [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as e:
        for p in made:
            shutil.rmtree(p, ignore_errors=True)
        raise CodecSepError(f"{e.filename or folder}: cannot write outputs there "
                            f"({e.strerror or e}); choose another -o folder") from None


def probe_audio(path: Path) -> None:
    """Fail now, before anything is written, on a file that cannot be read as audio."""
    try:
        check_audio_file(path)
    except AudioError:
        if is_codes_file(path):
            raise AudioError(f"{path}: a CodecSep codes file, not audio: pass --codes-in") from None
        raise


def check_code_streams(args, sep) -> None:
    """Code-stream options need a codec-based separator with enough codebooks; the waveform
    post-filter does not apply to code streams."""
    setting = getattr(args, "postfilter", None)
    if args.codes_in and setting is not None and PostFilter.parse(setting).enabled:
        raise CodecSepError("--postfilter works on audio input; code streams (--codes-in) are "
                            "masked and re-quantized without it")
    codec = getattr(sep, "codec", None)
    if codec is None:
        if args.codes_in or args.codes_out:
            raise CodecSepError(f"--codes-in/--codes-out need a codec-based separator; this "
                                f"{sep.checkpoint_kind} model works on waveforms only")
        return
    if args.n_quantizers is not None:
        check_codebooks(codec, args.n_quantizers)


def probe_codes(path: Path, sep, n_quantizers: int | None) -> None:
    if path.is_file() and not is_codes_file(path):  # most likely audio given with --codes-in
        raise CodesFileError(f"{path}: not a CodecSep codes file; to separate audio, drop "
                             "--codes-in")
    codes = CodesFile.load(path)
    codes.check_codec(sep.codec)
    if n_quantizers is not None and n_quantizers > codes.n_quantizers:
        raise CodecSepError(f"{path}: has {codes.n_quantizers} codebooks, fewer than "
                            f"--n-quantizers {n_quantizers}")


# ------------------------------------------------------------------------------ separation
@dataclass(frozen=True)
class Result:
    rows: dict  # "target"/"residual" -> (P, C, T) waveforms, or (P, C, N, F) codes
    length: int  # samples at the separator's rate
    is_codes: bool


def separate_audio(sep, path: Path, prompts, cond, mono: bool, check_presence: bool = True) -> Result:
    wav, file_rate = read_input(path, sep, mono=mono)
    if file_rate != sep.sample_rate:
        tqdm.write(f"codecsep: {path}: resampling {file_rate} Hz -> {sep.sample_rate} Hz "
                   f"(outputs are at {sep.sample_rate} Hz)", file=sys.stderr)
    rows = sep.separate(wav, prompts, cond=cond)
    for note in check_separation(sep, wav, rows, prompts, check_presence)[1]:
        tqdm.write(f"codecsep: warning: {path}: {note}", file=sys.stderr)
    return Result(rows, wav.shape[-1], False)


def separate_codes_file(sep, path: Path, prompts, cond) -> Result:
    """Each channel's code stream (1, N, F) is separated on its own -> (P, C, N, F)."""
    cf = CodesFile.load(path)
    per_channel = [sep.separate_codes(cf.codes[c:c + 1], prompts, cond=cond)
                   for c in range(cf.codes.shape[0])]
    rows = {k: torch.stack([r[k] for r in per_channel], 1) for k in ("target", "residual")}
    return Result(rows, cf.length, True)


class Writer:
    """Writes one output row as audio or as a codes file, converting between them if needed."""

    def __init__(self, sep, codes_out: bool, n_quantizers: int | None, overwrite: bool,
                 subtype: str | None = None):
        self.sep, self.codes_out, self.n, self.overwrite = sep, codes_out, n_quantizers, overwrite
        self.subtype = subtype  # None: the format's default (16-bit PCM for WAV and FLAC)
        self._hash = None

    @torch.inference_mode()
    def write(self, x: torch.Tensor, result: Result, path: Path) -> None:
        """x: (C, T) waveform or (C, N, F) codes, as `result` holds them."""
        codec = getattr(self.sep, "codec", None)  # None: a waveform-only separator (ResUNet)
        if not self.codes_out:
            wav = decode_codes(codec, x, result.length) if result.is_codes else x
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ClippingWarning)
                save_audio(path, wav, self.sep.sample_rate, overwrite=self.overwrite,
                           subtype=self.subtype)
            for w in caught:  # one line, with the option that keeps the samples
                tqdm.write(f"codecsep: warning: {w.message.summary}; --float keeps them",
                           file=sys.stderr)
            return
        self._hash = self._hash or codec.weights_hash()
        if result.is_codes:  # RVQ: the first n codebooks are the n-codebook encoding
            codes = x[:, : self.n]
            cf = CodesFile(codes, codec.codec_id, self._hash, self.sep.sample_rate, result.length,
                           codes.shape[1])
        else:
            cf = encode_to_codes(codec, x, self.n or codec.n_codebooks, self._hash)
        cf.save(path, overwrite=self.overwrite)


def run_job(sep, job: Job, prompts, cond, args, writer: Writer) -> str:
    """Separate one input, write its outputs, return its summary."""
    start = time.perf_counter()
    if args.codes_in:
        result = separate_codes_file(sep, job.source, prompts, cond)
    else:
        result = separate_audio(sep, job.source, prompts, cond, args.channels == "mono",
                                not (args.query_audio or args.no_presence_check))  # text only
    for out in job.outputs:
        writer.write(result.rows[out.which][out.prompt], result, out.path)
    elapsed = time.perf_counter() - start
    seconds = result.length / sep.sample_rate
    rtf = elapsed / max(seconds, 1e-9)
    lines = [f"{job.source}: {seconds:.2f} s of audio in {elapsed:.2f} s "
             f"(real-time factor {rtf:.3f})"]
    lines += [f"  {prompts[o.prompt]!r} ({o.which}) -> {o.path}" for o in job.outputs]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_options(args)
    ext = CODES_EXT if args.codes_out else f".{args.format or 'wav'}"
    files = expand_inputs(args.inputs, args.codes_in)
    sep = get_separator(args.model)
    apply_overrides(sep, {k: getattr(args, k) for k in INFERENCE_OVERRIDES}, args.model or "it")
    prompts, remove = resolve_prompts(args, sep)
    jobs = plan(files, Path(args.out), output_names(prompts, remove, args.residual), ext)
    check_outputs(jobs, args.overwrite)
    check_code_streams(args, sep)
    for job in jobs:  # every input is readable before the first output is written
        if args.codes_in:
            probe_codes(job.source, sep, args.n_quantizers)
        else:
            probe_audio(job.source)
    cond = (query_embeddings(sep, args.query_audio, args.audio_encoder, args.query_anchor_weight)
            if args.query_audio else sep.embed(prompts))
    for note in prompt_notes(sep, prompts, cond if args.query_audio else None):
        print(f"codecsep: {note}", file=sys.stderr)
    if not (args.codes_in or args.query_audio or args.no_presence_check):
        installed_presence_check()  # loaded once now, so the first file's speed is not its load
    check_writable(jobs)  # last: a request refused above leaves no folder behind
    writer = Writer(sep, args.codes_out, args.n_quantizers, args.overwrite,
                    "FLOAT" if args.float else None)
    for job in tqdm(jobs, desc="separating", unit="file", disable=len(jobs) < 2):
        tqdm.write(run_job(sep, job, prompts, cond, args, writer))
    return 0


def register(sub) -> None:
    p = sub.add_parser("separate", help="separate sounds from audio files by text prompts",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="audio file, folder of audio files, or codes file (with --codes-in)")
    p.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                   help="sound to separate, e.g. 'violin' (repeat for several; `codecsep "
                        "sounds` lists what the model was trained on)")
    p.add_argument("--instruction", metavar="TEXT",
                   help="free-form request, e.g. 'remove the speech'")
    p.add_argument("--query-audio", action="append", default=[], metavar="PATH",
                   help="separate what sounds like this example (repeatable); outputs are "
                        "named after its file name")
    p.add_argument("--audio-encoder", metavar="DIR",
                   help="aligned audio encoder for --query-audio (default: the shipped one)")
    p.add_argument("--query-anchor-weight", type=float, metavar="W",
                   help="pull --query-audio examples toward the captions the model was trained "
                        f"on, 0-1 (default {AUDIO_QUERY_WEIGHT:g}; 0 takes them as they are)")
    p.add_argument("--remove", action="store_true",
                   help="write everything but the prompted sound (<slug>_removed)")
    p.add_argument("--residual", action="store_true", help="also write the other part")
    p.add_argument("-o", "--out", required=True, help="output folder (one subfolder per input)")
    p.add_argument("--model", metavar="DIR",
                   help="separator checkpoint folder (default: the shipped model)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--anchor-weight", type=float, metavar="W",
                   help="pull prompts toward the captions the model was trained on, 0-1 "
                        "(default: the checkpoint's; 0 turns it off)")
    p.add_argument("--shifts", type=int, metavar="N",
                   help="average N passes shifted within one codec frame (default: the "
                        "checkpoint's; 1 is fastest)")
    p.add_argument("--members", type=members_arg, metavar="K[,K]",
                   help="of a checkpoint that combines several maskers, run only these (1-based, "
                        "e.g. 1 or 1,2; default: the checkpoint's members on audio, its "
                        "code_members on --codes-in; 1 is fastest)")
    p.add_argument("--postfilter", type=postfilter_arg, metavar="N_FFT[,POWER]",
                   help="re-split the mixture by the estimates' STFT magnitudes (default: the "
                        "checkpoint's; 0 turns it off; audio input only)")
    p.add_argument("--codes-in", action="store_true", help="inputs are .codes files")
    p.add_argument("--codes-out", action="store_true", help="write .codes files, not audio")
    p.add_argument("--n-quantizers", type=int, metavar="N",
                   help="codebooks in --codes-out (default all)")
    p.add_argument("--format", choices=("wav", "flac"),
                   help="audio output format (default wav; both 16-bit PCM)")
    p.add_argument("--float", action="store_true",
                   help="write 32-bit float WAV: keeps samples beyond [-1, 1], which 16-bit PCM "
                        "clips (with a warning)")
    p.add_argument("--channels", choices=("separate", "mono"), default="separate",
                   help="separate each channel (default) or downmix to mono first")
    p.add_argument("--no-presence-check", action="store_true",
                   help="skip the check that warns when a prompted sound seems absent (it never "
                        "changes outputs; it costs about 0.05 GMACs per second of audio)")
    p.set_defaults(func=run)
