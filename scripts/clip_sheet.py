"""A contact sheet of a corpus split's clips: one small spectrogram per clip, titled by label and
source, grouped by label. For checking by eye what file names claim (e.g. the `unseen` split,
whose labels come from file names in session 25's survey).

    python scripts/clip_sheet.py --manifest data/corpus/manifest.jsonl --split unseen \\
        -o results/corpus/survey-unseen/clips.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from matplotlib.figure import Figure

from codecsep.audio import load_audio, spectrogram_db
from codecsep.data.manifest import read_manifest


def sheet(clips, out: Path, columns: int = 8, max_seconds: float = 4.0) -> Path:
    clips = sorted(clips, key=lambda c: (c.label, c.source, c.path))
    rows = math.ceil(len(clips) / columns)
    fig = Figure(figsize=(2.2 * columns, 1.7 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, clip in zip(axes, clips):
        wav, sr = load_audio(clip.path)
        wav = wav[:, : int(max_seconds * sr)]
        spec = spectrogram_db(wav)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80,
                  vmax=spec.max(), extent=(0, wav.shape[-1] / sr, 0, sr / 2000))
        name = Path(clip.extra.get("orig_path", clip.path)).stem[:18]
        ax.set_title(f"{clip.label}\n{clip.source.removesuffix('-data')}: {name}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(clips):]:
        ax.axis("off")
    fig.savefig(out, dpi=55)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--split", default="unseen")
    ap.add_argument("--label", action="append", help="only these labels (repeatable)")
    ap.add_argument("--columns", type=int, default=8)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    clips = [c for c in read_manifest(a.manifest, split=a.split)
             if not a.label or c.label in a.label]
    print(f"{len(clips)} clips -> {sheet(clips, a.out, a.columns)}")


if __name__ == "__main__":
    main()
