"""Tux Paint's stamp sounds (`tuxpaint-stamps-default`, GPL-2+): training-only recordings.

Each stamp may carry a sound (a real recording: an animal, a tool, an instrument) and spoken
descriptions, one per translation (`<stamp>_desc_<lang>.ogg`; `<stamp>_desc.ogg` is English).
Both go into TRAIN only, so no valid or test row of the corpus changes:

- Effects and instruments: an explicit file -> label table for the classes the corpus already
  has (cow, sheep, horse, ...). Files the table does not name are not used, so no new class can
  appear (a new class would bring valid and test rows with it).
- Speech: one speaker per language (assumed: each translation team records its own), capped at
  `MAX_PER_SPEAKER` hash-chosen words so these short single words do not swamp the sentences
  of the other speech sources.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Recording
from .curated import table_recordings
from .debian import extract, package_license
from .speech import cap_per_speaker, voice

PACKAGE = "tuxpaint-stamps-default"
STAMPS = "usr/share/tuxpaint/stamps"
MAX_PER_SPEAKER = 60

# path under STAMPS -> corpus label (only classes the corpus already has)
SOUNDS = {
    "animals/mammals/bovines/cow.ogg": "cow",
    "animals/mammals/bovines/cow_white.ogg": "cow",
    "animals/mammals/bovines/bull.ogg": "cow",
    "animals/mammals/bovines/sheep.ogg": "sheep",
    "animals/mammals/bovines/sheep_lamb.ogg": "sheep",
    "animals/mammals/bovines/ram.ogg": "sheep",
    "animals/mammals/bovines/goat.ogg": "sheep",
    "animals/mammals/bovines/mountaingoat.ogg": "sheep",
    "animals/mammals/equines/horse.ogg": "horse",
    "animals/mammals/elephant.ogg": "elephant",
    "animals/birds/blackbird.ogg": "birdsong",
    "animals/birds/lark.ogg": "birdsong",
    "animals/birds/cuckoo.ogg": "birdsong",
    "household/tools/saw.ogg": "saw",
    "household/tools/hammer.ogg": "hammering",
    "household/tools/mallet_metal.ogg": "hammering",
    "household/vacuum_cleaner.ogg": "machine hum",
    "household/Washing-machine.ogg": "machine hum",
    "seasonal/newyears/fireworks.ogg": "explosion",
    "hobbies/music/string/cello.ogg": "cello",
    "hobbies/music/string/violin.ogg": "violin",
    "hobbies/music/wind/bassoon.ogg": "bassoon",
    "hobbies/music/percussion/drumkit.ogg": "drum kit",
}
DESCRIPTION = re.compile(r"_desc(?:_([a-z]{2}(?:_[a-zA-Z]{2})?))?\.ogg$")


def speaker_of(rel: str) -> str | None:
    """`tuxpaint-<lang>` for a spoken stamp description, None for anything else."""
    m = DESCRIPTION.search(rel)
    return None if m is None else f"tuxpaint-{m.group(1) or 'en'}"


def collect(cache: Path, speech: bool = True, sounds: bool = True) -> list[Recording]:
    """Train-only recordings: the labelled stamp sounds and/or the spoken descriptions."""
    root = extract(PACKAGE, cache)
    base = root / STAMPS
    lic = package_license(PACKAGE, root)
    recordings = []
    if sounds:
        recordings += table_recordings(PACKAGE, base, SOUNDS, lic)
    if speech:
        by_speaker: dict[str, list[Recording]] = {}
        for path in sorted(base.rglob("*.ogg")):
            rel = str(path.relative_to(base))
            speaker = speaker_of(rel)
            if speaker is not None:
                by_speaker.setdefault(speaker, []).append(voice(path, rel, speaker, PACKAGE, lic))
        recordings += cap_per_speaker(by_speaker, lambda _: MAX_PER_SPEAKER,
                                      key=lambda r: r.source_id.split(":", 1)[1])
    return recordings
