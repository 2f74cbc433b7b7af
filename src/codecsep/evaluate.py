"""`codecsep eval`: score a separator on a fixed evaluation set drawn from the corpus test split.

    codecsep eval --model codecsep --protocol two_source            # shipped default model
    codecsep eval --model resunet:runs/resunet/checkpoint --protocol three_source --visqol
    codecsep eval --model oracle-mdct-irm --protocol dnr --task remove

Evaluation sets are written once per (protocol, seed) into `<eval-dir>/<protocol>-<seed>/` by
`codecsep.data.mixtures.write_eval_set` (label prompts) and reused by every model; caption and
held-out prompts are derived from the stored labels and clips, so every prompt mode scores the
same audio. Targets: the first source for two_source and two_speaker (both speakers answer to
"speech", so the text cannot pick one: that protocol measures how a text-queried model copes),
every source in turn for three_source and dnr.

Extraction scores the target row against the source; removal scores the residual row against
mixture - source. Per-item rows go to `items.csv` as they are computed (a re-run skips the rows
already there); `summary.json` / `summary.md` give mean, median and a bootstrap 95% CI per metric
and SI-SDRi per class; `per_class.png` and `examples.png` plot them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .audio import spectrogram_db
from .codecs.base import check_codebooks
from .data.manifest import SPLITS
from .errors import CodecSepError, positive_float, positive_int
from .metrics import sdr, sdr_improvement, si_sdr, si_sdr_improvement
from .separators.base import INFERENCE_OVERRIDES, apply_overrides, members_arg, postfilter_arg

EVAL_SEED = 0
DEFAULT_N = 100
SAMPLE_RATE = 16000  # evaluation sets are 16 kHz mono
PROTOCOL_TARGETS = {"two_source": "first", "three_source": "all", "dnr": "all",
                    "two_speaker": "first"}
# Mixture settings that differ from the protocol defaults in evaluation sets. Corpus speech clips
# average 2.4 s: padded into 4 s, two speakers would overlap in ~12% of frames; tiled ("loop")
# into 3 s they overlap throughout, as in Libri2Mix and as the speech recipes train.
EVAL_MIX_CONFIGS = {"two_speaker": {"short_clips": "loop", "duration_s": 3.0}}
PROMPT_MODES = ("label", "caption", "heldout")
TASKS = ("extract", "remove")
# what estimates are scored against: the clean sources, or the model codec's rendition of them
# (Codecformer's codec-SI-SDR: decode(encode(source)), through the codes for code streams)
REFERENCES = ("clean", "codec")
CODEC_REFERENCE = ("the model codec's rendition of each reference, decode(encode(reference)), "
                   "through the codes for code streams (codec-SI-SDR)")
COLUMNS = ("mixture_id", "source_index", "protocol", "prompt", "label", "task",
           "si_sdr", "si_sdri", "sdr", "sdri", "visqol", "semantic")
METRICS = ("si_sdri", "sdri", "si_sdr", "sdr", "visqol", "semantic")


# =============================================================================== models
class SeparationModel(Protocol):
    """What `codecsep eval` needs: `separate(audio (C, T), prompts) -> {"target", "residual"}`,
    each (P, C, T) at `sample_rate`. Oracles set `needs_references = True` and also receive
    `sources` (K, T) and `targets` (P source indices)."""

    sample_rate: int

    def separate(self, audio, prompts, **kw) -> dict: ...


class MixtureModel:
    """The floor: returns the mixture itself as target and as residual (SI-SDRi = 0 dB)."""

    sample_rate = SAMPLE_RATE
    needs_references = False

    def separate(self, audio, prompts, **kw) -> dict:
        wav = torch.as_tensor(audio).float()
        wav = wav[None] if wav.ndim == 1 else wav
        out = wav.unsqueeze(0).repeat(len(prompts), 1, 1)
        return {"target": out, "residual": out.clone()}


class OracleMDCTIRM:
    """The masking ceiling on Mica's latent: an ideal ratio mask |S_t| / sum_k |S_k| applied per
    coefficient of the hop-320 MDCT of the mixture (computed from the reference sources)."""

    sample_rate = SAMPLE_RATE
    needs_references = True

    def __init__(self, hop: int = 320):
        from .codecs.mdct import MDCT

        self.mdct = MDCT(hop)

    @torch.no_grad()
    def separate(self, audio, prompts, *, sources, targets) -> dict:
        mix = torch.as_tensor(audio).float().reshape(1, 1, -1)  # (1, 1, T) mono
        src = torch.as_tensor(sources).float()[:, None]  # (K, 1, T)
        mags = self.mdct(src).abs()  # (K, D, F)
        mask = mags[list(targets)] / mags.sum(0).clamp_min(1e-8)  # (P, D, F)
        target = self.mdct.inverse(mask * self.mdct(mix), mix.shape[-1])  # (P, 1, T)
        return {"target": target, "residual": mix - target}


class CodecCeiling:
    """The codec ceiling: decode(encode(reference)); with `n_quantizers`, through the codes."""

    needs_references = True

    def __init__(self, codec, n_quantizers: int | None = None):
        self.codec = codec.eval()
        self.n_quantizers = (None if n_quantizers is None
                             else check_codebooks(codec, n_quantizers, "codec-ceiling @"))
        self.sample_rate = codec.sample_rate

    def through(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, 1, T) after the codec's continuous or quantized path."""
        c, z = self.codec, self.codec.encode(wav)
        if self.n_quantizers:
            z = c.dequantize(c.quantize(z, self.n_quantizers))
        return c.decode(z, wav.shape[-1])

    @torch.no_grad()
    def separate(self, audio, prompts, *, sources, targets) -> dict:
        mix = torch.as_tensor(audio).float().reshape(1, 1, -1)
        ref = torch.as_tensor(sources).float()[list(targets)][:, None]  # (P, 1, T)
        return {"target": self.through(ref), "residual": self.through(mix - ref)}


