"""Offline tests of the corpus builder: label rules, splits, MIDI, dedup, trimming, captions."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from codecsep.data import corpus
from codecsep.data.captions import CAPTIONS, PARAPHRASES_HELDOUT
from codecsep.data.sources import instruments, processing, sfx, speech
from codecsep.data.sources.base import Recording
from codecsep.data.sources.processing import ProcessResult, TARGET_SR

REAL_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "corpus" / "manifest.jsonl"


# ------------------------------------------------------------------ label rules ---------------

@pytest.mark.parametrize("package, path, label", [
    ("0ad-data", "/_unz/public.zip/audio/resource/lumbering/lumber_tree_14.ogg", "axe chopping"),
    ("0ad-data", "/_unz/public.zip/audio/resource/lumbering/lumber_treeexpire_01.ogg", None),
    ("0ad-data", "/_unz/public.zip/audio/actor/fauna/death/death_horse_12.ogg", "horse"),
    ("0ad-data", "/_unz/public.zip/audio/actor/human/death/male_death_30.ogg", "scream"),
    ("0ad-data", "/_unz/public.zip/audio/attack/impact/arrow_metal_13.ogg", "sword clash"),
    ("0ad-data", "/_unz/public.zip/audio/attack/impact/arrow_wood_13.ogg", "bow and arrow"),
    ("0ad-data", "/_unz/public.zip/audio/voice/latin/civ/civ_male_hello_1.ogg", None),
    ("0ad-data", "/_unz/public.zip/audio/interface/alarm/alarmvictory.ogg", None),
    ("warmux-data", "/usr/share/games/warmux/sound/default/voices/fire1.ogg", None),
    ("warmux-data", "/usr/share/games/warmux/sound/default/voices/injured_light5.ogg", "scream"),
    ("warmux-data", "/usr/share/games/warmux/sound/default/weapons/explosion3.ogg", "explosion"),
    ("warmux-data", "/usr/share/games/warmux/sound/default/weapons/disco_grenade_music.ogg",
     None),
    ("wesnoth-1.16-data", "/usr/share/games/wesnoth/1.16/data/core/sounds/human-die-2.ogg",
     "scream"),
    ("wesnoth-1.16-data", "/usr/share/games/wesnoth/1.16/data/core/sounds/wolf-growl-3.ogg",
     "wolf"),
    ("bucklespring-data", "/usr/share/bucklespring/wav/1c-1.wav", "keyboard typing"),
    ("hedgewars-data", "/usr/share/games/hedgewars/Data/Sounds/voices/Pirate/Yessir.ogg", None),
    ("lincity-ng-data", "/usr/share/games/lincity-ng/sounds/Blacksmith1.wav", "hammering"),
    ("widelands-data", "/usr/share/games/widelands/data/sound/animals/bird4_02.ogg", "birdsong"),
    ("tuxtype-data", "/usr/share/tuxtype/sounds/amidst_the_raindrops.ogg", None),
])
def test_label_rules(package, path, label):
    assert sfx.label_of(package, path) == label


def test_every_rule_label_has_captions():
    for rule in sfx.RULES:
        assert rule.label == "_skip" or rule.label in CAPTIONS
    for label in instruments.INSTRUMENTS:
        assert label in CAPTIONS


@pytest.mark.parametrize("package, path, speaker", [
    ("fillets-ng-data-nl", "/usr/share/games/fillets-ng/sound/wreck/nl/pot-m-klob.ogg",
     "fillets-nl-m"),
    ("fillets-ng-data", "/usr/share/games/fillets-ng/sound/city/en/vit-x-beg.ogg", None),
    ("hedgewars-data", "/usr/share/games/hedgewars/Data/Sounds/voices/Pirate/Traitor.ogg",
     "hedgewars-Pirate"),
    ("asterisk-core-sounds-es-wav", "/usr/share/asterisk/sounds/es_MX_f_Allison/digits/1.wav",
     "asterisk-allison"),
    ("asterisk-core-sounds-en-wav", "/usr/share/asterisk/sounds/en/silence/1.wav", None),
    ("0ad-data", "/_unz/public.zip/audio/voice/greek/civ/civ_female_hello_1.ogg",
     "0ad-greek-female"),
])
def test_speaker_ids(package, path, speaker):
    assert speech.speaker_of(package, path) == speaker


def test_test_speakers_are_not_train_speakers():
    held_out = {s for s, split in speech.SPEAKER_SPLITS.items() if split != "train"}
    assert "asterisk-allison" not in held_out  # Allison (en + es) is one train speaker
    assert {"fillets-nl-v", "asterisk-it-carlo"} <= held_out


# ------------------------------------------------------------------ splits --------------------

def _rec(label, package, name, split=None, group=None):
    return Recording(src=f"/x/{package}/{name}", label=label, category="sfx", source=package,
                     source_id=f"{package}:{name}", split_group=group or package, split=split)


def _synthetic_recordings():
    recs = []
    for i in range(30):  # one-package class: split by recording
        recs.append(_rec("keyboard typing", "bucklespring-data", f"k{i}.wav"))
    sizes = {"0ad-data": 20, "warmux-data": 6, "wesnoth-1.16-data": 5, "netpanzer-data": 3,
             "freeciv-data": 2}
    for pkg, n in sizes.items():  # several packages: split by package
        recs += [_rec("explosion", pkg, f"e{i}.ogg") for i in range(n)]
    recs += [_rec("speech", "fillets", f"s{i}.ogg", "train", "fillets-en-m") for i in range(5)]
    recs += [_rec("speech", "fillets", f"t{i}.ogg", "test", "fillets-nl-m") for i in range(5)]
    return recs


def _assert_disjoint_sources(pairs):
    splits_of = defaultdict(set)
    for source_id, split in pairs:
        splits_of[source_id].add(split)
    leaked = {s: sp for s, sp in splits_of.items() if len(sp) > 1}
    assert not leaked, f"source ids in several splits: {list(leaked.items())[:5]}"


def test_split_assignment_synthetic():
    recs = _synthetic_recordings()
    splits = corpus.assign_splits(recs)
    _assert_disjoint_sources((r.source_id, splits[r.key]) for r in recs)
    per_label = defaultdict(set)
    for r in recs:
        per_label[r.label].add(splits[r.key])
    for label, s in per_label.items():
        assert {"train", "test"} <= s, label
    # whole packages stay together for the multi-package class
    by_pkg = defaultdict(set)
    for r in recs:
        if r.label == "explosion":
            by_pkg[r.source].add(splits[r.key])
    assert all(len(s) == 1 for s in by_pkg.values())
    assert corpus.assign_splits(recs) == splits  # deterministic


def test_split_by_recordings_proportions():
    assign = corpus._split_by_recordings([f"r{i}" for i in range(100)])
    counts = {s: list(assign.values()).count(s) for s in ("train", "valid", "test")}
    assert counts == {"train": 70, "valid": 10, "test": 20}


def test_real_manifest_has_no_source_in_two_splits():
    if not REAL_MANIFEST.exists():
        pytest.skip("no built corpus at data/corpus")
    from codecsep.data.manifest import read_manifest

    clips = read_manifest(REAL_MANIFEST)
    _assert_disjoint_sources((c.source_id, c.split) for c in clips)
    per_label = defaultdict(set)
    for c in clips:
        per_label[c.label].add(c.split)
        assert set(c.captions).isdisjoint(PARAPHRASES_HELDOUT.get(c.label, []))
    assert all({"train", "test"} <= s for s in per_label.values())


# ------------------------------------------------------------------ MIDI ----------------------

def test_midi_is_deterministic(tmp_path):
    a = instruments.write_midi("violin", 7, [0, 1, 2], tmp_path / "a.mid")
    b = instruments.write_midi("violin", 7, [0, 1, 2], tmp_path / "b.mid")
    assert a == b
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    c = instruments.write_midi("violin", 8, [0, 1, 2], tmp_path / "c.mid")
    assert (tmp_path / "c.mid").read_bytes() != (tmp_path / "a.mid").read_bytes()


def test_midi_pieces_do_not_overlap_and_stay_in_range(tmp_path):
    for label, inst in instruments.INSTRUMENTS.items():
        spans = instruments.write_midi(label, 0, [0, 1, 2, 3], tmp_path / "x.mid")
        for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
            assert start - end >= instruments.GAP_SECONDS - 1e-6
        if not inst.drums:
            for piece in range(4):
                _, events = instruments.piece_events(label, 0, piece)
                notes = [n for _, _, n, _ in events]
                assert inst.low <= min(notes) and max(notes) <= inst.high, label


# ------------------------------------------------------------------ processing -----------------

def _tone(seconds, sr=TARGET_SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_trim_silence_removes_leading_and_trailing_silence():
    x = np.concatenate([np.zeros(TARGET_SR), _tone(1.0), np.zeros(2 * TARGET_SR)])
    y = processing.trim_silence(x)
    assert abs(len(y) / TARGET_SR - 1.0) < 0.15


def test_process_audio_checks():
    status, clips = processing.process_audio(np.zeros(TARGET_SR * 2, np.float32), TARGET_SR)
    assert status == "near-silent" and not clips
    status, clips = processing.process_audio(_tone(0.1), TARGET_SR)
    assert status.startswith("too short") and not clips
    status, clips = processing.process_audio(_tone(0.3), TARGET_SR)  # padded to 0.5 s
    assert status == "ok" and len(clips[0]) == TARGET_SR // 2
    status, clips = processing.process_audio(_tone(25.0, sr=22050), 22050)  # resampled and cut
    assert status == "ok" and len(clips) == 3
    assert all(len(c) <= 10 * TARGET_SR for c in clips)


def test_deduplicate_by_md5_and_envelope():
    recs = [_rec("explosion", "freeciv-data", "a.ogg"), _rec("explosion", "warzone", "a.ogg"),
            _rec("explosion", "tuxmath", "b.wav"), _rec("explosion", "tuxtype", "c.wav")]
    env_a = processing.envelope_hash(_tone(1.0))
    results = [ProcessResult("ok", "m1", env_a, clips=[]), ProcessResult("ok", "m1", "e2", clips=[]),
               ProcessResult("ok", "m3", env_a, clips=[]), ProcessResult("ok", "m4", "e4", clips=[])]
    dropped = []
    kept = corpus.deduplicate(recs, results, dropped)
    assert [r.source for r, _ in kept] == ["freeciv-data", "tuxtype"]
    assert len(dropped) == 2


def test_envelope_hash_matches_copies_and_separates_takes():
    x = _tone(1.0) * np.linspace(0, 1, TARGET_SR, dtype=np.float32)
    assert processing.envelope_hash(x) == processing.envelope_hash(x * 0.5)
    assert processing.envelope_hash(x) != processing.envelope_hash(x[::-1].copy())


# ------------------------------------------------------------------ captions ------------------

def test_captions_and_heldout_paraphrases():
    assert set(CAPTIONS) == set(PARAPHRASES_HELDOUT)
    for label, caps in CAPTIONS.items():
        assert len(set(caps)) >= 4, label
        held = PARAPHRASES_HELDOUT[label]
        assert len(set(held)) >= 2, label
        assert not set(held) & set(caps), label
    all_train = {c for caps in CAPTIONS.values() for c in caps}
    assert not all_train & {p for ps in PARAPHRASES_HELDOUT.values() for p in ps}


def test_non_speech_in_voice_packs_is_excluded():
    assert speech.speaker_of("hedgewars-data", "/x/Sounds/voices/Default/Ow1.ogg") is None
    assert speech.speaker_of("asterisk-core-sounds-en-wav", "/x/en/beep.wav") is None
    assert sfx.label_of("hedgewars-data", "/x/Sounds/voices/Default/Ow1.ogg") == "scream"
    assert sfx.label_of("hedgewars-data", "/x/Sounds/voices/Default/Laugh.ogg") == "laughter"


def test_sf2_preset_reader(tmp_path):
    import struct

    def record(name, program, bank):
        return name.encode().ljust(20, b"\0") + struct.pack("<HHHIII", program, bank, 0, 0, 0, 0)

    records = record("Violin", 40, 0) + record("Drums", 0, 128) + record("EOP", 0, 0)
    data = b"RIFF....sfbkpdtaphdr" + struct.pack("<I", len(records)) + records
    (tmp_path / "x.sf2").write_bytes(data)
    assert instruments.sf2_programs(str(tmp_path / "x.sf2")) == {40}


def test_more_label_rules():
    assert sfx.label_of("0ad-data", "/_unz/public.zip/audio/construction/con_wood_03.ogg") == "hammering"
    assert sfx.label_of("0ad-data", "/_unz/public.zip/audio/resource/farming/hoe_03.ogg") == "digging"


def test_sonivox_renders_programs_apart(tmp_path):
    """The Sonivox bank (ctypes on the unpacked libsonivox3) renders each GM program audibly and
    differently, on the MIDI timeline (the piece spans the corpus cuts at)."""
    import subprocess

    from codecsep.audio import load_audio
    from codecsep.data.sources.debian import extract
    from codecsep.data.sources.sonivox import library_path

    try:
        root = extract("libsonivox3", tmp_path / "cache")
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:  # no package registry
        pytest.skip(f"libsonivox3 not available: {e}")
    bank = instruments.Bank("sonivox", "libsonivox3", "sonivox", str(library_path(root)))
    assert instruments.bank_programs(bank) == set(range(128))
    spectra = {}
    for label in ("violin", "flute"):
        spans = instruments.write_midi(label, 0, [0, 1], tmp_path / f"{label}.mid")
        instruments.render(bank, tmp_path / f"{label}.mid", tmp_path / f"{label}.wav", 16000)
        wav, sr = load_audio(tmp_path / f"{label}.wav", 16000, mono=True)
        x = wav[0].numpy()
        seconds = len(x) / sr  # the MIDI ends one gap after its last piece
        assert sr == 16000 and spans[-1][2] <= seconds <= spans[-1][2] + instruments.GAP_SECONDS + 1
        start, end = spans[0][1], spans[0][2]
        piece = x[int(start * sr): int(end * sr)]
        assert np.sqrt(np.mean(piece ** 2)) > 1e-3  # the piece is heard
        gap = x[int((end + 1.0) * sr): int((spans[1][1] - 0.1) * sr)]
        assert np.sqrt(np.mean(gap ** 2)) < 0.1 * np.sqrt(np.mean(piece ** 2))  # silence between
        mag = np.abs(np.fft.rfft(piece[: sr * 2]))
        spectra[label] = mag / np.linalg.norm(mag)
    assert float(spectra["violin"] @ spectra["flute"]) < 0.9  # two programs, two timbres


def test_tuxpaint_rules_add_train_rows_of_known_classes_only():
    from codecsep.data.sources import tuxpaint

    assert tuxpaint.speaker_of("animals/mammals/bovines/cow_desc_fr.ogg") == "tuxpaint-fr"
    assert tuxpaint.speaker_of("animals/mammals/bovines/cow_desc.ogg") == "tuxpaint-en"
    assert tuxpaint.speaker_of("town/flags/flag_desc_zh_tw.ogg") == "tuxpaint-zh_tw"
    assert tuxpaint.speaker_of("animals/mammals/bovines/cow.ogg") is None
    assert tuxpaint.speaker_of("symbols/math/7_fr.ogg") is None
    known = set(instruments.INSTRUMENTS) | {r.label for r in sfx.RULES}
    assert set(tuxpaint.SOUNDS.values()) <= known
    if REAL_MANIFEST.is_file():  # labels of the built corpus: the table must not create a class
        from codecsep.data.manifest import read_manifest

        assert set(tuxpaint.SOUNDS.values()) <= {c.label for c in read_manifest(REAL_MANIFEST)}


def _sine_wav(path: Path) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(0.6), TARGET_SR)
    return path


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt binary resource file (version 3) of top-level `files` {name: (bytes, zlib?)}."""
    import struct
    import zlib

    names, data, nodes = b"", b"", []
    for name, (payload, compress) in files.items():
        name_offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        stored = struct.pack(">I", len(payload)) + zlib.compress(payload) if compress else payload
        nodes.append(struct.pack(">IHHHIQ", name_offset, 1 if compress else 0, 0, 0, len(data), 0))
        data += struct.pack(">I", len(stored)) + stored
    root = struct.pack(">IHIIQ", 0, 0x02, len(files), 1, 0)
    tree = root + b"".join(nodes)
    header = 24
    return (b"qres" + struct.pack(">IIIII", 3, header, header + len(tree),
                                  header + len(tree) + len(data), 0) + tree + data + names)


