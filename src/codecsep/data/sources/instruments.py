"""Instrument recordings rendered from General MIDI sound banks.

The builder writes its own MIDI (mido): for each instrument, a set of short pieces (scales,
arpeggios, random walks, chords for polyphonic instruments, drum grooves), in a register that suits
the instrument, with varied tempo, note lengths and velocities, deterministic from a seed. All pieces
of one instrument go into one MIDI file separated by silent gaps, so a bank is loaded once per
instrument; the render is then cut back into pieces at the known times.

Banks are independent recordings: FluidR3_GM (train), freepats through timidity (valid; held-out
FluidR3 melodies for the five programs freepats lacks) and TimGM6mb (test). MuseScore General adds
training timbres only for the instruments whose samples are its own: most of its programs copy
FluidR3 (`scripts/bank_overlap.py` measures this; csound's sf_GMbank copies TimGM6mb, the test
bank, and is never used). The OPL-3 FM bank (synthesised, no samples) adds a third, crude but
independent timbre of every instrument to training. Programs a bank does not
have are never rendered (fluidsynth would substitute a piano). One rendered piece = one source
recording (`source_id` = bank:label:piece).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TICKS_PER_BEAT = 480
MIDI_TEMPO = 500_000  # us per beat (120 bpm): 960 ticks per second, all timing is in seconds
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 // MIDI_TEMPO
GAP_SECONDS = 2.5  # silence between pieces: longer than any release/reverb tail
DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Instrument:
    programs: tuple[int, ...]  # GM program numbers (0-based); one is picked per piece
    low: int  # MIDI note range that suits the instrument
    high: int
    polyphonic: bool = False
    drums: bool = False


INSTRUMENTS: dict[str, Instrument] = {
    "piano": Instrument((0, 1), 36, 96, polyphonic=True),
    "harpsichord": Instrument((6,), 41, 89, polyphonic=True),
    "organ": Instrument((19,), 36, 84, polyphonic=True),
    "accordion": Instrument((21,), 53, 89, polyphonic=True),
    "harmonica": Instrument((22,), 60, 84),
    "acoustic guitar": Instrument((24, 25), 40, 76, polyphonic=True),
    "electric guitar": Instrument((26, 27), 40, 81, polyphonic=True),
    "violin": Instrument((40,), 55, 96),
    "cello": Instrument((42,), 36, 72),
    "double bass": Instrument((43,), 28, 55),
    "harp": Instrument((46,), 36, 91, polyphonic=True),
    "timpani": Instrument((47,), 40, 55),
    "trumpet": Instrument((56,), 55, 82),
    "trombone": Instrument((57,), 40, 70),
    "tuba": Instrument((58,), 29, 58),
    "french horn": Instrument((60,), 41, 77),
    "saxophone": Instrument((65, 66), 49, 80),
    "oboe": Instrument((68,), 58, 89),
    "bassoon": Instrument((70,), 34, 70),
    "clarinet": Instrument((71,), 50, 89),
    "flute": Instrument((73,), 60, 96),
    "xylophone": Instrument((13,), 65, 96),
    "marimba": Instrument((12,), 45, 84),
    "banjo": Instrument((105,), 48, 81, polyphonic=True),
    "sitar": Instrument((104,), 48, 77),
    "bagpipe": Instrument((109,), 55, 77),
    "drum kit": Instrument((0,), 35, 59, drums=True),
}

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}

# (start_s, duration_s, note, velocity)
NoteEvent = tuple[float, float, int, int]


def piece_seed(seed: int, label: str, piece: int) -> int:
    digest = hashlib.sha256(f"{seed}:{label}:{piece}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _scale_notes(inst: Instrument, rng: np.random.Generator) -> list[int]:
    intervals = SCALES[rng.choice(list(SCALES))]
    root = int(rng.integers(0, 12))
    return [n for n in range(inst.low, inst.high + 1) if (n - root) % 12 in intervals]


def _melody(inst: Instrument, rng: np.random.Generator, length: float) -> list[NoteEvent]:
    notes = _scale_notes(inst, rng)
    beat = 60.0 / rng.uniform(60, 170)
    style = rng.choice(["scale", "arpeggio", "walk", "repeat"])
    base_vel = int(rng.integers(50, 115))
    lengths = np.array([0.5, 1.0, 1.0, 1.5, 2.0, 3.0]) * beat
    legato = rng.uniform(0.6, 1.0)
    idx = int(rng.integers(len(notes) // 4, max(len(notes) * 3 // 4, len(notes) // 4 + 1)))
    step = 1 if rng.random() < 0.5 else -1
    events, t = [], 0.0
    while t < length:
        if style == "scale":
            idx += step
        elif style == "arpeggio":
            idx += step * 2
        elif style == "walk":
            idx += int(rng.choice([-3, -2, -1, -1, 1, 1, 2, 3]))
        elif rng.random() < 0.4:  # repeated notes with occasional jumps
            idx += int(rng.integers(-4, 5))
        if idx <= 0 or idx >= len(notes) - 1:
            step = -step
            idx = int(np.clip(idx, 0, len(notes) - 1))
        dur = float(rng.choice(lengths))
        vel = int(np.clip(base_vel + rng.integers(-15, 16), 20, 127))
        events.append((t, max(dur * legato, 0.08), notes[idx], vel))
        t += dur
    return events


def _chords(inst: Instrument, rng: np.random.Generator, length: float) -> list[NoteEvent]:
    notes = _scale_notes(inst, rng)
    beat = 60.0 / rng.uniform(60, 140)
    broken = rng.random() < 0.5
    base_vel = int(rng.integers(45, 110))
    events, t = [], 0.0
    top = max(len(notes) - 5, 1)
    while t < length:
        i = int(rng.integers(0, top))
        chord = [notes[min(i + k, len(notes) - 1)] for k in (0, 2, 4)]
        dur = float(rng.choice([1.0, 2.0, 2.0, 4.0])) * beat
        vel = int(np.clip(base_vel + rng.integers(-10, 11), 20, 127))
        for j, n in enumerate(chord):
            offset = j * dur / 4 if broken else 0.0
            events.append((t + offset, dur - offset, n, vel))
        t += dur
    return events


def _drums(rng: np.random.Generator, length: float) -> list[NoteEvent]:
    kick, snare = int(rng.choice([35, 36])), int(rng.choice([38, 40]))
    hat = int(rng.choice([42, 44, 46, 51]))
    beat = 60.0 / rng.uniform(70, 170)
    sixteenth = beat / 4
    kick_pattern = rng.random(16) < np.array([0.95, 0, .1, .1, 0, 0, .3, 0] * 2)
    snare_pattern = np.zeros(16, bool)
    snare_pattern[[4, 12]] = True
    snare_pattern |= rng.random(16) < 0.06
    hat_every = int(rng.choice([1, 2, 2, 4]))
    events, t, step = [], 0.0, 0
    while t < length:
        s = step % 16
        vel = int(rng.integers(70, 120))
        if kick_pattern[s]:
            events.append((t, 0.1, kick, vel))
        if snare_pattern[s]:
            events.append((t, 0.1, snare, vel))
        if s % hat_every == 0:
            events.append((t, 0.05, hat, int(rng.integers(40, 90))))
        if s == 0 and step // 16 % 4 == 3:  # a crash or a tom fill every fourth bar
            events.append((t, 0.3, int(rng.choice([49, 57, 45, 48, 50])), vel))
        t += sixteenth
        step += 1
    return events


def piece_events(label: str, seed: int, piece: int) -> tuple[int, list[NoteEvent]]:
    """(program, notes) of one piece: deterministic from (seed, label, piece)."""
    inst = INSTRUMENTS[label]
    rng = np.random.default_rng(piece_seed(seed, label, piece))
    program = int(rng.choice(inst.programs))
    length = float(rng.uniform(5.0, 9.5))
    if inst.drums:
        return program, _drums(rng, length)
    if inst.polyphonic and rng.random() < 0.5:
        return program, _chords(inst, rng, length)
    return program, _melody(inst, rng, length)


def write_midi(label: str, seed: int, pieces: list[int], path: Path) -> list[tuple[int, float, float]]:
    """Write all `pieces` of `label` into one MIDI file; return (piece, start_s, end_s) spans."""
    import mido

    inst = INSTRUMENTS[label]
    channel = DRUM_CHANNEL if inst.drums else 0
    timed: list[tuple[int, int, mido.Message]] = []  # (tick, order, message)
    spans, t0 = [], 0.5
    for piece in pieces:
        program, events = piece_events(label, seed, piece)
        start_tick = round(t0 * TICKS_PER_SECOND)
        if not inst.drums:
            timed.append((start_tick, 0, mido.Message("program_change", channel=channel,
                                                       program=program)))
        end = t0
        for start, dur, note, vel in events:
            on, off = t0 + start, t0 + start + dur
            timed.append((round(on * TICKS_PER_SECOND), 2,
                          mido.Message("note_on", channel=channel, note=note, velocity=vel)))
            timed.append((round(off * TICKS_PER_SECOND), 1,
                          mido.Message("note_off", channel=channel, note=note, velocity=0)))
            end = max(end, off)
        spans.append((piece, t0, end))
        t0 = end + GAP_SECONDS
    timed.sort(key=lambda x: (x[0], x[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO, time=0))
    last = 0
    for tick, _, msg in timed:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=round(GAP_SECONDS * TICKS_PER_SECOND)))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)
    return spans


@dataclass(frozen=True)
class Bank:
    name: str  # short id used in source ids: fluidr3, timgm6mb, freepats
    package: str
    kind: str  # "sf2" (fluidsynth), "timidity" or "sonivox" (its shared library, through ctypes)
    file: str  # sf2 path, timidity cfg path or libsonivox.so path


def render(bank: Bank, midi: Path, wav: Path, sample_rate: int = 16000) -> None:
    """Render `midi` with `bank` into a wav at `sample_rate` (no chorus/reverb: dry sources)."""
    tmp = wav.with_suffix(".tmp.wav")
    if bank.kind == "sonivox":
        from .sonivox import render_to_wav

        render_to_wav(bank.file, midi, tmp, sample_rate)
    else:
        if bank.kind == "sf2":
            cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6",
                   "-r", str(sample_rate), "-F", str(tmp), bank.file, str(midi)]
        else:
            cmd = ["timidity", "-c", bank.file, "-Ow", "-s", str(sample_rate), "-EFreverb=0",
                   "-EFchorus=0", "--preserve-silence", "-o", str(tmp), str(midi)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp.replace(wav)


# ---------------------------------------------------------------- collection -------------------

SEED = 1234
# (bank, split, piece ids): train and valid melodies are disjoint; test and valid use other banks.
# freepats lacks some GM programs (harmonica, double bass, marimba, banjo, bagpipe): for those,
# valid falls back to held-out melodies of the train bank ("fluidr3" valid).
PLAN = (
    ("fluidr3", "train", tuple(range(0, 42))),
    ("freepats", "valid", tuple(range(1000, 1006))),
    ("fluidr3", "valid", tuple(range(1000, 1006))),
    ("timgm6mb", "test", tuple(range(2000, 2012))),
    ("musescore", "train", tuple(range(3000, 3042))),
    ("opl3", "train", tuple(range(4000, 4042))),
    ("sonivox", "train", tuple(range(5000, 5042))),
)
# Banks that only render some instruments. MuseScore General Lite: the programs whose single-note
# render correlates < 0.9 with FluidR3's and < 0.8 with TimGM6mb's (results/corpus/bank_overlap.json).
BANK_LABELS = {
    "musescore": ("piano", "violin", "cello", "oboe", "clarinet", "sitar", "timpani", "flute"),
}
BANK_PACKAGES = {
    "fluidr3": ("fluid-soundfont-gm", "usr/share/sounds/sf2/FluidR3_GM.sf2", "MIT"),
    "timgm6mb": ("timgm6mb-soundfont", "usr/share/sounds/sf2/TimGM6mb.sf2", "GPL-2"),
    "freepats": ("freepats", "etc/timidity/freepats.cfg", "GPL-2+ (freepats)"),
    "musescore": ("musescore-general-soundfont-small",
                  "usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "MIT"),
    "opl3": ("opl3-soundfont", "usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "CC-BY-SA-4.0"),
    "sonivox": ("libsonivox3", "usr/lib/*/libsonivox.so.3", "Apache-2.0"),
}


def open_bank(name: str, cache: Path) -> Bank:
    """The bank `name` of BANK_PACKAGES, its package unpacked into `cache`."""
    from .debian import ensure_tool, extract

    package, rel, _ = BANK_PACKAGES[name]
    root = extract(package, cache)
    if name == "sonivox":
        from .sonivox import library_path

        return Bank(name, package, "sonivox", str(library_path(root)))
    if name != "freepats":
        return Bank(name, package, "sf2", str(root / rel))
    ensure_tool("timidity")
    cfg = Path(cache) / "render" / "freepats.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"dir {root / 'usr/share/midi/freepats'}\nsource {root / rel}\n")
    return Bank(name, package, "timidity", str(cfg))


def sf2_programs(path: str) -> set[int]:
    """Melodic (bank 0) presets of an sf2 file, read from its `phdr` chunk (38-byte records)."""
    import struct

    data = Path(path).read_bytes()
    at = data.find(b"phdr")
    size = struct.unpack("<I", data[at + 4: at + 8])[0]
    programs = set()
    for k in range(size // 38 - 1):  # the last record is the terminal "EOP"
        program, bank = struct.unpack("<HH", data[at + 8 + k * 38 + 20: at + 8 + k * 38 + 24])
        if bank == 0:
            programs.add(program)
    return programs


def bank_programs(bank: Bank) -> set[int]:
    """GM programs of bank 0 the bank really has: fluidsynth would substitute a piano for the
    others, timidity would play nothing, so instruments outside this set are not rendered.
    Sonivox's built-in set is a complete General MIDI bank (all 128 programs)."""
    if bank.kind == "sonivox":
        return set(range(128))
    if bank.kind == "sf2":
        return sf2_programs(bank.file)
    text = Path(bank.file).read_text().splitlines()
    source = next(line.split(None, 1)[1] for line in text if line.startswith("source"))
    programs, in_bank = set(), False
    for line in Path(source).read_text().splitlines():
        words = line.split()
        if words[:2] == ["bank", "0"]:
            in_bank = True
        elif words[:1] in (["bank"], ["drumset"]):
            in_bank = False
        elif in_bank and words and words[0].isdigit():
            programs.add(int(words[0]))
    return programs


