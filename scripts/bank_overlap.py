"""Which General MIDI banks share samples? One note per instrument, rendered dry by every bank.

Packages copy each other's samples (MuseScore General copies most FluidR3 programs; csound's
sf_GMbank is TimGM6mb, our test bank). A bank can only widen training where its samples are its
own and must never bring in the test bank's. For each instrument this renders the same note with
every bank and reports the peak normalised cross-correlation of the waveforms: ~1.0 means the
same sample, below ~0.8 different recordings. Output: a JSON table (and a printed one).

    python scripts/bank_overlap.py --cache data/corpus/cache --out results/corpus/bank_overlap.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from codecsep.audio import load_audio
from codecsep.data.sources.debian import extract
from codecsep.data.sources.instruments import (
    DRUM_CHANNEL,
    INSTRUMENTS,
    TICKS_PER_BEAT,
    Bank,
    bank_programs,
    open_bank,
    render,
)

# the corpus's banks (freepats, a timidity patch set, is left out) and one it must never use
BANK_NAMES = ("fluidr3", "timgm6mb", "musescore", "opl3", "sonivox")
EXTRA_SF2 = {"csound": ("csound-soundfont", "usr/share/sounds/sf2/sf_GMbank.sf2")}


def render_note(bank: Bank, program: int, drums: bool, note: int, tmp: Path) -> np.ndarray:
    import mido

    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    channel = DRUM_CHANNEL if drums else 0
    if not drums:
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    track.append(mido.Message("note_on", channel=channel, note=note, velocity=100, time=10))
    track.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=960))
    track.append(mido.MetaMessage("end_of_track", time=480))
    midi.save(tmp / "note.mid")
    render(bank, tmp / "note.mid", tmp / "note.wav", 16000)
    return load_audio(tmp / "note.wav", 16000, mono=True)[0][0].numpy()[:16000]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Peak |normalised cross-correlation| over all lags."""
    c = np.correlate(a, b, "full")
    return float(np.abs(c).max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="data/corpus/cache")
    ap.add_argument("--out", default="results/corpus/bank_overlap.json")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    banks = {name: open_bank(name, cache) for name in BANK_NAMES}
    banks.update({name: Bank(name, pkg, "sf2", str(extract(pkg, cache) / rel))
                  for name, (pkg, rel) in EXTRA_SF2.items()})
    programs = {name: bank_programs(b) for name, b in banks.items()}
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, inst in INSTRUMENTS.items():
            program = inst.programs[0]
            note = 38 if inst.drums else (inst.low + inst.high) // 2
            notes = {name: render_note(b, program, inst.drums, note, Path(tmp))
                     for name, b in banks.items() if inst.drums or program in programs[name]}
            names = sorted(notes)
            table[label] = {f"{a}~{b}": round(similarity(notes[a], notes[b]), 3)
                            for i, a in enumerate(names) for b in names[i + 1:]}
            print(f"{label:16s} " + "  ".join(f"{k} {v:.2f}" for k, v in table[label].items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"note": "peak normalised cross-correlation of one dry note",
                               "banks": {n: b.package for n, b in banks.items()}, "similarity": table}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