def _cat(entries: dict[str, bytes]) -> bytes:
    """An OpenTTD .cat sound bank of `entries` {quoted name: RIFF bytes}."""
    import struct

    table, body = b"", b""
    start = 8 * len(entries)
    for name, payload in entries.items():
        raw = name.encode("latin-1") + b"\0"
        item = bytes([len(raw)]) + raw + payload
        table += struct.pack("<II", (start + len(body)) | 0x80000000, len(item))
        body += item
    return table + body


def _c4group(entries: list[tuple[str, bytes, bool]], packed: bool = True) -> bytes:
    """An OpenClonk group of (name, bytes, is_child_group) entries; gzipped with the 1e 8c magic."""
    import gzip
    import struct

    head = bytearray(204)
    head[:24] = b"RedWolf Design GrpFolder"
    struct.pack_into("<3i", head, 28, 1, 2, len(entries))
    for i in range(0, len(head) - 2, 3):
        head[i], head[i + 2] = head[i + 2], head[i]
    table, blob = b"", b""
    for name, data, child in entries:
        entry = bytearray(316)
        entry[:len(name)] = name.encode()
        struct.pack_into("<5i", entry, 260, 0, int(child), len(data), 0, len(blob))
        table, blob = table + bytes(entry), blob + data
    raw = bytes(b ^ 237 for b in head) + table + blob
    return b"\x1e\x8c" + gzip.compress(raw)[2:] if packed else raw