class CodeStreamPath:
    """A CodecSep separator run codes in -> codes out, as `codecsep separate --codes-in
    --codes-out` runs it: the mixture is encoded to codes (N codebooks; all by default), separated
    by `separate_codes` (the checkpoint's `code_members`) and the output codes decoded. Scores
    include the codec's loss at that rate: read them beside codec-ceiling:CODEC@N."""

    def __init__(self, separator, n_quantizers: int | None = None):
        self.separator, self.codec = separator, separator.codec
        self.n_quantizers = check_codebooks(self.codec, self.codec.n_codebooks
                                            if n_quantizers is None else n_quantizers,
                                            "codecsep-codes @")
        self.sample_rate, self.meta = separator.sample_rate, getattr(separator, "meta", None)

    # the inference settings a run may override (no shifts: code streams have none)
    members = property(lambda self: self.separator.members,
                       lambda self, v: setattr(self.separator, "members", v))
    anchor_weight = property(lambda self: self.separator.anchor_weight,
                             lambda self, v: setattr(self.separator, "anchor_weight", v))

    def inference_tag(self) -> str:
        members = ",".join(map(str, self.separator.code_members))
        return "+".join(t for t in (self.separator.inference_tag(),
                                    f"codes:{self.n_quantizers}:members:{members}") if t)

    @torch.no_grad()
    def separate(self, audio, prompts) -> dict:
        mix = torch.as_tensor(audio).float().reshape(1, 1, -1)
        codes = self.codec.quantize(self.codec.encode(mix), self.n_quantizers)
        out = self.separator.separate_codes(codes, prompts)
        return {k: self.codec.decode(self.codec.dequantize(out[k]), mix.shape[-1])
                for k in ("target", "residual")}


