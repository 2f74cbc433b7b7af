"""Public-dataset loaders on tiny fixtures written in each dataset's official layout."""

import csv

import numpy as np
import pytest
import soundfile as sf

from codecsep.data.manifest import read_manifest, write_manifest
from codecsep.data.public import (
    FIXED_MIXTURE_READERS,
    LOADERS,
    DatasetLayoutError,
    load_public,
    read_fixed_mixtures,
)
from codecsep.errors import CodecSepError


def _wav(path, seconds=0.25, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * sr))), sr)
    return path


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _by_name(clips):
    return {clip.path.rsplit("/", 1)[-1]: clip for clip in clips}


# ----------------------------------------------------------------------------- ESC-50


@pytest.fixture
def esc50(tmp_path):
    rows = [
        ("1-100032-A-0.wav", 1, 0, "dog", "True", "100032", "A"),
        ("4-100038-A-14.wav", 4, 14, "chirping_birds", "False", "100038", "A"),
        ("5-200000-A-0.wav", 5, 0, "dog", "True", "200000", "A"),
        ("5-200000-B-0.wav", 5, 0, "dog", "True", "200000", "B"),
    ]
    _csv(tmp_path / "meta" / "esc50.csv",
         ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    for row in rows:
        _wav(tmp_path / "audio" / row[0], sr=44100)
    return tmp_path


def test_esc50(esc50):
    clips = _by_name(load_public("esc50", esc50))
    assert {n: c.split for n, c in clips.items()} == {
        "1-100032-A-0.wav": "train", "4-100038-A-14.wav": "valid",
        "5-200000-A-0.wav": "test", "5-200000-B-0.wav": "test",
    }
    birds = clips["4-100038-A-14.wav"]
    assert birds.label == "chirping birds" and birds.captions == ("chirping birds",)
    assert birds.source == "esc50" and birds.source_id == "100038" and birds.category == "sfx"
    assert birds.sample_rate == 44100 and birds.duration == pytest.approx(0.25)
    assert birds.extra == {"fold": 4, "target": 14, "take": "A", "esc10": False}
    assert clips["5-200000-A-0.wav"].source_id == clips["5-200000-B-0.wav"].source_id
    custom = load_public("esc50", esc50, valid_folds=(1,), test_folds=(4,))
    assert _by_name(custom)["1-100032-A-0.wav"].split == "valid"


def test_esc50_manifest_round_trip(esc50, tmp_path_factory):
    clips = load_public("esc50", esc50)
    path = write_manifest(clips, tmp_path_factory.mktemp("out") / "esc50.jsonl")
    assert read_manifest(path) == clips  # absolute paths survive being stored elsewhere


def test_esc50_missing_files_named(esc50):
    (esc50 / "audio" / "5-200000-B-0.wav").unlink()
    with pytest.raises(DatasetLayoutError, match="5-200000-B-0.wav"):
        load_public("esc50", esc50)
    (esc50 / "meta" / "esc50.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="esc50.csv"):
        load_public("esc50", esc50)
    with pytest.raises(DatasetLayoutError, match="nowhere"):
        load_public("esc50", esc50 / "nowhere")


# ----------------------------------------------------------------------------- AudioCaps


@pytest.fixture
def audiocaps(tmp_path):
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    train = [
        (91139, "r1nicOVtvkQ", 130, "A woman talks"),
        (58146, "UDGBjjwyaqE", 20, "Birds chirp"),
        (77, "missingVid1", 0, "never downloaded"),
    ]
    val = [(97151, "vfY_TJq7n_U", 130, "Rustling occurs"), (97150, "vfY_TJq7n_U", 130, "Leaves")]
    test = [(103549, "-4SYC2YgzL8", 30, "A motor hums"), (103548, "-4SYC2YgzL8", 30, "An engine")]
    for name, rows in (("train", train), ("val", val), ("test", test)):
        _csv(tmp_path / f"{name}.csv", header, rows)
    _wav(tmp_path / "audio" / "train" / "r1nicOVtvkQ.wav")  # named by youtube_id
    _wav(tmp_path / "audio" / "train" / "YUDGBjjwyaqE.wav")  # AudioSet-style "Y" prefix
    _wav(tmp_path / "audio" / "val" / "vfY_TJq7n_U.flac")
    _wav(tmp_path / "audio" / "test" / "103549.wav")  # named by audiocap_id
    _wav(tmp_path / "audio" / "test" / "103548.wav")
    return tmp_path


def test_audiocaps(audiocaps):
    with pytest.warns(UserWarning, match="1 of 3 rows"):
        clips = load_public("audiocaps", audiocaps)
    named = _by_name(clips)
    assert set(named) == {"r1nicOVtvkQ.wav", "YUDGBjjwyaqE.wav", "vfY_TJq7n_U.flac",
                          "103549.wav", "103548.wav"}
    assert named["r1nicOVtvkQ.wav"].split == "train"
    assert named["YUDGBjjwyaqE.wav"].source_id == "UDGBjjwyaqE"
    val = named["vfY_TJq7n_U.flac"]  # two rows, one file: one clip, captions by audiocap_id
    assert val.split == "valid" and val.captions == ("Leaves", "Rustling occurs")
    assert val.label == "Leaves" and val.extra["audiocap_ids"] == [97150, 97151]
    test = named["103549.wav"]
    assert test.split == "test" and test.captions == ("A motor hums",)
    assert test.source_id == named["103548.wav"].source_id == "-4SYC2YgzL8"
    assert test.extra["start_time"] == 30.0


def test_audiocaps_strict_and_missing(audiocaps, tmp_path_factory):
    with pytest.raises(DatasetLayoutError, match="missingVid1"):
        load_public("audiocaps", audiocaps, strict=True)
    with pytest.raises(DatasetLayoutError, match="train.csv"):
        load_public("audiocaps", tmp_path_factory.mktemp("empty"))


# ----------------------------------------------------------------------------- Clotho


@pytest.fixture
def clotho(tmp_path):
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    caps = [f"water flows {i}" for i in range(1, 6)]
    _csv(tmp_path / "clotho_captions_development.csv", header, [("Creek 1.wav", *caps)])
    _csv(tmp_path / "clotho_captions_evaluation.csv", header,
         [("bells.wav", "bells ring", "a bell tolls", "", "chimes", "ding dong")])
    _wav(tmp_path / "clotho_audio_development" / "Creek 1.wav", sr=44100)
    _wav(tmp_path / "clotho_audio_evaluation" / "bells.wav", sr=44100)
    return tmp_path


def test_clotho(clotho):
    named = _by_name(load_public("clotho", clotho))
    creek, bells = named["Creek 1.wav"], named["bells.wav"]
    assert creek.split == "train" and creek.label == "water flows 1" and len(creek.captions) == 5
    assert bells.split == "test" and bells.captions == ("bells ring", "a bell tolls", "chimes",
                                                        "ding dong")
    assert bells.source == "clotho" and bells.source_id == "bells.wav"
    (clotho / "clotho_audio_evaluation" / "bells.wav").unlink()
    with pytest.raises(DatasetLayoutError, match="bells.wav"):
        load_public("clotho", clotho)


def test_clotho_missing_csv(tmp_path):
    with pytest.raises(DatasetLayoutError, match="clotho_captions_development.csv"):
        load_public("clotho", tmp_path)


# ----------------------------------------------------------------------------- MUSIC


@pytest.fixture
def music_eval(tmp_path):
    rows = [(0, "accordion", "Y1mCi6eWXVbg_0.wav", "YX4UWEifacwI_6.wav"),
            (1, "accordion", "Y1mCi6eWXVbg_0.wav", "YkuNep98Fd8o_7.wav"),
            (2, "acoustic guitar", "YZeQPNWdFs_4_15.wav", "Y91MhpKVea30_16.wav")]
    _csv(tmp_path / "evaluation" / "metadata" / "music_eval.csv",
         ["idx", "caption", "src_wav", "noise_wav"], rows)
    for idx, *_ in rows:
        _wav(tmp_path / "evaluation" / "data" / "music" / f"segment-{idx}.wav", sr=32000)
        _wav(tmp_path / "evaluation" / "data" / "music" / f"mixture-{idx}.wav", sr=32000)
    return tmp_path


def test_music_audiosep_layout(music_eval):
    clips = load_public("music", music_eval)
    assert [(c.label, c.source_id, c.split) for c in clips] == [
        ("accordion", "1mCi6eWXVbg", "test"), ("acoustic guitar", "ZeQPNWdFs_4", "test")]
    assert all(c.category == "music" and c.sample_rate == 32000 for c in clips)
    mixtures = read_fixed_mixtures("music", music_eval)
    assert len(mixtures) == 3 and mixtures[1].labels == ("accordion",)
    assert mixtures[1].mixture_path.endswith("mixture-1.wav")
    assert mixtures[1].source_paths[0].endswith("segment-1.wav")


def test_music_solo_layout(tmp_path):
    _wav(tmp_path / "solo" / "acoustic_guitar" / "abc123.wav")
    _wav(tmp_path / "solo" / "erhu" / "vid9" / "seg0.wav")
    _wav(tmp_path / "solo" / "erhu" / "vid9" / "seg1.wav")
    clips = load_public("music", tmp_path)
    assert [(c.label, c.source_id) for c in clips] == [
        ("acoustic guitar", "abc123"), ("erhu", "vid9"), ("erhu", "vid9")]


def test_music_missing(tmp_path):
    with pytest.raises(DatasetLayoutError, match="solo"):
        load_public("music", tmp_path)


# ----------------------------------------------------------------------------- LibriMix

LIBRI_MIXTURES = {
    "train-100": ["19-198-0001_1272-128104-0000"],
    "dev": ["84-121123-0002_652-130726-0010", "84-121123-0002_2412-153948-0003"],
    "test": ["1089-134686-0000_121-121726-0000"],
}


@pytest.fixture
def librimix(tmp_path):
    base = tmp_path / "wav16k" / "min"
    for subset, ids in LIBRI_MIXTURES.items():
        for mixture_id in ids:
            for role in ("mix_clean", "s1", "s2"):
                _wav(base / subset / role / f"{mixture_id}.wav")
        if subset != "dev":  # dev has no metadata: the loader falls back to the folders
            rows = [(m, f"/elsewhere/{subset}/mix_clean/{m}.wav", f"/elsewhere/s1/{m}.wav",
                     f"/elsewhere/s2/{m}.wav", 4000) for m in ids]
            _csv(base / "metadata" / f"mixture_{subset}_mix_clean.csv",
                 ["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"],
                 rows)
    return tmp_path


def test_librimix_clips(librimix):
    clips = load_public("librimix", librimix)
    utterances = [c.extra["utterance"] for c in clips]
    assert len(utterances) == len(set(utterances)) == 7  # 84-121123-0002 appears twice
    by_utt = {c.extra["utterance"]: c for c in clips}
    assert by_utt["19-198-0001"].source_id == "19" and by_utt["19-198-0001"].split == "train"
    s2_path = "train-100/s2/19-198-0001_1272-128104-0000.wav"
    assert by_utt["1272-128104-0000"].path.endswith(s2_path)
    assert by_utt["652-130726-0010"].split == "valid"
    assert by_utt["121-121726-0000"].split == "test"
    assert all(c.category == "speech" and c.label == "speech" for c in clips)


def test_librimix_fixed_mixtures(librimix):
    (mixture,) = read_fixed_mixtures("librimix", librimix, subset="test")
    assert mixture.mixture_id == "1089-134686-0000_121-121726-0000"
    assert mixture.mixture_path.endswith("test/mix_clean/1089-134686-0000_121-121726-0000.wav")
    assert [p.rsplit("/", 2)[1] for p in mixture.source_paths] == ["s1", "s2"]
    assert mixture.extra["speakers"] == ["1089", "121"]
    assert len(read_fixed_mixtures("librimix", librimix, subset="dev")) == 2


def test_librimix_missing(librimix):
    with pytest.raises(DatasetLayoutError, match="wav8k"):
        load_public("librimix", librimix, sample_rate=8000)
    (librimix / "wav16k" / "min" / "test" / "s2" / "1089-134686-0000_121-121726-0000.wav").unlink()
    with pytest.raises(DatasetLayoutError, match="s2/1089-134686-0000_121-121726-0000.wav"):
        read_fixed_mixtures("librimix", librimix, subset="test")


# ----------------------------------------------------------------------------- DnR v2


@pytest.fixture
def dnr(tmp_path):
    for split, ids in (("tr", ["1", "2"]), ("tt", ["7"])):
        for mixture_id in ids:
            for stem in ("mix", "speech", "music", "sfx"):
                _wav(tmp_path / split / mixture_id / f"{stem}.wav", sr=44100)
    _csv(tmp_path / "tr" / "1" / "annots.csv",
         ["", "file", "class", "mix start time", "mix end time", "clip start sample",
          "clip end sample", "clip gain", "annotation"],
         [(0, "a.wav", "sfx", 0.5, 1.5, 0, 1, 0.8, "Bark,Dog,Domestic_animals_and_pets"),
          (1, "b.wav", "music", 0, 9, 0, 9, 0.5, "Rock"),
          (2, "c.wav", "background", 2, 4, 0, 2, 0.3, "Car_passing_by,Vehicle"),
          (3, "d.wav", "sfx", 5, 6, 0, 1, 0.8, "Bark,Dog")])
    return tmp_path


def test_dnr(dnr):
    clips = load_public("dnr", dnr)
    assert len(clips) == 9
    assert {c.category for c in clips} == {"speech", "music", "sfx"}
    assert {c.split for c in clips} == {"train", "test"}
    sfx_1 = [c for c in clips if c.source_id == "tr/1" and c.category == "sfx"][0]
    assert sfx_1.label == "sound effects"
    assert sfx_1.extra["tags"] == ["bark", "car passing by"]
    assert sfx_1.captions == ("sound effects", "bark, car passing by")
    speech_2 = [c for c in clips if c.source_id == "tr/2" and c.category == "speech"][0]
    assert speech_2.label == "speech" and speech_2.captions == ("speech",)
    (mixture,) = read_fixed_mixtures("dnr", dnr, split="tt")
    assert mixture.labels == ("speech", "music", "sound effects") and mixture.split == "test"
    assert [p.rsplit("/", 1)[1] for p in mixture.source_paths] == ["speech.wav", "music.wav",
                                                                    "sfx.wav"]


def test_dnr_missing(dnr, tmp_path_factory):
    (dnr / "tt" / "7" / "music.wav").unlink()
    with pytest.raises(DatasetLayoutError, match="tt/7/music.wav"):
        load_public("dnr", dnr)
    with pytest.raises(DatasetLayoutError, match="tr"):
        load_public("dnr", tmp_path_factory.mktemp("nodnr"))


# ----------------------------------------------------------------------------- registry


def test_registry():
    assert set(LOADERS) == {"esc50", "audiocaps", "clotho", "music", "librimix", "dnr"}
    assert set(FIXED_MIXTURE_READERS) == {"music", "librimix", "dnr"}
    with pytest.raises(ValueError, match="esc50"):
        load_public("esc-50", "/nonexistent")
    assert issubclass(DatasetLayoutError, CodecSepError)
    assert issubclass(DatasetLayoutError, FileNotFoundError)


def test_corpus_import_writes_a_manifest_eval_can_draw_from(esc50, tmp_path_factory, capsys):
    from codecsep import cli
    from codecsep.data.cli import DATASETS

    assert DATASETS == tuple(LOADERS)  # the CLI names them without importing the loaders
    rows = [("5-300000-A-14.wav", 5, 14, "chirping_birds", "False", "300000", "A")]
    with open(esc50 / "meta" / "esc50.csv", "a", newline="") as f:  # a second test-fold label
        csv.writer(f).writerows(rows)
    _wav(esc50 / "audio" / rows[0][0], seconds=2.0, sr=44100)
    out = tmp_path_factory.mktemp("imp")
    manifest = out / "esc50.jsonl"
    assert cli.main(["corpus", "import", "esc50", str(esc50), "-o", str(manifest)]) == 0
    assert "5 clips, 2 labels (test 3, train 1, valid 1)" in capsys.readouterr().out
    assert read_manifest(manifest) == load_public("esc50", esc50)
    assert cli.main(["corpus", "import", "esc50", str(esc50), "-o", str(manifest)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["corpus", "import", "esc", str(esc50), "-o", str(out / "x.jsonl")]) == 2
    assert "unknown dataset 'esc'" in capsys.readouterr().err
    code = cli.main(["eval", "--model", "mixture", "--protocol", "two_source", "--split", "test",
                     "--manifest", str(manifest), "--eval-dir", str(out / "eval"), "--n", "2",
                     "--out", str(out / "scores")])
    assert code == 0 and (out / "scores" / "summary.json").exists()