def _res(entries: dict[str, bytes]) -> bytes:
    """A Seven Kingdoms .res pack of `entries` {name: bytes} (N + 1 index entries, the last the end)."""
    import struct

    start = 2 + 13 * (len(entries) + 1)
    index, body = b"", b""
    for name in [*entries, ""]:
        index += name.encode("latin-1").ljust(9, b"\0") + struct.pack("<I", start + len(body))
        body += entries.get(name, b"")
    return struct.pack("<H", len(entries)) + index + body


def test_archive_readers_unpack_rcc_cat_res_and_openclonk_audio(tmp_path):
    from codecsep.data.sources import archives

    wav = _sine_wav(tmp_path / "a.wav").read_bytes()
    (tmp_path / "x.rcc").write_bytes(_rcc({"cow.ogg": (wav, True), "moo.wav": (wav, False),
                                          "notes.txt": (b"hello", True)}))
    assert dict(archives.read_rcc(tmp_path / "x.rcc")) == {"cow.ogg": wav, "moo.wav": wav,
                                                          "notes.txt": b"hello"}
    out = archives.unpack(tmp_path / "x.rcc", tmp_path / "u")
    assert sorted(p.name for p in out) == ["cow.ogg", "moo.wav"]  # audio members only
    (tmp_path / "s.cat").write_bytes(_cat({'"Sheep". Original by X': wav, '"Cow"': wav}))
    members = archives.read_cat(tmp_path / "s.cat")
    assert [m for m, _ in members] == ["00_Sheep.wav", "01_Cow.wav"] and members[1][1] == wav
    inner = _c4group([("Chop1.wav", wav, False), ("Readme.txt", b"x", False)], packed=False)
    (tmp_path / "Sound.ocg").write_bytes(_c4group([("Tree.ocg", inner, True), ("Splash.ogg", b"OggS", False)]))
    assert dict(archives.read_c4group(tmp_path / "Sound.ocg")) == {
        "Tree.ocg/Chop1.wav": wav, "Tree.ocg/Readme.txt": b"x", "Splash.ogg": b"OggS"}
    (tmp_path / "A_WAVE2.RES").write_bytes(_res({"BIRDS01": wav, "SPRITE": b"\x00\x01", "SINK": wav}))
    assert archives.read_res(tmp_path / "A_WAVE2.RES") == [("BIRDS01.wav", wav), ("SPRITE", b"\x00\x01"),
                                                           ("SINK.wav", wav)]
    out = archives.unpack(tmp_path / "A_WAVE2.RES", tmp_path / "r")
    assert sorted(p.name for p in out) == ["BIRDS01.wav", "SINK.wav"]
    (tmp_path / "bad.res").write_bytes(b"\xff\xff" + b"x" * 20)
    with pytest.raises(archives.ArchiveError, match="Seven Kingdoms"):
        archives.read_res(tmp_path / "bad.res")
    (tmp_path / "bad.rcc").write_bytes(b"RIFF0000")
    with pytest.raises(archives.ArchiveError, match="not a Qt resource"):
        archives.read_rcc(tmp_path / "bad.rcc")