def _covered(bank: Bank, label: str) -> bool:
    inst = INSTRUMENTS[label]
    return inst.drums or set(inst.programs) <= _programs_cached(bank)


_PROGRAMS: dict[str, set[int]] = {}


def _programs_cached(bank: Bank) -> set[int]:
    if bank.file not in _PROGRAMS:
        _PROGRAMS[bank.file] = bank_programs(bank)
    return _PROGRAMS[bank.file]


def _render_job(args) -> tuple[str, str, list]:
    bank, label, pieces, out_dir = args
    out = Path(out_dir)
    stem = _file_stem(label, len(pieces))
    meta = out / f"{stem}.json"
    if meta.exists():
        return bank.name, label, json.loads(meta.read_text())
    midi = out / f"{stem}.mid"
    spans = write_midi(label, SEED, list(pieces), midi)
    render(bank, midi, out / f"{stem}.wav")
    meta.write_text(json.dumps(spans))
    return bank.name, label, spans


def _file_stem(label: str, n_pieces: int | None = None) -> str:
    stem = label.replace(" ", "_")
    return stem if n_pieces is None else f"{stem}_{n_pieces}"


def collect(cache: Path, workers: int = 2, limit: int | None = None) -> list:
    """Render every (bank, instrument) once and return one Recording per piece."""
    from concurrent.futures import ProcessPoolExecutor

    from .base import Recording
    from .debian import ensure_tool

    ensure_tool("fluidsynth")
    jobs, split_of = [], {}
    covered_valid: set[str] = set()
    for bank_name, split, pieces in PLAN:
        bank = open_bank(bank_name, cache)
        pieces = pieces[:limit] if limit else pieces
        for label in INSTRUMENTS:
            if not _covered(bank, label) or label not in BANK_LABELS.get(bank_name, (label,)):
                continue
            if split == "valid" and label in covered_valid:
                continue  # valid already comes from an independent bank
            if split == "valid":
                covered_valid.add(label)
            out_dir = Path(cache) / "render" / f"{bank_name}-{split}"
            out_dir.mkdir(parents=True, exist_ok=True)
            jobs.append((bank, label, pieces, str(out_dir)))
            split_of[(bank_name, label, out_dir.name)] = split
    with ProcessPoolExecutor(max_workers=max(1, min(workers, 2))) as pool:
        rendered = list(pool.map(_render_job, jobs))
    recordings = []
    for (bank, label, pieces, out_dir), (_, _, spans) in zip(jobs, rendered):
        split = split_of[(bank.name, label, Path(out_dir).name)]
        wav = Path(out_dir) / f"{_file_stem(label, len(pieces))}.wav"
        for piece, start, end in spans:
            recordings.append(Recording(
                src=str(wav), label=label, category="music", source=bank.package,
                source_id=f"{bank.name}:{_file_stem(label)}:p{piece:04d}",
                split_group=f"{bank.name}-{split}", license=BANK_PACKAGES[bank.name][2],
                split=split, start_s=max(start - 0.05, 0.0), end_s=end + 1.5,
                extra={"bank": bank.name, "piece": piece},
            ))
    return recordings
