"""Keep a copy of a training run's exported checkpoint at every step it is written.

A run overwrites its export (`--export DIR`) at every `--ckpt-every` steps; model soups and
tail averages need the snapshots. This watches DIR/meta.json and copies DIR to
`PREFIX_<step>` each time the step changes, until the run's final step is kept.

    python scripts/keep_snapshots.py runs/sep_A/checkpoint runs/snap_A --until 35500 &
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from codecsep.checkpoint import file_sha256


def copy_snapshot(export: Path, prefix: str) -> int | None:
    """Copy `export` to PREFIX_<step>; the step it holds, or None when the copy caught the run
    rewriting it (the copied weights do not match meta.json's sha256): tried again next look."""
    tmp = Path(f"{prefix}_copying")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(export, tmp)
        meta = json.loads((tmp / "meta.json").read_text())
        whole = meta["sha256"] == file_sha256(tmp / "model.safetensors")
    except (OSError, ValueError, KeyError):
        whole = False  # not written yet, or replaced while we copied
    if not whole:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    dest = Path(f"{prefix}_{meta['step']}")
    if dest.exists():
        shutil.rmtree(tmp)
    else:
        tmp.rename(dest)
        print(f"kept {dest}", flush=True)
    return int(meta["step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path, help="the run's export directory (holds meta.json)")
    ap.add_argument("prefix", help="snapshots go to PREFIX_<step>")
    ap.add_argument("--until", type=int, required=True, help="stop once this step is kept")
    ap.add_argument("--poll", type=float, default=20.0, help="seconds between looks")
    args = ap.parse_args()
    last = None
    while True:
        try:
            step = int(json.loads((args.export / "meta.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            step = None  # not written yet, or caught mid-write
        if step is not None and step != last:
            last = copy_snapshot(args.export, args.prefix)
            if last is not None and last >= args.until:
                return
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