def test_curated_table_adds_capped_train_rows_of_known_classes_only(tmp_path):
    from codecsep.data.sources import curated

    table = curated.read_table()
    labels = {lab for rows in table.values() for lab in rows.values()}
    assert labels <= set(CAPTIONS) and "speech" not in labels
    known = set(instruments.INSTRUMENTS) | {r.label for r in sfx.RULES}
    assert labels <= known
    if REAL_MANIFEST.is_file():  # the table must not create a class of the built corpus
        from codecsep.data.manifest import read_manifest

        assert labels <= {c.label for c in read_manifest(REAL_MANIFEST)}
    for i in range(5):
        _sine_wav(tmp_path / f"steps/{i}.wav")
    recs = curated.table_recordings("pkg", tmp_path, {f"steps/{i}.wav": "footsteps" for i in range(5)}
                                    | {"missing.wav": "cow"}, "GPL", per_label=3)
    assert len(recs) == 3 and {r.split for r in recs} == {"train"} and {r.label for r in recs} == {"footsteps"}
    assert recs == curated.table_recordings("pkg", tmp_path, {f"steps/{i}.wav": "footsteps"
                                                              for i in range(5)}, "GPL", per_label=3)


def test_extract_unpacks_only_the_named_members_of_large_packages(tmp_path):
    """FlightGear's 1.3 GB data package is unpacked for its Sounds/ and docs only."""
    import shutil
    import subprocess

    from codecsep.data.sources.debian import EXTRACT_ONLY, extract

    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not available")
    package = "flightgear-data-base"
    assert package in EXTRACT_ONLY
    tree = tmp_path / "pkg"
    _sine_wav(tree / "usr/share/games/flightgear/Sounds/prop.wav")
    _sine_wav(tree / "usr/share/games/flightgear/Aircraft/c172p/Sounds/engine.wav")
    (tree / "usr/share/games/flightgear/Models").mkdir(parents=True)
    (tree / "usr/share/games/flightgear/Models/plane.ac").write_text("scenery")
    (tree / f"usr/share/doc/{package}").mkdir(parents=True)
    (tree / f"usr/share/doc/{package}/copyright").write_text("License: GPL-2+\n")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(f"Package: {package}\nVersion: 1\nArchitecture: all\n"
                                         "Maintainer: t <t@t>\nDescription: test\n")
    (tmp_path / "cache/debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", str(tree), str(tmp_path / f"cache/debs/{package}_1_all.deb")],
                   check=True, capture_output=True)
    root = extract(package, tmp_path / "cache")
    assert (root / "usr/share/games/flightgear/Sounds/prop.wav").is_file()
    assert (root / "usr/share/games/flightgear/Aircraft/c172p/Sounds/engine.wav").is_file()
    assert (root / f"usr/share/doc/{package}/copyright").is_file()
    assert not (root / "usr/share/games/flightgear/Models").exists()


