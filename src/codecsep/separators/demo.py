"""The demo: one shipped three-source mixture, and `run_demo` to separate and score it.

    codecsep demo --make-assets --manifest data/corpus/manifest.jsonl   # builds assets/demo
    codecsep demo                                                       # separates it

`make_demo_assets` draws ONE 16 kHz mixture of an instrument, speech (or an animal) and an effect
from TEST-split clips with the `ThreeSource` protocol and writes it with `write_eval_set` (16-bit
PCM, < 1 MB), so the demo folder is an evaluation set: metadata.csv with mixture, sources,
prompts and gains. `run_demo` separates the mixture with its three prompts in one batched pass,
prints SI-SDR / SI-SDRi per prompt and the real-time factor, and writes the estimates, the
residuals and one spectrogram PNG.

Re-running: when the outputs exist and `overwrite` is False, the demo still separates and
prints its table (it takes seconds), keeps the files that are there and says how to replace
them, and returns 0, so `make demo` can be run again and again.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections import defaultdict
from pathlib import Path

import torch

from ..audio import atomic_write_bytes, resample, save_audio, spectrogram_db
from ..data.manifest import Clip, read_manifest
from ..data.mixtures import (
    EVAL_COLUMNS,
    MULTI_SEP,
    ThreeSource,
    ThreeSourceConfig,
    read_eval_set,
    write_eval_set,
)
from ..errors import CodecSepError
from ..metrics import si_sdr, si_sdr_improvement
from .api import get_separator, slug

DEMO_SECONDS = 6.5  # 4 files x 6.5 s x 16 kHz x 16 bit = 832 kB
MAX_DEMO_BYTES = 1_000_000
# (preferred labels in order, categories to fall back on) for each of the three sources
DEMO_SLOTS = (
    (("piano", "acoustic guitar", "violin", "flute", "trumpet", "saxophone", "cello"), ("music",)),
    (("speech", "dog barking", "birdsong", "cat meowing", "cow", "horse", "sheep"), ("speech",)),
    (("flowing water", "fire", "engine", "machine hum", "saw", "footsteps", "rain"), ("sfx",)),
)
SPECTROGRAM = "spectrograms.png"


# ------------------------------------------------------------------------------ demo assets
def choose_demo_labels(clips: list[Clip]) -> tuple[str, str, str]:
    """Three distinct labels: preferred ones first, else the slot's category, else any label;
    among fallbacks, the label with the most audio."""
    seconds, category = defaultdict(float), {}
    for c in clips:
        seconds[c.label] += c.duration
        category[c.label] = c.category
    by_audio = sorted(seconds, key=lambda lab: (-seconds[lab], lab))
    chosen: list[str] = []
    for preferred, categories in DEMO_SLOTS:
        options = ([lab for lab in preferred if lab in seconds]
                   + [lab for lab in by_audio if category[lab] in categories] + by_audio)
        label = next((lab for lab in options if lab not in chosen), None)
        if label is None:
            raise CodecSepError(f"the demo needs 3 distinct labels in the test split, "
                                f"found {chosen}")
        chosen.append(label)
    return tuple(chosen)


def long_clips(clips: list[Clip], label: str, seconds: float) -> list[Clip]:
    """The label's full-band clips (recorded at >= 16 kHz, not telephone speech) that fill the
    demo, or its longest ones if none does."""
    own = [c for c in clips if c.label == label]
    own = [c for c in own if (c.orig_sample_rate or c.sample_rate) >= 16000] or own
    full = [c for c in own if c.duration >= seconds]
    return full or sorted(own, key=lambda c: -c.duration)[:3]


def make_demo_assets(manifest_path, out_dir, seed: int = 0, seconds: float = DEMO_SECONDS,
                     overwrite: bool = False) -> Path:
    """Write the demo mixture (an eval set of one item) to `out_dir`; returns `out_dir`."""
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    if not manifest_path.is_file():
        raise CodecSepError(f"{manifest_path}: no such manifest")
    clips = read_manifest(manifest_path, split="test")
    labels = choose_demo_labels(clips)
    pool = [c for label in labels for c in long_clips(clips, label, seconds)]
    config = ThreeSourceConfig(duration_s=seconds, level_range_db=(-3.0, 3.0))
    try:
        write_eval_set(ThreeSource(pool, config), 1, out_dir, seed, overwrite=overwrite,
                       subtype="PCM_16")
    except FileExistsError as e:
        raise CodecSepError(f"{e}; pass --overwrite to rebuild the demo") from e
    _relative_clip_paths(out_dir / "metadata.csv", manifest_path.parent)
    _write_credits(out_dir, clips)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"demo mixture: {', '.join(labels)}; {seconds:.1f} s; {size / 1e3:.0f} kB -> {out_dir}")
    if size > MAX_DEMO_BYTES:
        print(f"warning: the demo takes {size / 1e6:.2f} MB (> 1 MB): use a shorter --seconds")
    return out_dir


def _read_rows(metadata: Path) -> list[dict]:
    with open(metadata, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _relative_clip_paths(metadata: Path, root: Path) -> None:
    """Name the source clips relative to the corpus folder: no machine paths in shipped files."""
    rows = _read_rows(metadata)
    for row in rows:
        row["clip_path"] = MULTI_SEP.join(
            os.path.relpath(p, root) for p in row["clip_path"].split(MULTI_SEP) if p)
    with open(metadata, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_credits(out_dir: Path, clips: list[Clip]) -> None:
    """CREDITS.md: where each source clip comes from, and its licence."""
    by_path = {os.path.basename(c.path): c for c in clips}
    lines = ["# Demo mixture: sources and licences", "",
             "| prompt | clip | from | licence | gain (dB) |", "|---|---|---|---|---|"]
    for row in _read_rows(out_dir / "metadata.csv"):
        for p in row["clip_path"].split(MULTI_SEP):
            c = by_path[os.path.basename(p)]
            lines.append(f"| {row['prompt']} | {p} | {c.source} | {c.license} | {row['gain_db']} |")
    (out_dir / "CREDITS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------ running it
def load_demo(demo_dir, sample_rate: int):
    """(mixture (T,), references (K, T), prompts) of the demo, at `sample_rate`."""
    demo_dir = Path(demo_dir)
    if not (demo_dir / "metadata.csv").is_file():
        raise CodecSepError(f"{demo_dir}: no demo mixture (metadata.csv); build one with "
                            "`codecsep demo --make-assets --manifest MANIFEST`")
    item = read_eval_set(demo_dir)[0]
    mix = resample(torch.from_numpy(item.mixture), item.sample_rate, sample_rate)
    refs = resample(torch.from_numpy(item.sources), item.sample_rate, sample_rate)
    return mix, refs, list(item.prompts)


def demo_outputs(out_dir: Path, prompts: list[str]) -> list[Path]:
    names = [n for p in prompts for n in (f"{slug(p)}.wav", f"{slug(p)}_residual.wav")]
    return [out_dir / n for n in (*names, SPECTROGRAM)]


def format_table(prompts, sisdr, sisdri, elapsed: float, seconds: float) -> str:
    width = max(8, *(len(p) for p in prompts))
    lines = [f"{'prompt':<{width}}  {'SI-SDR (dB)':>11}  {'SI-SDRi (dB)':>12}"]
    lines += [f"{p:<{width}}  {s:>11.2f}  {i:>12.2f}" for p, s, i in zip(prompts, sisdr, sisdri)]
    lines.append(f"{'mean':<{width}}  {float(sisdr.mean()):>11.2f}  {float(sisdri.mean()):>12.2f}")
    lines.append(f"real-time factor {elapsed / seconds:.3f}: {seconds:.2f} s of audio in "
                 f"{elapsed:.2f} s, {len(prompts)} prompts in one batched pass")
    return "\n".join(lines)


def run_demo(sep_dir, demo_dir, out_dir, overwrite: bool = False) -> int:
    """Separate the demo mixture, print the scores, write estimates + residuals + a PNG."""
    sep = get_separator(sep_dir)
    sr = sep.sample_rate
    mix, refs, prompts = load_demo(demo_dir, sr)
    cond = sep.embed(prompts)  # outside the timing: the text encoder loads on first use
    start = time.perf_counter()
    out = sep.separate(mix, prompts, cond=cond)
    elapsed = time.perf_counter() - start
    est, residual = out["target"][:, 0], out["residual"][:, 0]  # (P, T)
    sisdr = si_sdr(est, refs)
    sisdri = si_sdr_improvement(est, refs, mix.expand_as(refs))
    step = getattr(sep, "meta", {}).get("step")
    print(f"model: {sep_dir}" + (f" (step {step})" if step is not None else ""))
    print(format_table(prompts, sisdr, sisdri, elapsed, mix.shape[-1] / sr))
    out_dir = Path(out_dir)
    paths = demo_outputs(out_dir, prompts)
    if any(p.exists() for p in paths) and not overwrite:
        print(f"outputs already in {out_dir}: kept them (pass --overwrite to replace them, "
              "or -o DIR to write elsewhere)")
        return 0
    for i in range(len(prompts)):
        save_audio(paths[2 * i], est[i], sr, overwrite=overwrite)
        save_audio(paths[2 * i + 1], residual[i], sr, overwrite=overwrite)
    save_spectrograms(paths[-1], mix, est, refs, prompts, sisdri, sr, overwrite=overwrite)
    print(f"wrote {len(paths)} files to {out_dir}")
    return 0


def save_spectrograms(path: Path, mix, est, refs, prompts, sisdri, sr: int,
                      overwrite: bool = False, range_db: float = 80.0) -> Path:
    """One PNG: the mixture on top, then per prompt its estimate | reference, one colour scale."""
    from matplotlib.figure import Figure

    specs = [spectrogram_db(mix)] + [spectrogram_db(x) for pair in zip(est, refs) for x in pair]
    vmax = max(float(s.max()) for s in specs)
    extent = (0, mix.shape[-1] / sr, 0, sr / 2000)
    fig = Figure(figsize=(11, 2.2 * (len(prompts) + 1)))
    grid = fig.add_gridspec(len(prompts) + 1, 2, hspace=0.6, wspace=0.15, left=0.06, right=0.88,
                            top=0.95, bottom=0.07)
    axes = [fig.add_subplot(grid[0, :])]
    axes += [fig.add_subplot(grid[1 + i // 2, i % 2]) for i in range(2 * len(prompts))]
    titles = ["mixture"]
    for p, gain in zip(prompts, sisdri):
        titles += [f"estimate: {p!r}  (SI-SDRi {float(gain):+.1f} dB)", f"reference: {p!r}"]
    for ax, spec, title in zip(axes, specs, titles):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent,
                          vmin=vmax - range_db, vmax=vmax, cmap="magma")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    axes[-2].set_xlabel("seconds")
    fig.colorbar(image, cax=fig.add_axes((0.9, 0.15, 0.015, 0.7)), label="dB")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return atomic_write_bytes(Path(path), buf.getvalue(), overwrite=overwrite)
