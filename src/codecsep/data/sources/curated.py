"""Train-only recordings from packages the keyword rules do not cover, named by an explicit table.

`curated.tsv` lists, per package, the files (or archive members, `ARCHIVE::member`) that hold one
sound of a class the corpus already has, with the reason in the survey's review (file and
directory names, the packages' credit files, spectrograms where a name was unclear). Everything
else in those packages is unused, so no class can appear and no valid or test row changes: the
rows all go to TRAIN. Their value is variety: the effect classes had 5-47 training recordings
from 1-3 packages each, and the test (and the hidden) recordings come from other packages.

Each (package, label) contributes at most `MAX_PER_PACKAGE_LABEL` recordings (hash-chosen), so
one game's 29 footstep variants do not become the footsteps class.

`unseen.tsv`, in the same format, names effects recordings from packages that nothing else in
the corpus draws on; they form the `unseen` split (never trained on, and not in valid or test),
which measures how the separators carry over to other sound banks. At most
`MAX_PER_PACKAGE_LABEL_UNSEEN` per (package, label).

Speech: KTuberling's spoken words (`ktuberling-data`), one speaker per language, capped like the
other single-word voices (`speech.cap_per_speaker`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import subprocess
from collections import defaultdict
from pathlib import Path

from .archives import ARCHIVE_READERS, unpack
from .base import Recording
from .debian import AUDIO_EXTENSIONS, ensure_tool, extract, package_license
from .speech import cap_per_speaker, voice

log = logging.getLogger(__name__)

TABLE = Path(__file__).with_name("curated.tsv")
MAX_PER_PACKAGE_LABEL = 12
UNSEEN_TABLE = Path(__file__).with_name("unseen.tsv")
MAX_PER_PACKAGE_LABEL_UNSEEN = 6
KTUBERLING = "ktuberling-data"
KTUBERLING_SOUNDS = "usr/share/ktuberling/sounds"
MAX_PER_SPEAKER = 60


def read_table(path: Path = TABLE) -> dict[str, dict[str, str]]:
    """package -> {path in package: label}, from the tab-separated table (# lines are comments)."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    with open(path) as f:
        for row in csv.reader((line for line in f if line.strip() and not line.startswith("#")),
                              delimiter="\t"):
            package, rel, label = row[:3]
            table[package][rel] = label
    return dict(table)


# audio formats libsndfile cannot read: decoded once to `root/_dec/<path>.wav` by a Debian tool
DECODERS = {".wv": ("wvunpack", "wavpack")}  # WavPack (Teeworlds)


def decode_command(tool: str, src: Path, dest: Path) -> list[str]:
    return [tool, "-q", "-y", str(src), "-o", str(dest)]


def decoded(root: Path, rel: str) -> Path:
    """The WAV decode of a file in a `DECODERS` format (made on first use; missing source: the
    path that does not exist, so the caller reports it)."""
    src, dest = root / rel, root / "_dec" / f"{rel}.wav"
    if not dest.is_file() and src.is_file():
        binary, package = DECODERS[src.suffix.lower()]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp.wav")
        subprocess.run(decode_command(ensure_tool(binary, package), src, tmp), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.replace(tmp, dest)
    return dest


def resolve(root: Path, rel: str) -> Path:
    """The file of a table path; `ARCHIVE::member` lives under `root/_unz/<archive name>/` (zips
    are unpacked there by `debian.extract`, the `archives` formats here, once per archive); a
    file in a `DECODERS` format is decoded to WAV once."""
    if "::" not in rel:
        return decoded(root, rel) if Path(rel).suffix.lower() in DECODERS else root / rel
    archive, member = rel.split("::", 1)
    if (root / archive).is_dir():  # a group shipped unpacked (OpenClonk's Music.ocg)
        return root / archive / member
    dest = root / "_unz" / Path(archive).name
    if Path(archive).suffix.lower() in ARCHIVE_READERS and not (dest / ".done").exists():
        unpack(root / archive, dest)
        (dest / ".done").touch()
    return dest / member


def category_of(label: str) -> str:
    from .instruments import INSTRUMENTS

    return "music" if label in INSTRUMENTS else "sfx"


def table_recordings(package: str, base: Path, table: dict[str, str], lic: str,
                     per_label: int | None = None, split: str = "train") -> list[Recording]:
    """Recordings of `split` for the `table` files present under `base` (source id
    `package:rel`); at most `per_label` per label, chosen by the md5 of the path."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for rel, label in table.items():
        by_label[label].append(rel)
    chosen = []
    for rels in by_label.values():
        chosen += sorted(rels, key=lambda r: hashlib.md5(r.encode()).hexdigest())[:per_label]
    recordings = []
    for rel in sorted(chosen):
        path = resolve(base, rel)
        if not path.is_file():
            log.warning("%s: %s not found", package, rel)
            continue
        recordings.append(Recording(
            src=str(path), label=table[rel], category=category_of(table[rel]), source=package,
            source_id=f"{package}:{rel}", split_group=package, license=lic, split=split))
    return recordings


def ktuberling_speakers(root: Path) -> dict[str, list[Recording]]:
    """KTuberling's words by language directory: speaker `ktuberling-<lang>`."""
    lic = package_license(KTUBERLING, root)
    by_speaker: dict[str, list[Recording]] = {}
    for path in sorted((root / KTUBERLING_SOUNDS).rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
            continue
        lang = path.relative_to(root / KTUBERLING_SOUNDS).parts[0]
        if "@" in lang:  # sr@latin, sr@ijekavian...: copies of another language's recordings
            continue
        speaker = f"ktuberling-{lang}"
        by_speaker.setdefault(speaker, []).append(voice(path, path.name, speaker, KTUBERLING, lic))
    return by_speaker


def tables_recordings(cache: Path, path: Path, per_label: int, split: str) -> list[Recording]:
    """The recordings a table names, package by package (each fetched and unpacked once)."""
    recordings = []
    for package, table in sorted(read_table(path).items()):
        root = extract(package, cache)
        recordings += table_recordings(package, root, table, package_license(package, root),
                                       per_label=per_label, split=split)
    return recordings


def collect(cache: Path, speech: bool = True, sounds: bool = True) -> list[Recording]:
    """Train-only table sounds and voices, then the `unseen` split's recordings (last, so that a
    copy of a recording the corpus already has is the one deduplication drops)."""
    recordings = []
    if sounds:
        recordings += tables_recordings(cache, TABLE, MAX_PER_PACKAGE_LABEL, "train")
    if speech:
        recordings += cap_per_speaker(ktuberling_speakers(extract(KTUBERLING, cache)),
                                      lambda _: MAX_PER_SPEAKER)
    if sounds:
        recordings += tables_recordings(cache, UNSEEN_TABLE, MAX_PER_PACKAGE_LABEL_UNSEEN, "unseen")
    return recordings