def test_mislabelled_recordings_leave_after_the_split_assignment():
    """A recording `MISLABELLED` names is dropped and logged; the rest keep their order."""
    from codecsep.data import corpus

    def rec(source_id, label):
        return Recording(src="x.wav", label=label, category="sfx", source=source_id.split(":")[0],
                         source_id=source_id, split_group="g", license="GPL")

    kept = [(rec("wesnoth-1.16-data:usr/share/games/wesnoth/1.16/data/core/sounds/horse-canter.wav",
                 "horse"), None),
            (rec("wesnoth-1.16-data:usr/share/games/wesnoth/1.16/data/core/sounds/horse-die.ogg",
                 "horse"), None),
            (rec("asterisk-it-carlo:usr/share/asterisk/sounds/it_IT_m_Carlo/tt-monkeys.wav", "speech"),
             None),
            (rec("asterisk-it-carlo:usr/share/asterisk/sounds/it_IT_m_Carlo/tt-monkeysintro.wav",
                 "speech"), None)]
    dropped: list[str] = []
    out = corpus.drop_mislabelled(kept, dropped)
    assert [r.source_id.rsplit("/", 1)[-1] for r, _ in out] == ["horse-die.ogg", "tt-monkeysintro.wav"]
    assert len(dropped) == 2 and all("mislabelled" in d for d in dropped)


