"""Separate every audio file of a folder through the Python API.

    python examples/batch_separate.py recordings/ separated/ --prompt "dog barking"
    python examples/batch_separate.py recordings/ separated/ --prompt "traffic" --task remove

For each input file and prompt it writes `<name>-<prompt>.wav` (the result) and
`<name>-<prompt>-residual.wav` (everything else), at the model's sample rate. Files that cannot
be read are reported and skipped; existing outputs are kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

import codecsep
from codecsep.audio import list_audio_files
from codecsep.errors import CodecSepError
from codecsep.separators.api import get_separator, slug


def output_paths(out_dir: Path, source: Path, prompt: str) -> tuple[Path, Path]:
    stem = f"{source.stem}-{slug(prompt)}"
    return out_dir / f"{stem}.wav", out_dir / f"{stem}-residual.wav"


def separate_file(separator, path: Path, prompts: list[str], out_dir: Path, task: str,
                  overwrite: bool) -> None:
    out = codecsep.separate(path, prompts, model=separator)  # (P, C, T) each, at the model's rate
    sr = out["sample_rate"]
    for i, prompt in enumerate(prompts):
        kept, rest = out["target"][i], out["residual"][i]
        if task == "remove":
            kept, rest = rest, kept
        result_path, residual_path = output_paths(out_dir, path, prompt)
        codecsep.save_audio(result_path, kept, sr, overwrite=overwrite)
        codecsep.save_audio(residual_path, rest, sr, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input_dir", type=Path, help="folder of audio files (wav, flac, ogg, mp3...)")
    p.add_argument("output_dir", type=Path, help="folder for the separated files")
    p.add_argument("--prompt", action="append", required=True,
                   help="sound to separate (repeat for several)")
    p.add_argument("--task", choices=["extract", "remove"], default="extract")
    p.add_argument("--model", default=None, help="separator checkpoint dir (default: shipped)")
    p.add_argument("--recursive", action="store_true", help="also read subfolders")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = p.parse_args(argv)
    try:
        files = list_audio_files(args.input_dir, recursive=args.recursive)
        separator = get_separator(args.model)  # loaded once, reused for every file
    except CodecSepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in tqdm(files, desc="separating", unit="file"):
        try:
            separate_file(separator, path, args.prompt, args.output_dir, args.task, args.overwrite)
        except CodecSepError as e:
            failed += 1
            tqdm.write(f"skipped: {e}")
    print(f"separated {len(files) - failed} of {len(files)} files into {args.output_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
