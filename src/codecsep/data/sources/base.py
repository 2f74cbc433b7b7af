"""The record every source family yields: one original recording, labelled, before processing."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Recording:
    src: str  # audio file on disk (an unpacked package file, a render, a TTS output)
    label: str
    category: str  # speech | music | sfx
    source: str  # package (or bank / TTS engine) it came from
    source_id: str  # one original recording, speaker or rendered piece: never in two splits
    split_group: str  # the unit the splitter assigns (bank, speaker, package or recording)
    license: str = "unknown"
    split: str | None = None  # fixed by the family (instrument banks, speakers) or None
    start_s: float = 0.0  # part of `src` that is this recording (rendered MIDI pieces)
    end_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable id of this recording's processed output."""
        import hashlib

        text = f"{self.src}|{self.start_s}|{self.end_s}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]