def test_curated_wavpack_rows_are_decoded_once(tmp_path, monkeypatch):
    """A table row in a format libsndfile cannot read (`.wv`) resolves to a WAV decoded once
    under `_dec/` by the format's Debian tool (here a stand-in that copies the file)."""
    import sys

    import soundfile as sf

    from codecsep.data.sources import curated

    src = tmp_path / "usr/share/game/audio/gun-01.wv"
    src.parent.mkdir(parents=True)
    sf.write(src.with_suffix(".wav"), np.zeros(800, np.float32), 16000)
    src.with_suffix(".wav").rename(src)  # a WAV under a .wv name: the stand-in decoder copies it
    calls = []

    def fake_command(tool, s, d):
        calls.append(tool)
        return [sys.executable, "-c", f"import shutil; shutil.copy({str(s)!r}, {str(d)!r})"]

    monkeypatch.setattr(curated, "decode_command", fake_command)
    monkeypatch.setattr(curated, "ensure_tool", lambda binary, package=None: binary)
    table = {"usr/share/game/audio/gun-01.wv": "gunshot", "usr/share/game/audio/gone.wv": "gunshot"}
    recs = curated.table_recordings("game", tmp_path, table, "CC0")
    assert [Path(r.src).relative_to(tmp_path).as_posix() for r in recs] == [
        "_dec/usr/share/game/audio/gun-01.wv.wav"]
    assert recs[0].split == "train" and sf.info(recs[0].src).frames == 800
    curated.table_recordings("game", tmp_path, table, "CC0")
    assert calls == ["wvunpack"]  # decoded once; the missing file is reported, not decoded
    assert src.is_file()  # the package's file is left as it was


