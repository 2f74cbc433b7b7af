"""`codecsep bench codec`: how well a codec reconstructs real audio, how it uses its codebooks,
and what it costs on a CPU.

    codecsep bench codec                                   # shipped Mica codec, 30 clips/category
    codecsep bench codec --codec runs/codec/export --n-per-category 10 --visqol-at 6kbps

Clips: a fixed, deterministic choice from one split of the corpus manifest, per category
(speech, music, sfx): clips at least `seconds` long come first, ordered by a hash of their
source and file name, one clip per source before any second one; each is cropped to its
centred `seconds` (or used whole when shorter, never under 1 s: ViSQOL fails on shorter
signals); silent crops and unreadable files are skipped and listed.

Measured per category (mean, median, 95% CI):
- continuous path `decode(encode(x))`: SI-SDR and ViSQOL (speech mode, 16 kHz);
- bitstream path `decode(dequantize(quantize(encode(x), n)))` for n = 1, 2, 4, ... codebooks
  (bitrate `codec.bitrate(n)`): SI-SDR, and ViSQOL at every n or only at the n nearest 6 kbps;
- codebook usage over all frames of all clips: perplexity exp(H) of each codebook's code
  histogram (1 = one code used, codebook_size = uniform use) and the fraction of codes used;
- cost: GMACs per second of audio of encode, decode, quantize and dequantize
  (`codecsep.flops.macs_per_second`), parameters, and the real-time factor on ONE thread
  (median of `repeats` runs on `rtf_seconds` of audio) from CPU time, which a busy shared
  machine does not inflate (the RTF targets are judged on it), and from the wall clock; beside
  the DAC-16k architecture measured in the same run (random init: cost only; its quality needs
  the official weights).
Writes codec_bench.json, codec_bench.md (with a pass/fail line per target) and codec_bench.png
(the bitrate curve) into `out_dir`, atomically; existing results are kept unless overwrite=True.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shlex
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from .. import __version__
from ..errors import AudioError, CodecSepError, positive_float, positive_int
from ..evaluate import CodecCeiling, describe, fmt
from ..flops import count_parameters, macs_per_second
from ..metrics import si_sdr
from ..timing import real_time_factor

CATEGORIES = ("speech", "music", "sfx")
QUANTIZER_STEPS = (1, 2, 4, 6, 8, 12, 16)
MIN_CLIP_SECONDS = 1.0  # ViSQOL cannot score shorter signals
SILENCE_RMS = 1e-4  # crops quieter than -80 dBFS carry no reference to score against
OUTPUT_FILES = ("codec_bench.json", "codec_bench.md", "codec_bench.png")
DAC_NOTE = ("DAC-16k architecture with random weights: cost only. Its quality cannot be measured "
            "here (the official weights cannot be downloaded on this machine).")


@dataclass(frozen=True)
class Targets:
    gmacs: float = 1.0  # encode + decode, per second of audio
    rtf: float = 0.05  # one thread
    si_sdr: float = 15.0  # continuous path, dB, mean per category
    visqol: float = 4.2  # continuous path, mean per category
    visqol_bitstream: float = 3.8  # at `kbps`, mean per category
    kbps: float = 6.0


@dataclass(frozen=True)
class CodecBenchConfig:
    manifest: str = "data/corpus/manifest.jsonl"
    split: str = "test"
    n_per_category: int = 30
    seconds: float = 4.0
    visqol: bool = True
    visqol_curve: bool = True  # ViSQOL at every bitrate; False: only at the one nearest 6 kbps
    n_quantizers: tuple[int, ...] = QUANTIZER_STEPS
    categories: tuple[str, ...] = CATEGORIES
    rtf_seconds: float = 10.0
    repeats: int = 5
    compare_dac: bool = True
    codec_name: str = "mica"  # how the codec was named: `load_codec` name or checkpoint folder

    def __post_init__(self):
        if self.n_per_category < 1 or self.repeats < 1:
            raise CodecSepError("n_per_category and repeats must be >= 1")
        if self.seconds < MIN_CLIP_SECONDS or self.rtf_seconds <= 0:
            raise CodecSepError(f"seconds must be >= {MIN_CLIP_SECONDS:g} and rtf_seconds > 0")
        if not self.n_quantizers or min(self.n_quantizers) < 1:
            raise CodecSepError(f"n_quantizers must be positive integers, got {self.n_quantizers}")

    def command(self) -> str:
        """The command line that reproduces this benchmark."""
        args = ["codecsep", "bench", "codec", "--codec", self.codec_name, "--manifest",
                self.manifest, "--split", self.split, "--n-per-category",
                str(self.n_per_category), "--seconds", f"{self.seconds:g}",
                "--rtf-seconds", f"{self.rtf_seconds:g}", "--repeats", str(self.repeats),
                "--n-quantizers", *map(str, self.n_quantizers)]
        if not self.visqol:
            args.append("--no-visqol")
        elif not self.visqol_curve:
            args += ["--visqol-at", "6kbps"]
        args += [] if self.compare_dac else ["--no-dac"]
        return shlex.join(args)


# =============================================================================== clips
def clip_order(clips: list, seconds: float) -> list:
    """Clips in benchmark order: clips of at least `seconds` first; within those (and within the
    shorter ones) round-robin over sources, each source's clips and the sources themselves
    ordered by a hash of (source_id, file name), which does not depend on where the corpus is."""
    def digest(c) -> str:
        return hashlib.sha1(f"{c.source_id}/{Path(c.path).name}".encode()).hexdigest()

    keyed, taken = [], Counter()
    for c in sorted(clips, key=lambda c: (c.duration < seconds, digest(c))):
        short = c.duration < seconds
        keyed.append(((short, taken[short, c.source_id], digest(c)), c))
        taken[short, c.source_id] += 1
    return [c for _, c in sorted(keyed, key=lambda kc: kc[0])]


def load_crop(clip, sample_rate: int, seconds: float) -> torch.Tensor:
    """(T,) mono crop of `seconds` centred in the clip (the whole clip when shorter).
    Raises AudioError for unreadable, too short or silent audio."""
    from ..audio import load_audio

    wav, _ = load_audio(clip.path, sample_rate, mono=True)
    wav, size = wav[0], round(seconds * sample_rate)
    if wav.shape[-1] < MIN_CLIP_SECONDS * sample_rate:
        raise AudioError(f"{clip.path}: shorter than {MIN_CLIP_SECONDS:g} s")
    start = max(0, (wav.shape[-1] - size) // 2)
    wav = wav[start : start + size]
    if wav.pow(2).mean().sqrt() < SILENCE_RMS:
        raise AudioError(f"{clip.path}: silent crop")
    return wav


def select_clips(cfg: CodecBenchConfig, sample_rate: int) -> tuple[dict, list[dict]]:
    """{category: [(clip, (T,) crop)]} with up to n_per_category each, and the skipped clips."""
    from ..data.manifest import read_manifest

    if not Path(cfg.manifest).is_file():
        raise CodecSepError(f"{cfg.manifest}: no such manifest")
    clips = [c for c in read_manifest(cfg.manifest, split=cfg.split)
             if c.duration >= MIN_CLIP_SECONDS]
    chosen, skipped = {}, []
    for cat in cfg.categories:
        chosen[cat] = []
        for clip in clip_order([c for c in clips if c.category == cat], cfg.seconds):
            if len(chosen[cat]) == cfg.n_per_category:
                break
            try:
                chosen[cat].append((clip, load_crop(clip, sample_rate, cfg.seconds)))
            except AudioError as e:
                skipped.append({"path": os.path.relpath(clip.path, Path(cfg.manifest).parent),
                                "reason": str(e)})
    if not any(chosen.values()):
        raise CodecSepError(f"{cfg.manifest}: no usable {cfg.split} clips in categories "
                            f"{', '.join(cfg.categories)}")
    return chosen, skipped


# =============================================================================== quality
def _visqol(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> float:
    from ..metrics import visqol

    try:
        return visqol(estimate, reference, sample_rate, mode="speech")
    except (ValueError, IndexError):  # e.g. NaN samples, or a signal ViSQOL cannot patch
        return float("nan")


def nearest_n(codec, ns: tuple[int, ...], kbps: float) -> int:
    """The number of codebooks whose bitrate is closest to `kbps`."""
    return min(ns, key=lambda n: abs(codec.bitrate(n) / 1000 - kbps))


def score(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int, with_visqol: bool):
    """(T,), (T,) -> {"si_sdr", "visqol"} (visqol None when not computed, NaN when it failed)."""
    return {"si_sdr": float(si_sdr(estimate, reference)),
            "visqol": _visqol(estimate, reference, sample_rate) if with_visqol else None}


@torch.inference_mode()
def measure_clip(codec, wav: torch.Tensor, ns: tuple[int, ...], visqol_ns: set) -> tuple:
    """(T,) crop -> (per-clip scores, codes (N_max, F) of all codebooks)."""
    x, sr = wav.reshape(1, 1, -1), codec.sample_rate
    row = {"continuous": score(CodecCeiling(codec).through(x)[0, 0], wav, sr, None in visqol_ns),
           "quantized": {str(n): score(CodecCeiling(codec, n).through(x)[0, 0], wav, sr,
                                       n in visqol_ns) for n in ns}}
    return row, codec.quantize(codec.encode(x), codec.n_codebooks)[0]


def codebook_usage(histogram: torch.Tensor) -> dict:
    """(N, K) code counts -> perplexity exp(H) and fraction of codes used, per codebook."""
    p = histogram.double() / histogram.sum(1, keepdim=True).clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
    return {"perplexity": entropy.exp().tolist(),
            "fraction_used": (histogram > 0).double().mean(1).tolist(),
            "codebook_size": histogram.shape[1], "n_codes": int(histogram[0].sum())}


def measure_quality(codec, chosen: dict, cfg: CodecBenchConfig, ns: tuple[int, ...],
                    visqol_ns: set) -> tuple[list[dict], dict]:
    """Score every chosen crop; returns per-clip rows and the codebook usage."""
    hist = torch.zeros(codec.n_codebooks, codec.codebook_size, dtype=torch.long)
    rows, root = [], Path(cfg.manifest).parent
    bar = tqdm(total=sum(map(len, chosen.values())), desc="codec bench", unit="clip")
    for cat, items in chosen.items():
        for clip, wav in items:
            row, codes = measure_clip(codec, wav, ns, visqol_ns)
            for i, c in enumerate(codes):
                hist[i] += torch.bincount(c, minlength=codec.codebook_size)
            rows.append({"path": os.path.relpath(clip.path, root), "category": cat,
                         "label": clip.label, "source_id": clip.source_id,
                         "seconds": wav.shape[-1] / codec.sample_rate, **row})
            bar.update()
    bar.close()
    return rows, codebook_usage(hist)


def _stats(rows: list[dict], path: tuple[str, ...]) -> dict:
    values = []
    for r in rows:
        for key in path:
            r = r[key]
        values.append(float("nan") if r is None else r)
    return describe(values)


def summarize(rows: list[dict], codec, cfg: CodecBenchConfig, ns: tuple[int, ...]) -> dict:
    """Per-category statistics of the continuous path and of each bitrate."""
    by_cat = {cat: [r for r in rows if r["category"] == cat] for cat in cfg.categories}
    continuous = {cat: {m: _stats(rs, ("continuous", m)) for m in ("si_sdr", "visqol")}
                  for cat, rs in by_cat.items()}
    curve = [{"n_quantizers": n, "kbps": codec.bitrate(n) / 1000,
              "categories": {cat: {m: _stats(rs, ("quantized", str(n), m))
                                   for m in ("si_sdr", "visqol")} for cat, rs in by_cat.items()}}
             for n in ns]
    return {"continuous": continuous, "curve": curve}


# =============================================================================== cost
def _probe(sample_rate: int, seconds: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(1, 1, round(seconds * sample_rate), generator=gen)


def codec_cost(codec, rtf_seconds: float = 10.0, repeats: int = 5) -> dict:
    """Parameters, GMACs per second of audio of each transform (all codebooks), and the RTF on
    one thread of the continuous path and of the bitstream path."""
    codec.eval()
    sr, n = codec.sample_rate, codec.n_codebooks
    with torch.inference_mode():
        wav = _probe(sr, 1.0)
        z = codec.encode(wav)
        codes = codec.quantize(z, n)
        macs = {"encode": macs_per_second(codec.encode, wav, 1.0),
                "decode": macs_per_second(codec.decode, (z, wav.shape[-1]), 1.0),
                "quantize": macs_per_second(codec.quantize, (z, n), 1.0),
                "dequantize": macs_per_second(codec.dequantize, codes, 1.0)}
    long = _probe(sr, rtf_seconds)
    paths = {"continuous": CodecCeiling(codec), "bitstream": CodecCeiling(codec, n)}
    rtf = {name: real_time_factor(partial(path.through, long), rtf_seconds, 1, repeats)
           for name, path in paths.items()}
    g = {k: v / 1e9 for k, v in macs.items()}
    return {"codec_id": codec.codec_id, "params": count_parameters(codec), "gmacs": g,
            "gmacs_continuous": g["encode"] + g["decode"],
            "gmacs_bitstream": sum(g.values()), "n_quantizers": n,
            "kbps": codec.bitrate(n) / 1000, "rtf_1_thread": rtf}


def measure_costs(codec, cfg: CodecBenchConfig) -> list[dict]:
    """Cost rows: the codec under test, then (optionally) the DAC-16k architecture."""
    builders = [(cfg.codec_name, lambda: codec, "")]
    if cfg.compare_dac:
        from .dac import DACCodec

        builders.append(("dac-16k", lambda: DACCodec.from_config("16k"), DAC_NOTE))
    rows = []
    for name, build, note in tqdm(builders, desc="cost", unit="codec"):
        rows.append({"name": name, "note": note, **codec_cost(build(), cfg.rtf_seconds,
                                                              cfg.repeats)})
    return rows


# =============================================================================== targets
def _target(name: str, value, op: str, threshold: float, note: str = "") -> dict:
    ok = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
    return {"target": name, "value": value, "op": op, "threshold": threshold, "pass": ok,
            "note": note}


def target_rows(result: dict, t: Targets = Targets()) -> list[dict]:
    """One pass/fail row per target (pass None = not measured)."""
    cost, point = result["cost"][0], result["target_point"]
    rtf = cost["rtf_1_thread"]
    rows = [_target("encode + decode GMACs/s (continuous path)", cost["gmacs_continuous"], "<=",
                    t.gmacs),
            _target(f"encode + quantize + dequantize + decode GMACs/s ({cost['n_quantizers']} "
                    "codebooks)", cost["gmacs_bitstream"], "<=", t.gmacs),
            *(_target(f"RTF on 1 thread (CPU time), {label}", rtf[path]["cpu"], "<=", t.rtf,
                      f"wall clock {rtf[path]['wall']:.3g} on the shared machine")
              for path, label in (("continuous", "continuous path"),
                                  ("bitstream", "through the bitstream")))]
    for cat, d in result["continuous"].items():
        rows += [_target(f"continuous SI-SDR (dB), {cat}", d["si_sdr"]["mean"], ">=", t.si_sdr),
                 _target(f"continuous ViSQOL, {cat}", d["visqol"]["mean"], ">=", t.visqol)]
    at = next(p for p in result["curve"] if p["n_quantizers"] == point["n_quantizers"])
    note = "" if point["exact"] else f"no {t.kbps:g} kbps setting: nearest is {at['kbps']:g} kbps"
    for cat, d in at["categories"].items():
        rows.append(_target(f"ViSQOL at {at['kbps']:g} kbps ({at['n_quantizers']} codebooks), "
                            f"{cat}", d["visqol"]["mean"] if point["exact"] else None, ">=",
                            t.visqol_bitstream, note))
    return rows


# =============================================================================== report
def _verdict(ok) -> str:
    return {True: "PASS", False: "FAIL", None: "not measured"}[ok]


def _targets_md(result: dict) -> list[str]:
    lines = ["## Targets", "", "| target | measured | required | verdict |", "|---|---|---|---|"]
    for r in result["targets"]:
        value = "–" if r["value"] is None else f"{r['value']:.3g}"
        lines.append(f"| {r['target']} | {value} | {r['op']} {r['threshold']:g} | "
                     f"{_verdict(r['pass'])}{' (' + r['note'] + ')' if r['note'] else ''} |")
    return lines


def _mean_median(d: dict) -> str:
    return f"{fmt(d['mean'])} / {fmt(d['median'])}"


def _quality_md(result: dict) -> list[str]:
    cats = list(result["continuous"])
    head = "| path | kbps | " + " | ".join(f"{c} SI-SDR | {c} ViSQOL" for c in cats) + " |"
    lines = ["## Reconstruction quality (mean / median per category)", "", head,
             "|" + "---|" * (2 + 2 * len(cats))]
    cont = result["continuous"]
    lines.append("| continuous | – | " + " | ".join(
        f"{_mean_median(cont[c]['si_sdr'])} | {_mean_median(cont[c]['visqol'])}" for c in cats)
        + " |")
    for p in result["curve"]:
        d = p["categories"]
        lines.append(f"| {p['n_quantizers']} codebooks | {p['kbps']:g} | " + " | ".join(
            f"{_mean_median(d[c]['si_sdr'])} | {_mean_median(d[c]['visqol'])}" for c in cats)
            + " |")
    counts = ", ".join(f"{c}: {cont[c]['si_sdr']['n']}" for c in cats)
    note = (f"Clips per category: {counts}. SI-SDR in dB (capped at 100); ViSQOL "
            f"{result['visqol']['note']}.")
    return [*lines, "", note]


def _usage_md(result: dict) -> list[str]:
    u = result["codebooks"]
    intro = (f"Over {u['n_codes']} frames of all clips (all {len(u['perplexity'])} codebooks "
             f"of {u['codebook_size']} codes); perplexity = exp(entropy of the code histogram).")
    lines = ["## Codebook usage", "", intro, "", "| codebook | perplexity | codes used |",
             "|---|---|---|"]
    for i, (ppl, used) in enumerate(zip(u["perplexity"], u["fraction_used"]), 1):
        lines.append(f"| {i} | {ppl:.1f} | {100 * used:.1f}% |")
    return lines


def _rtf(d: dict) -> str:
    return f"{d['cpu']:.3g} / {d['wall']:.3g}"


def _cost_md(result: dict) -> list[str]:
    head = ("| codec | params (M) | encode | decode | quantize | dequantize | encode+decode | "
            "through the bitstream | RTF continuous (CPU / wall) | RTF bitstream (CPU / wall) |")
    lines = ["## Cost per second of audio (GMACs/s)", "", head, "|" + "---|" * 10]
    for r in result["cost"]:
        g, rtf = r["gmacs"], r["rtf_1_thread"]
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f} | " + " | ".join(
            f"{g[k]:.3g}" for k in ("encode", "decode", "quantize", "dequantize"))
            + f" | {r['gmacs_continuous']:.3g} | {r['gmacs_bitstream']:.3g} | "
            f"{_rtf(rtf['continuous'])} | {_rtf(rtf['bitstream'])} |")
    m = result["machine"]
    note = (f"GMACs per second of audio (codecsep.flops; the bitstream path with all "
            f"codebooks). RTF = processing time / audio time, median of "
            f"{result['config']['repeats']} runs on {result['config']['rtf_seconds']:g} s on one "
            "thread, from process CPU time (what the wall time is on an idle core) and from the "
            f"wall clock; {m['cpu_count']} CPUs, load average {m['load_average']} at the end.")
    lines += ["", note]
    return lines + [f"- {r['name']}: {r['note']}" for r in result["cost"] if r["note"]]


def bench_markdown(result: dict) -> str:
    c, cfg = result["codec"], result["config"]
    step = c.get("checkpoint", {}).get("step")
    title = (f"# Codec benchmark: {c['name']} ({c['codec_id']}, weights {c['weights_hash']}"
             f"{f', step {step}' if step is not None else ''})")
    intro = (f"Up to {cfg['n_per_category']} clips per category from the `{cfg['split']}` split "
             f"of `{cfg['manifest']}`, centred crops of {cfg['seconds']:g} s (whole clip when "
             f"shorter, >= {MIN_CLIP_SECONDS:g} s); {len(result['skipped'])} clips skipped.")
    lines = [title, "", intro, ""]
    for section in (_targets_md, _quality_md, _usage_md, _cost_md):
        lines += section(result) + [""]
    return "\n".join(lines + [f"Reproduce: `{result['command']}` ({result['date']})", ""])


def plot_curve(result: dict) -> bytes:
    """PNG bytes: SI-SDR and ViSQOL (means) vs kbps, one line per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    kbps = [p["kbps"] for p in result["curve"]]
    for ax, metric, label in zip(axes, ("si_sdr", "visqol"), ("SI-SDR (dB)", "ViSQOL (speech)")):
        for cat in result["continuous"]:
            y = [p["categories"][cat][metric]["mean"] for p in result["curve"]]
            y = [math.nan if v is None else v for v in y]
            if not all(map(math.isnan, y)):
                ax.plot(kbps, y, marker="o", label=cat)
        ax.set(xlabel="kbps", ylabel=label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    t = Targets()
    axes[1].axhline(t.visqol_bitstream, ls="--", c="gray", lw=0.8)
    axes[1].axvline(t.kbps, ls=":", c="gray", lw=0.8)
    fig.suptitle(f"{result['codec']['name']} ({result['codec']['weights_hash']}): quality vs "
                 "bitrate", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _json_safe(x):
    """NaN / inf -> None, recursively, so the JSON is strict."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def check_out_dir(out: Path, overwrite: bool) -> None:
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise CodecSepError(f"{out} already holds {', '.join(existing)}: pass --overwrite "
                            "(overwrite=True) to replace them, or another output folder")


def write_outputs(out: Path, result: dict, overwrite: bool) -> None:
    """codec_bench.png, .md and .json, each written atomically (the JSON last)."""
    from ..audio import atomic_write_bytes

    files = {"codec_bench.png": plot_curve(result),
             "codec_bench.md": bench_markdown(result).encode(),
             "codec_bench.json": json.dumps(_json_safe(result), indent=2, allow_nan=False).encode()}
    for name, data in files.items():
        atomic_write_bytes(out / name, data, overwrite=overwrite)


# =============================================================================== the run
def codec_info(codec, name: str, checkpoint: dict | None = None) -> dict:
    """What identifies the codec under test (plus its checkpoint's meta, when given)."""
    info = {"name": name, "codec_id": codec.codec_id, "weights_hash": codec.weights_hash(),
            **{k: getattr(codec, k) for k in ("sample_rate", "hop_length", "latent_dim",
                                              "n_codebooks", "codebook_size")},
            "params": count_parameters(codec)}
    if checkpoint:
        info["checkpoint"] = {k: checkpoint.get(k) for k in ("step", "sha256", "trained_by")}
    return info


def checkpoint_meta(name: str) -> dict | None:
    """meta.json of the checkpoint folder a codec name points to ("mica" or a folder)."""
    from . import DEFAULT_CODEC

    meta = (DEFAULT_CODEC if name == "mica" else Path(name)) / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def load_with_meta(name: str) -> tuple:
    """(codec, checkpoint meta) by `load_codec` name; the meta is dropped (step unknown) when
    the checkpoint was replaced while loading (the shipped codec is re-exported in training)."""
    from . import load_codec

    before = checkpoint_meta(name)
    codec = load_codec(name)
    return codec, before if before == checkpoint_meta(name) else None


def visqol_info(cfg: CodecBenchConfig, visqol_ns: set, codec) -> dict:
    try:
        from visqol.quality_mapper import has_lattice_runtime

        mapper = "deep lattice" if has_lattice_runtime() else "polynomial"
    except ImportError:
        mapper = None
    where = ("not computed" if not cfg.visqol else "at every bitrate" if cfg.visqol_curve else
             "at " + ", ".join(f"{codec.bitrate(n) / 1000:g} kbps" for n in visqol_ns if n))
    note = (f"in speech mode at 16 kHz ({mapper} mapper), {where}" if cfg.visqol
            else "not computed")
    return {"mode": "speech", "mapper": mapper, "n_quantizers": sorted(n for n in visqol_ns if n),
            "note": note}


def bench_codec(codec, manifest, split: str = "test", n_per_category: int = 30,
                seconds: float = 4.0, visqol: bool = True, out_dir="results/codec_bench", *,
                visqol_curve: bool = True, n_quantizers: tuple[int, ...] = QUANTIZER_STEPS,
                categories: tuple[str, ...] = CATEGORIES, rtf_seconds: float = 10.0,
                repeats: int = 5, compare_dac: bool = True, codec_name: str | None = None,
                checkpoint: dict | None = None, overwrite: bool = False) -> dict:
    """Benchmark `codec` (see the module notes); writes the report into `out_dir` and returns it.
    `codec_name` and `checkpoint` (the meta of the checkpoint it was loaded from) are recorded."""
    cfg = CodecBenchConfig(str(manifest), split, n_per_category, seconds, visqol, visqol_curve,
                           tuple(n_quantizers), tuple(categories), rtf_seconds, repeats,
                           compare_dac, codec_name or codec.codec_id)
    out = Path(out_dir)
    check_out_dir(out, overwrite)  # before the long run, not after it
    codec.eval()
    info = codec_info(codec, cfg.codec_name, checkpoint)  # before the long run: weights may move
    ns = tuple(sorted({n for n in cfg.n_quantizers if n <= codec.n_codebooks}))
    if not ns:
        raise CodecSepError(f"no n_quantizers <= the codec's {codec.n_codebooks} codebooks")
    point = nearest_n(codec, ns, Targets.kbps)
    visqol_ns = set() if not cfg.visqol else {None, *ns} if cfg.visqol_curve else {None, point}
    chosen, skipped = select_clips(cfg, codec.sample_rate)
    rows, usage = measure_quality(codec, chosen, cfg, ns, visqol_ns)
    result = {"codec": info, **run_record(codec, cfg, point, visqol_ns)}
    result.update(clips=rows, skipped=skipped, codebooks=usage, cost=measure_costs(codec, cfg),
                  **summarize(rows, codec, cfg, ns))
    result["targets"] = target_rows(result)
    from ..bench import machine_info

    result["machine"] = machine_info()
    write_outputs(out, result, overwrite)
    return _json_safe(result)


def run_record(codec, cfg: CodecBenchConfig, point: int, visqol_ns: set) -> dict:
    exact = math.isclose(codec.bitrate(point) / 1000, Targets.kbps, rel_tol=0.05)
    return {"config": asdict(cfg),
            "command": cfg.command(), "visqol": visqol_info(cfg, visqol_ns, codec),
            "target_point": {"n_quantizers": point, "kbps": codec.bitrate(point) / 1000,
                             "exact": exact},
            "targets_required": asdict(Targets()), "codecsep_version": __version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# =============================================================================== CLI
def register_codec_bench(subparsers) -> None:
    """Add the `codec` subcommand (wired as `codecsep bench codec`)."""
    from ..data.manifest import SPLITS

    p = subparsers.add_parser("codec", help="codec quality vs bitrate, codebook usage and cost",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="mica",
                   help="'mica' (shipped), a Mica checkpoint folder, or dac-16k:PATH")
    p.add_argument("--manifest", default="data/corpus/manifest.jsonl",
                   help="corpus manifest (default %(default)s)")
    p.add_argument("--split", default="test", choices=SPLITS, help="corpus split (default %(default)s)")
    p.add_argument("--n-per-category", type=int, default=30,
                   help="clips per category: music, speech, effects (default %(default)s)")
    p.add_argument("--seconds", type=positive_float, default=4.0, help="crop length (default 4)")
    p.add_argument("--n-quantizers", type=int, nargs="+", default=list(QUANTIZER_STEPS),
                   help="codebook counts (bitrates) to score (default %(default)s)")
    p.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=True,
                   help="compute ViSQOL (speech mode; ~1 s per clip and bitrate)")
    p.add_argument("--visqol-at", choices=("all", "6kbps"), default="all",
                   help="ViSQOL at every bitrate, or only at the one nearest 6 kbps")
    p.add_argument("--rtf-seconds", type=positive_float, default=10.0,
                   help="audio length for timing")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs (median) after a warm-up")
    p.add_argument("--dac", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the cost of the DAC-16k architecture (~5 min)")
    p.add_argument("--out", default="results/codec_bench", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    p.set_defaults(func=_run_codec_bench)


def _run_codec_bench(args: argparse.Namespace) -> int:
    codec, meta = load_with_meta(args.codec)
    result = bench_codec(
        codec, args.manifest, args.split, args.n_per_category, args.seconds,
        args.visqol, args.out, visqol_curve=args.visqol_at == "all",
        n_quantizers=tuple(args.n_quantizers), rtf_seconds=args.rtf_seconds,
        repeats=args.repeats, compare_dac=args.dac, codec_name=args.codec, checkpoint=meta,
        overwrite=args.overwrite)
    print("\n".join(_targets_md(result)))
    print(f"-> {Path(args.out) / 'codec_bench.md'}")
    return 0
