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
            time.sleep(2.0)  # let the writer finish the weights after meta.json
            dest = Path(f"{args.prefix}_{step}")
            if not dest.exists():
                shutil.copytree(args.export, dest)
                print(f"kept {dest}", flush=True)
            last = step
            if step >= args.until:
                return
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