def test_unseen_table_names_known_effects_from_packages_no_other_split_uses(tmp_path):
    """unseen.tsv: effects of classes the corpus has, from packages that neither the keyword
    rules, the train-only table nor the speech sources draw on; its rows form split `unseen`."""
    from codecsep.data.sources import curated, speech, tuxpaint

    unseen = curated.read_table(curated.UNSEEN_TABLE)
    labels = {lab for rows in unseen.values() for lab in rows.values()}
    assert labels and labels <= {r.label for r in sfx.RULES}
    per_label = Counter(lab for rows in unseen.values() for lab in rows.values())
    assert min(per_label.values()) >= 3  # the table's rule: classes with >= 3 recordings
    used = (set(sfx.PACKAGES) | set(curated.read_table()) | set(speech.PACKAGES)
            | {tuxpaint.PACKAGE, curated.KTUBERLING})
    assert set(unseen).isdisjoint(used)
    for i in range(8):
        _sine_wav(tmp_path / f"boom/{i}.wav")
    recs = curated.table_recordings("game", tmp_path, {f"boom/{i}.wav": "explosion" for i in range(8)},
                                    "GPL", per_label=curated.MAX_PER_PACKAGE_LABEL_UNSEEN,
                                    split="unseen")
    assert len(recs) == 6 and {r.split for r in recs} == {"unseen"}
    if REAL_MANIFEST.is_file():  # in the built corpus: the split holds only its packages
        from codecsep.data.manifest import read_manifest

        clips = read_manifest(REAL_MANIFEST)
        assert {c.source for c in clips if c.split == "unseen"} <= set(unseen)
        assert not {c.source for c in clips if c.split != "unseen"} & set(unseen)