def codec_rendition(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """The reference of `--reference codec`: (T,) at 16 kHz -> decode(encode(x)) by the model's
    codec, through its codes at the model's codebooks when it runs code streams (Codecformer's
    codec-SI-SDR), at 16 kHz. What the codec cannot render is then no fault of the masker."""
    from .audio import resample

    codec = getattr(model, "codec", None)
    if codec is None:
        raise CodecSepError("--reference codec needs a model that runs on a codec (codecsep, "
                            "codecsep-codes, codec-ceiling); this one has none")
    ceiling, sr = CodecCeiling(codec, getattr(model, "n_quantizers", None)), codec.sample_rate

    @torch.no_grad()
    def render(x: torch.Tensor) -> torch.Tensor:
        y = ceiling.through(resample(x.float()[None], SAMPLE_RATE, sr)[None])[0]
        y = resample(y, sr, SAMPLE_RATE)[0]
        return torch.nn.functional.pad(y, (0, max(0, len(x) - len(y))))[:len(x)]

    return render


@dataclass(frozen=True)
class ModelKind:
    build: Callable[[str | None, object], SeparationModel]  # (argument, text encoder) -> model
    argument: str  # "required" | "optional" | "none"
    help: str
    form: str = ""  # the argument's shape, as --help shows it (":DIR", "[:DIR][@N]")


def _codecsep(arg, text_encoder):
    from .separators.registry import load_separator

    return load_separator(arg or None, text_encoder=text_encoder)


def _resunet(arg, text_encoder):
    from .separators.resunet import ResUNetSeparator

    return ResUNetSeparator.load(arg, text_encoder=text_encoder)


def _at_codebooks(kind: str, arg: str) -> tuple[str, int | None]:
    """'NAME@N' -> ('NAME', N); 'NAME' -> ('NAME', None)."""
    name, _, n = arg.rpartition("@") if "@" in arg else (arg, "", "")
    if n and not n.isdigit():
        raise CodecSepError(f"{kind}:{arg}: the part after @ must be a codebook count")
    return name, int(n) if n else None


def _codec_ceiling(arg, text_encoder):
    from .codecs import load_codec

    name, n = _at_codebooks("codec-ceiling", arg)
    return CodecCeiling(load_codec(name), n)


def _codecsep_codes(arg, text_encoder):
    from .separators.separator import Separator

    path, n = _at_codebooks("codecsep-codes", arg or "")
    separator = _codecsep(path or None, text_encoder)
    if not isinstance(separator, Separator):
        raise CodecSepError(f"codecsep-codes:{arg}: not a CodecSep separator with a code-stream path")
    return CodeStreamPath(separator, n)


MODELS: dict[str, ModelKind] = {
    "codecsep": ModelKind(_codecsep, "optional", "separator checkpoint dir: CodecSep, "
                          "hierarchical or ResUNet, read from its config (default: shipped)",
                          "[:DIR]"),
    "resunet": ModelKind(_resunet, "required", "AudioSep-style ResUNet checkpoint dir", ":DIR"),
    "mixture": ModelKind(lambda a, t: MixtureModel(), "none", "floor: the mixture itself"),
    "oracle-mdct-irm": ModelKind(lambda a, t: OracleMDCTIRM(), "none",
                                 "ceiling: ideal ratio mask on the hop-320 MDCT"),
    "codec-ceiling": ModelKind(_codec_ceiling, "required",
                               "decode(encode(ref)) of CODEC; CODEC@N goes through N codebooks",
                               ":CODEC[@N]"),
    "codecsep-codes": ModelKind(_codecsep_codes, "optional",
                                "a CodecSep separator codes in -> codes out, N codebooks "
                                "(default: the shipped model, all codebooks)", "[:DIR][@N]"),
}


def models_help() -> str:
    """--model's help, from MODELS: every kind, its argument's shape and what it is."""
    return "; ".join(f"{k}{m.form}: {m.help}" for k, m in MODELS.items())


def parse_model(spec: str) -> tuple[str, str | None]:
    """'resunet:DIR' -> ('resunet', 'DIR'); checks the kind and its argument."""
    kind, sep, arg = spec.partition(":")
    if kind not in MODELS:
        raise CodecSepError(f"unknown model {spec!r}: use one of {', '.join(MODELS)} "
                            "(e.g. codecsep, codecsep:DIR, resunet:DIR, codec-ceiling:mica@8)")
    need = MODELS[kind].argument
    if need == "required" and not arg:
        raise CodecSepError(f"model {kind!r} needs an argument: {kind}:... ({MODELS[kind].help})")
    if need == "none" and sep:
        raise CodecSepError(f"model {kind!r} takes no argument, got {spec!r}")
    return kind, arg or None


def load_model(spec: str, text_encoder=None) -> SeparationModel:
    kind, arg = parse_model(spec)
    return MODELS[kind].build(arg, text_encoder)


def model_slug(spec: str) -> str:
    """A folder name for a model spec: 'resunet:runs/r1/checkpoint' -> 'resunet-r1-checkpoint'."""
    kind, arg = parse_model(spec)
    if not arg:
        return kind
    parts = [p for p in Path(arg).parts[-2:] if p not in ("/", ".", "..")]
    tail = "-".join(parts).replace("@", "-q").replace(":", "-").lstrip("-")
    return f"{kind}-{tail}" if tail else kind


def model_fingerprint(model) -> str | None:
    """Content hash of a checkpoint-backed model's weights (None for oracles and floors), plus
    whatever else changes its output (prompt anchoring, shifts), so results of one never resume
    another."""
    sha = (getattr(model, "meta", None) or {}).get("sha256")
    tag = model.inference_tag() if sha and hasattr(model, "inference_tag") else ""
    return f"{sha}+{tag}" if tag else sha


# =============================================================================== eval sets
def eval_set_dir(eval_root, protocol: str, seed: int = EVAL_SEED, split: str = "test",
                 seconds: float | None = None) -> Path:
    name = f"{protocol}-{seed}" if split == "test" else f"{protocol}-{split}-{seed}"
    return Path(eval_root) / (name + length_tag(seconds))


def length_tag(seconds: float | None) -> str:
    """The suffix that names a set of `seconds`-long mixtures (and its results): "-20s"; "" for
    the protocol's own length."""
    return f"-{seconds:g}s" if seconds else ""


def eval_mix_config(protocol: str, seconds: float | None = None) -> dict | None:
    """The mixing settings of an evaluation set: the protocol's (`EVAL_MIX_CONFIGS`), and for a
    set of `seconds`-long mixtures (long inputs, which run through crossfaded windows) that
    length, with short clips tiled so every source lasts the whole mixture."""
    base = EVAL_MIX_CONFIGS.get(protocol)
    if not seconds:
        return base
    return {**(base or {}), "duration_s": float(seconds), "short_clips": "loop"}


def ensure_eval_set(protocol: str, n: int, eval_root, manifest, seed: int = EVAL_SEED,
                    set_size: int = DEFAULT_N, split: str = "test", seconds: float | None = None):
    """The fixed set for (protocol, seed, split), written from that split of the manifest if
    absent (with max(n, set_size) mixtures, so a quick run with a small n does not fix a small
    set). Results are judged on "test"; "train" / "valid" sets of the same protocol measure how
    much of the gap to the training curve comes from unseen sources; "unseen" holds effects
    only, from packages no other split draws on (other sound banks). `seconds`: a set of that
    mixture length instead of the protocol's (`eval_mix_config`), kept in a folder of its own."""
    from .data.manifest import read_manifest
    from .data.mixtures import make_protocol, read_eval_set, write_eval_set

    if protocol not in PROTOCOL_TARGETS:
        raise CodecSepError(f"unknown protocol {protocol!r}: use {', '.join(PROTOCOL_TARGETS)}")
    if split not in SPLITS:
        raise CodecSepError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if seconds is not None and not seconds > 0:
        raise CodecSepError(f"--seconds must be > 0, got {seconds:g}")
    path = eval_set_dir(eval_root, protocol, seed, split, seconds)
    if not (path / "metadata.csv").is_file():
        if not Path(manifest).is_file():
            raise CodecSepError(f"no evaluation set at {path} and no manifest at {manifest} "
                                "to write one from (pass --manifest)")
        try:
            proto = make_protocol(protocol, read_manifest(manifest, split=split),
                                  eval_mix_config(protocol, seconds))
        except ValueError as e:
            raise CodecSepError(f"{manifest}: cannot draw {protocol} mixtures: {e}") from e
        size = max(n, set_size)
        print(f"writing evaluation set {path} ({size} mixtures, seed {seed})...", flush=True)
        write_eval_set(proto, size, path, seed)
    eval_set = read_eval_set(path)
    if len(eval_set) < n:
        raise CodecSepError(f"{path} holds {len(eval_set)} mixtures, fewer than --n {n}: pass "
                            f"--n {len(eval_set)} or move the set away to write a bigger one")
    return eval_set


# =============================================================================== items + prompts
@dataclass(frozen=True)
class EvalItem:
    index: int  # mixture index in the evaluation set
    mixture_id: str
    source_index: int
    label: str
    prompt: str

    @property
    def key(self) -> tuple[str, str]:
        return self.mixture_id, str(self.source_index)


class PromptSource:
    """Caption and held-out prompts for a stored source, from its label(s) and clip(s)."""

    def __init__(self, manifest=None):
        from .data.manifest import read_manifest

        clips = read_manifest(manifest) if manifest and Path(manifest).is_file() else []
        self.clips = {c.path: c for c in clips}

    def options(self, mode: str, label: str, clip_path: str) -> tuple[str, ...]:
        from .data.captions import CAPTIONS, PARAPHRASES_HELDOUT

        clip = self.clips.get(clip_path)
        if mode == "caption":
            return tuple(clip.captions) if clip else tuple(CAPTIONS.get(label, (label,)))
        for name in (label, clip.label if clip else None):
            if name in PARAPHRASES_HELDOUT:
                return tuple(PARAPHRASES_HELDOUT[name])
        raise CodecSepError(f"no held-out paraphrases for {label!r} (clip {clip_path})")

    def prompt(self, row: dict, mode: str, index: int) -> str:
        """The prompt of one metadata row; deterministic in (seed, mixture index, source, mode)."""
        if mode == "label":
            return row["prompt"]
        clips = [c for c in row["clip_path"].split(";") if c]
        labels = row["label"].split(", ") if len(clips) > 1 else [row["label"]]
        if len(labels) != len(clips):
            labels = [row["label"]] * len(clips)
        rng = np.random.default_rng([int(row["seed"]), index, int(row["source_index"]),
                                     PROMPT_MODES.index(mode)])
        parts = []
        for label, clip in zip(labels, clips):
            opts = self.options(mode, label, clip)
            parts.append(opts[int(rng.integers(len(opts)))])
        return ", ".join(parts)


def add_item_set_arguments(ap, n: int = 100, split: str = "valid") -> None:
    """The arguments of the scripts that walk the items of one evaluation set themselves
    (`scripts/absent_prompts.py`, `query_by_example.py`, `member_selection.py`,
    `second_pass_probe.py`): --model, --n, --protocol, --split, --seed, --manifest, --csv.
    `parse_item_set_args` parses them and loads the model, `item_set(args, mode)` loads the
    items they name, `by_mixture` walks them."""
    ap.add_argument("--model", default="codecsep")
    ap.add_argument("--n", type=positive_int, default=n, help="the first N mixtures of the set")
    ap.add_argument("--protocol", default="two_source", choices=("two_source", "three_source"))
    ap.add_argument("--split", default=split)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--csv", default="", help="write the script's rows (per item or prompt) here")


def parse_item_set_args(ap):
    """(arguments, model) of such a script: its arguments parsed and its --model loaded, on one
    thread (as the committed evaluations ran)."""
    args = ap.parse_args()
    torch.set_num_threads(1)
    return args, load_model(args.model)


def item_set(args, prompt_mode: str = "label", root: str = "data/eval"):
    """(eval set, items, prompt source) for `add_item_set_arguments`' arguments: the set is
    built under `root` on first use, as `codecsep eval` builds it."""
    prompts = PromptSource(args.manifest)
    es = ensure_eval_set(args.protocol, args.n, root, args.manifest, args.seed, DEFAULT_N, args.split)
    return es, eval_items(es, args.n, args.protocol, prompt_mode, prompts), prompts


def by_mixture(eval_set, items: list, desc: str = "mixtures"):
    """(mixture, its items) for each mixture the items name, in order, with a progress bar:
    how the scripts that walk an item set separate each mixture once for all its prompts."""
    groups: dict[int, list] = {}
    for it in items:
        groups.setdefault(it.index, []).append(it)
    for index, its in tqdm(groups.items(), desc=desc, unit="mix"):
        yield eval_set[index], its


def write_item_rows(path, rows: list[dict], digits: int | None = None) -> None:
    """The per-item rows such a script collected, as CSV (floats to `digits` places if given)."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: f"{v:.{digits}f}" if digits is not None and isinstance(v, float) else v
                     for k, v in r.items()} for r in rows)


def eval_items(eval_set, n: int, protocol: str, prompt_mode: str, prompts: PromptSource):
    """The scored (mixture, target source) pairs of the first n mixtures, in order."""
    items = []
    for i, mixture_id in enumerate(eval_set.ids[:n]):
        rows = eval_set.rows[mixture_id]
        targets = range(len(rows)) if PROTOCOL_TARGETS[protocol] == "all" else range(1)
        for k in targets:
            items.append(EvalItem(i, mixture_id, k, rows[k]["label"],
                                  prompts.prompt(rows[k], prompt_mode, i)))
    return items


# =============================================================================== scoring
def run_model(model, mixture: np.ndarray, sources: np.ndarray, items: list[EvalItem],
              cond: torch.Tensor | None = None) -> dict:
    """Separate one mixture for its items: {"target", "residual"}: (P, T) at 16 kHz. `cond`
    (P, E): conditioning in place of the items' prompt embeddings (audio queries)."""
    from .audio import resample

    sr, length = model.sample_rate, mixture.shape[-1]
    mix = resample(torch.from_numpy(mixture)[None], SAMPLE_RATE, sr)
    prompts = [it.prompt for it in items]
    if getattr(model, "needs_references", False):
        src = resample(torch.from_numpy(sources), SAMPLE_RATE, sr)
        out = model.separate(mix, prompts, sources=src, targets=[it.source_index for it in items])
    else:
        out = model.separate(mix, prompts, **({} if cond is None else {"cond": cond}))
    result = {}
    for key in ("target", "residual"):
        y = resample(torch.as_tensor(out[key])[:, 0].float(), sr, SAMPLE_RATE)
        result[key] = torch.nn.functional.pad(y, (0, max(0, length - y.shape[-1])))[..., :length]
    return result


def estimate_and_reference(task: str, out: dict, p: int, mixture, source, render=None):
    """(estimate, reference) tensors (T,) of prompt row p for the task; `render` (e.g.
    `codec_rendition`) maps the clean reference to the one scored against."""
    mix, src = torch.from_numpy(mixture), torch.from_numpy(source)
    est, ref = (out["target"][p], src) if task == "extract" else (out["residual"][p], mix - src)
    return est, ref if render is None else render(ref)


def score(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor) -> dict:
    """SI-SDR, SI-SDRi, SDR, SDRi in dB (floats; NaN for a silent reference)."""
    return {"si_sdr": float(si_sdr(estimate, reference)),
            "si_sdri": float(si_sdr_improvement(estimate, reference, mixture)),
            "sdr": float(sdr(estimate, reference)),
            "sdri": float(sdr_improvement(estimate, reference, mixture))}


def semantic(estimate: torch.Tensor, prompt: str) -> float:
    """Cosine of the shipped aligned audio encoder's embedding of `estimate` (T,) at 16 kHz
    with the prompt's text embedding (a CLAP-score-like check; in removal, of the residual)."""
    from .text.audio_encoder import semantic_score

    return semantic_score(estimate, prompt, sample_rate=SAMPLE_RATE)


def visqol_score(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    from .metrics import visqol

    try:
        return visqol(estimate, reference, SAMPLE_RATE, mode="speech")
    except ValueError:  # e.g. NaN samples from a broken model: scored as missing, not fatal
        return float("nan")


# =============================================================================== per-item log
class ItemLog:
    """items.csv written row by row (flushed), so an interrupted run resumes where it stopped."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[tuple[str, str], dict] = {}
        if path.is_file():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    self.rows[(row["mixture_id"], row["source_index"])] = row

    def __contains__(self, key) -> bool:
        return key in self.rows

    def append(self, row: dict) -> None:
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerow({k: _cell(row.get(k)) for k in COLUMNS})
        self.rows[(row["mixture_id"], str(row["source_index"]))] = {k: _cell(row.get(k)) for k in COLUMNS}


def _cell(v) -> str:
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


# =============================================================================== statistics
def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean (NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def describe(values) -> dict:
    """mean, median, 95% CI, n (finite values) and n_nan of a list of floats."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if not len(finite):
        return {"mean": None, "median": None, "ci95": [None, None], "n": 0, "n_nan": len(arr)}
    lo, hi = bootstrap_ci(finite)
    return {"mean": float(finite.mean()), "median": float(np.median(finite)),
            "ci95": [_none_if_nan(lo), _none_if_nan(hi)], "n": len(finite),
            "n_nan": int(len(arr) - len(finite))}


def _none_if_nan(v: float):
    return None if v is None or not math.isfinite(v) else v


def per_class(rows: list[dict]) -> dict:
    labels = sorted({r["label"] for r in rows})
    return {lab: describe([_float(r["si_sdri"]) for r in rows if r["label"] == lab])
            for lab in labels}


# =============================================================================== the run
@dataclass(frozen=True)
class EvalConfig:
    model: str
    protocol: str
    n: int = DEFAULT_N
    prompt_mode: str = "label"
    task: str = "extract"
    visqol: bool = False
    visqol_items: int = 30  # ViSQOL is slow: computed on the first items only
    semantic: bool = False  # audio-encoder vs prompt cosine of every estimate
    seed: int = EVAL_SEED
    eval_dir: str = "data/eval"
    manifest: str = "data/corpus/manifest.jsonl"
    set_size: int = DEFAULT_N  # mixtures written when the evaluation set does not exist yet
    anchor_weight: float | None = None  # overrides the checkpoint's prompt-anchoring weight
    shifts: int | None = None  # overrides the checkpoint's number of shifted passes
    members: int | str | None = None  # of an ensemble checkpoint, the maskers run: 2, or "1,2"
    postfilter: str | None = None  # overrides the waveform post-filter: "2048,1.25", "0" (off)
    split: str = "test"  # corpus split the evaluation set is drawn from (results: test)
    seconds: float | None = None  # mixture length of the set (None: the protocol's, 4 s)
    reference: str = "clean"  # scored against: "clean" sources or their "codec" rendition

    def __post_init__(self):
        parse_model(self.model)
        for name, value, choices in (("protocol", self.protocol, tuple(PROTOCOL_TARGETS)),
                                     ("prompt mode", self.prompt_mode, PROMPT_MODES),
                                     ("task", self.task, TASKS),
                                     ("reference", self.reference, REFERENCES)):
            if value not in choices:
                raise CodecSepError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")
        if self.n < 1:
            raise CodecSepError(f"--n must be >= 1, got {self.n}")

    def command(self) -> str:
        """The exact command line that reproduces this evaluation."""
        args = ["codecsep", "eval", "--model", self.model, "--protocol", self.protocol,
                "--n", str(self.n), "--prompt-mode", self.prompt_mode, "--task", self.task]
        args += ["--visqol", "--visqol-items", str(self.visqol_items)] if self.visqol else []
        args += ["--semantic"] if self.semantic else []
        defaults = EvalConfig(model="mixture", protocol="two_source")
        for flag in ("eval_dir", "manifest", "seed", "split", "seconds",
                     "reference") + INFERENCE_OVERRIDES:
            if getattr(self, flag) != getattr(defaults, flag):
                args += [f"--{flag.replace('_', '-')}", str(getattr(self, flag))]
        return shlex.join(args)

    @property
    def model_label(self) -> str:
        """The model as results tables name it (inference overrides are part of it)."""
        return " ".join([self.model] + [f"--{k.replace('_', '-')} {_text(v)}"
                                        for k, v in self.overrides().items()]
                        + ([] if self.reference == "clean" else [f"--reference {self.reference}"]))

    def overrides(self) -> dict:
        """The inference settings given instead of the checkpoint's (`INFERENCE_OVERRIDES`)."""
        return {k: getattr(self, k) for k in INFERENCE_OVERRIDES if getattr(self, k) is not None}

    def identity(self) -> dict:
        """What must match for a re-run to resume an existing items.csv."""
        keys = ("model", "protocol", "prompt_mode", "task", "seed", "visqol", "visqol_items",
                "semantic", "split", "seconds", "reference") + tuple(self.overrides())
        return {k: getattr(self, k) for k in keys}


def _text(value) -> str:
    """A setting as command lines and result names show it (1.0 -> 1, "1,2" stays)."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def default_out_dir(cfg: EvalConfig, root="results/eval") -> Path:
    split = ("" if cfg.split == "test" else f"-{cfg.split}") + length_tag(cfg.seconds)
    tags = "".join(f"-{k.split('_')[0]}{_text(v).replace(',', '+')}" for k, v in cfg.overrides().items())
    tags += "" if cfg.reference == "clean" else f"-ref{cfg.reference}"
    return (Path(root) / f"{model_slug(cfg.model)}{tags}"
            / f"{cfg.protocol}{split}-{cfg.prompt_mode}-{cfg.task}")


def eval_set_fingerprint(eval_set) -> str:
    """Content hash of an evaluation set's metadata (which clips, levels and prompts)."""
    import hashlib

    return hashlib.sha256((Path(eval_set.root) / "metadata.csv").read_bytes()).hexdigest()[:16]


# mixture input SI-SDRs of one draw agree to this, wherever it was rendered (measured: up to
# 0.017 dB on a -14 dB item after a rebuild on another machine; other draws differ in their clips)
SAME_INPUT_DB = 0.05


def item_inputs(folder: Path) -> dict[tuple[str, str], tuple[str, float]]:
    """(mixture id, source index) -> (label, input SI-SDR = SI-SDR - SI-SDRi) of a result folder."""
    out = {}
    for key, row in ItemLog(Path(folder) / "items.csv").rows.items():
        try:
            out[key] = (row["label"], float(row["si_sdr"]) - float(row["si_sdri"]))
        except (KeyError, ValueError):
            continue  # a row without SI-SDR carries no draw evidence
    return out


def same_draw(a: dict, b: dict) -> bool:
    """Whether two `item_inputs` (same protocol and task) come from one draw of the evaluation
    set: every item of the smaller one is in the other with the same label and the same input
    SI-SDR. The set's fingerprint hashes its metadata file, whose levels differ in the 4th decimal
    when the set is rendered on another machine (audio decoders, resampler); the items do not."""
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return bool(small) and all(k in big and big[k][0] == lab and abs(big[k][1] - x) <= SAME_INPUT_DB
                               for k, (lab, x) in small.items())


def prepare_out_dir(out: Path, cfg: EvalConfig, fingerprints: dict, overwrite: bool) -> None:
    """Create `out`, or check that its previous run is the same evaluation (then it resumes):
    same settings, same model weights and same evaluation set."""
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    identity = {**cfg.identity(), **fingerprints}
    if run_file.is_file() and not overwrite:
        # a setting absent from an older run.json had its EvalConfig default then
        previous = {**EvalConfig(cfg.model, cfg.protocol).identity(),
                    **json.loads(run_file.read_text())}
        diff = sorted(k for k in identity if previous.get(k) != identity[k])
        if diff:
            raise CodecSepError(f"{out} holds results of another evaluation ({', '.join(diff)} "
                                "differ): pass another --out, or --overwrite to start over")
    if overwrite:
        for name in ("items.csv", "summary.json", "summary.md"):
            (out / name).unlink(missing_ok=True)
    run_file.write_text(json.dumps(identity, indent=2))


def evaluate(cfg: EvalConfig, out_dir=None, model=None, overwrite: bool = False,
             text_encoder=None, n_examples: int = 3) -> dict:
    """Run (or resume) an evaluation; returns the summary dict also written to summary.json."""
    torch.manual_seed(0)
    eval_set = ensure_eval_set(cfg.protocol, cfg.n, cfg.eval_dir, cfg.manifest, cfg.seed,
                               cfg.set_size, cfg.split, cfg.seconds)
    model = model if model is not None else load_model(cfg.model, text_encoder)
    apply_overrides(model, cfg.overrides(), cfg.model)
    render = codec_rendition(model) if cfg.reference == "codec" else None
    out = Path(out_dir) if out_dir else default_out_dir(cfg)
    prepare_out_dir(out, cfg, {"model_fingerprint": model_fingerprint(model),
                               "eval_set_fingerprint": eval_set_fingerprint(eval_set)}, overwrite)
    items = eval_items(eval_set, cfg.n, cfg.protocol, cfg.prompt_mode,
                       PromptSource(cfg.manifest if cfg.prompt_mode != "label" else None))
    log = ItemLog(out / "items.csv")
    score_items(model, eval_set, items, log, cfg, render)
    rows = [log.rows[it.key] for it in items]
    summary = summarize(rows, cfg, eval_set, model)
    write_summary(out, summary)
    plot_per_class(summary, out / "per_class.png")
    plot_examples(model, eval_set, items[:n_examples], cfg.task, out / "examples.png", render)
    return summary


def score_items(model, eval_set, items: list[EvalItem], log: ItemLog, cfg: EvalConfig,
                render=None) -> None:
    """Separate and score every item not yet in the log, one mixture (all its prompts) at a time."""
    position = {it.key: k for k, it in enumerate(items)}
    todo = [it for it in items if it.key not in log]
    if not todo:
        return
    for m, its in by_mixture(eval_set, todo, f"eval {cfg.protocol}"):
        out = run_model(model, m.mixture, m.sources, its)
        for p, it in enumerate(its):
            est, ref = estimate_and_reference(cfg.task, out, p, m.mixture,
                                              m.sources[it.source_index], render)
            row = {**asdict(it), "protocol": cfg.protocol, "task": cfg.task,
                   **score(est, ref, torch.from_numpy(m.mixture))}
            if cfg.visqol and position[it.key] < cfg.visqol_items:
                row["visqol"] = visqol_score(est, ref)
            if cfg.semantic:
                row["semantic"] = semantic(est, it.prompt)
            log.append(row)


def summarize(rows: list[dict], cfg: EvalConfig, eval_set, model) -> dict:
    n_mix = len({r["mixture_id"] for r in rows})
    # empty cells were not computed (ViSQOL beyond its subset); "nan" cells count as NaN
    metrics = {m: describe([_float(r.get(m)) for r in rows if r.get(m, "") != ""]) for m in METRICS}
    n_vq = metrics["visqol"]["n"] + metrics["visqol"]["n_nan"] if cfg.visqol else 0
    if cfg.visqol:
        note = (f"ViSQOL (speech mode, 16 kHz) on the first {min(cfg.visqol_items, len(rows))} of "
                f"{len(rows)} items")
    else:
        note = "ViSQOL not computed (pass --visqol)"
    if not cfg.visqol:
        metrics.pop("visqol")
    if not cfg.semantic:
        metrics.pop("semantic")
    return {"model": cfg.model_label, "model_slug": model_slug(cfg.model),
            "model_fingerprint": model_fingerprint(model),
            "model_step": (getattr(model, "meta", None) or {}).get("step"), "protocol": cfg.protocol,
            "prompt_mode": cfg.prompt_mode, "task": cfg.task, "seed": cfg.seed, "split": cfg.split,
            "reference": cfg.reference, "eval_set": str(eval_set.root), "n_mixtures": n_mix, "n_items": len(rows),
            "targets": PROTOCOL_TARGETS[cfg.protocol], "metrics": metrics, "visqol_items": n_vq,
            "visqol_note": note, "per_class": per_class(rows), "command": cfg.command(),
            "codecsep_version": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_summary(out: Path, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))


def fmt(v, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def summary_markdown(s: dict) -> str:
    lines = [f"# {s['model']} on {s['protocol']} ({s['task']}, {s['prompt_mode']} prompts)", "",
             (f"{s['n_items']} items from {s['n_mixtures']} mixtures of `{s['eval_set']}`. "
              f"{s['visqol_note']}."
              + (f" Scored against {CODEC_REFERENCE}." if s.get("reference") == "codec" else "")), "",
             "| metric | mean | median | 95% CI | n | NaN |",
             "|---|---|---|---|---|---|"]
    for name, d in s["metrics"].items():
        lines.append(f"| {name} | {fmt(d['mean'])} | {fmt(d['median'])} | "
                     f"[{fmt(d['ci95'][0])}, {fmt(d['ci95'][1])}] | {d['n']} | {d['n_nan']} |")
    lines += ["", "| class | SI-SDRi mean | 95% CI | n |", "|---|---|---|---|"]
    for label, d in sorted(s["per_class"].items(), key=lambda kv: -(kv[1]["mean"] or -1e9)):
        lines.append(f"| {label} | {fmt(d['mean'])} | [{fmt(d['ci95'][0])}, {fmt(d['ci95'][1])}]"
                     f" | {d['n']} |")
    return "\n".join(lines + ["", f"Reproduce: `{s['command']}`", ""])


# =============================================================================== plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class(summary: dict, path: Path) -> None:
    """Horizontal bars: mean SI-SDRi per class with bootstrap 95% CI whiskers."""
    plt = _pyplot()
    classes = [(k, d) for k, d in summary["per_class"].items() if d["mean"] is not None]
    classes.sort(key=lambda kv: kv[1]["mean"])
    if not classes:
        return
    means = np.array([d["mean"] for _, d in classes])
    lo = np.array([d["ci95"][0] if d["ci95"][0] is not None else d["mean"] for _, d in classes])
    hi = np.array([d["ci95"][1] if d["ci95"][1] is not None else d["mean"] for _, d in classes])
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.22 * len(classes)))
    ax.barh(range(len(classes)), means, xerr=[means - lo, hi - means], capsize=2, color="tab:blue")
    ax.set_yticks(range(len(classes)), [f"{k} (n={d['n']})" for k, d in classes], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("SI-SDRi (dB), mean and 95% CI")
    ax.set_title(f"{summary['model']} · {summary['protocol']} · {summary['task']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_examples(model, eval_set, items: list[EvalItem], task: str, path: Path,
                  render=None) -> None:
    """Spectrogram panels, one row per item: mixture / estimate / reference."""
    if not items:
        return
    plt = _pyplot()
    fig, axes = plt.subplots(len(items), 3, figsize=(10, 2.2 * len(items)), squeeze=False)
    for row, it in zip(axes, items):
        m = eval_set[it.index]
        out = run_model(model, m.mixture, m.sources, [it])
        est, ref = estimate_and_reference(task, out, 0, m.mixture, m.sources[it.source_index],
                                          render)
        for ax, (title, x) in zip(row, (("mixture", m.mixture), (f"estimate ({it.prompt})", est),
                                        ("reference", ref))):
            db = spectrogram_db(x)
            ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80,
                      extent=(0, len(x) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
            ax.set_title(title[:60], fontsize=8)
            ax.tick_params(labelsize=6)
        row[0].set_ylabel("kHz", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# =============================================================================== CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score a separator on a fixed evaluation set",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=models_help())
    p.add_argument("--protocol", required=True, choices=tuple(PROTOCOL_TARGETS))
    p.add_argument("--eval-dir", default="data/eval", help="evaluation sets (default %(default)s)")
    p.add_argument("--manifest", default="data/corpus/manifest.jsonl",
                   help="corpus manifest whose test split feeds new sets (default %(default)s)")
    p.add_argument("--n", type=positive_int, default=DEFAULT_N,
                   help="mixtures (default %(default)s)")
    p.add_argument("--seed", type=int, default=EVAL_SEED,
                   help="evaluation set seed (default %(default)s, the results' draw; others: "
                        "more draws)")
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="corpus split of the evaluation set (default test; train / valid "
                        "measure the generalisation gap; unseen: effects from packages no other "
                        "split draws on)")
    p.add_argument("--seconds", type=positive_float, metavar="S",
                   help="mixtures S seconds long (a set of its own; short clips are tiled): long "
                        "inputs, which run through crossfaded windows (default: the protocol's 4 s)")
    p.add_argument("--prompt-mode", default="label", choices=PROMPT_MODES,
                   help="label: the class name; caption: a training caption; heldout: a paraphrase "
                        "never trained on (default %(default)s)")
    p.add_argument("--task", default="extract", choices=TASKS,
                   help="extract the prompted source, or remove it (scored on the rest; default "
                        "%(default)s)")
    p.add_argument("--out", help="output folder (default results/eval/<model>/<protocol>-...)")
    p.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=False,
                   help="also compute ViSQOL (speech mode) on the first --visqol-items items")
    p.add_argument("--visqol-items", type=positive_int, default=30,
                   help="score ViSQOL on the first N items only (default %(default)s; it is slow)")
    p.add_argument("--semantic", action=argparse.BooleanOptionalAction, default=False,
                   help="also score every estimate with the aligned audio encoder against its "
                        "prompt (cosine; in removal, the residual against the removed prompt)")
    p.add_argument("--reference", default="clean", choices=REFERENCES,
                   help="score against the clean sources (default) or the model codec's rendition "
                        "of them, decode(encode(source)): Codecformer's codec-SI-SDR, which leaves "
                        "out what the codec cannot render (code streams: at their codebooks)")
    p.add_argument("--anchor-weight", type=float, metavar="W",
                   help="prompt anchoring weight in [0, 1] instead of the checkpoint's (0: off)")
    p.add_argument("--shifts", type=int, metavar="N",
                   help="shifted passes averaged per window instead of the checkpoint's")
    p.add_argument("--members", type=members_arg, metavar="K[,K]",
                   help="of a checkpoint that combines several maskers (mean or median, as it "
                        "says), run only these (1-based, e.g. 1 or 2 or 1,2)")
    p.add_argument("--postfilter", type=postfilter_arg, metavar="N_FFT[,POWER]",
                   help="the waveform post-filter instead of the checkpoint's (0: off)")
    p.add_argument("--overwrite", action="store_true", help="discard previous results in --out")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: items are small, and on a busy machine more "
                        "threads mostly wait on each other)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, args.threads))
    cfg = EvalConfig(model=args.model, protocol=args.protocol, n=args.n,
                     prompt_mode=args.prompt_mode, task=args.task, visqol=args.visqol,
                     visqol_items=args.visqol_items, semantic=args.semantic, seed=args.seed,
                     eval_dir=args.eval_dir, manifest=args.manifest, split=args.split,
                     seconds=args.seconds, reference=args.reference,
                     anchor_weight=args.anchor_weight, shifts=args.shifts, members=args.members,
                     postfilter=args.postfilter)
    out = Path(args.out) if args.out else default_out_dir(cfg)
    s = evaluate(cfg, out, overwrite=args.overwrite)
    m = s["metrics"]["si_sdri"]
    print(f"{s['model']} {s['protocol']} {s['task']} ({s['prompt_mode']}): SI-SDRi "
          f"{fmt(m['mean'])} dB [{fmt(m['ci95'][0])}, {fmt(m['ci95'][1])}] over {m['n']} items "
          f"-> {out}")
    return 0
