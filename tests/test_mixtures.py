"""Mixture protocols on a tiny synthetic corpus of tones, noise bursts and fake speakers."""

import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep.data.manifest import Clip, read_manifest, write_manifest
from codecsep.data.mixtures import (
    PROTOCOLS,
    ClipAudioCache,
    DnR,
    DnRConfig,
    MixConfig,
    MixtureDataset,
    MixtureStream,
    ThreeSource,
    ThreeSourceConfig,
    TwoSource,
    TwoSourceConfig,
    TwoSpeaker,
    TwoSpeakerConfig,
    collate_mixtures,
    loudness_db,
    make_protocol,
    read_eval_set,
    write_eval_set,
)

SR = 16000
DUR = 1.0  # mixture length used in these tests, seconds


def _tone(freq, seconds, sr=SR, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _bursts(rng, seconds, sr=SR):
    x = np.zeros(int(seconds * sr))
    for start in range(0, len(x) - sr // 4, sr // 2):
        x[start : start + sr // 4] = rng.standard_normal(sr // 4) * 0.2
    return x


def _speechlike(rng, pitch, seconds, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    return 0.2 * envelope * (np.sin(2 * np.pi * pitch * t) + 0.3 * rng.standard_normal(len(t)))


def _silence_then_tone(seconds):
    x = _tone(300, seconds)
    x[: len(x) * 3 // 4] = 0.0  # only the last quarter is active
    return x


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of ~20 clips: 5 sfx labels, 2 music labels, 3 speakers; mixed lengths/rates."""
    root = tmp_path_factory.mktemp("mixcorpus")
    rng = np.random.default_rng(0)
    specs = [  # (name, label, category, source_id, wav, sample_rate)
        ("beep_a", "beep", "sfx", "bankA", _tone(1000, 2.5), SR),
        ("beep_b", "beep", "sfx", "bankB", _tone(1200, 0.4), SR),  # shorter than DUR
        ("hum_a", "hum", "sfx", "bankA", _tone(60, 3.0, sr=22050), 22050),  # resampled
        ("hiss_a", "hiss", "sfx", "bankC", rng.standard_normal(SR * 2) * 0.05, SR),
        ("knock_a", "knock", "sfx", "bankC", _bursts(rng, 3.0), SR),
        ("knock_b", "knock", "sfx", "bankD", _bursts(rng, 1.5), SR),
        ("late_a", "late tone", "sfx", "bankE", _silence_then_tone(8.0), SR),
        ("piano_a", "piano", "music", "bankM", _tone(261.6, 3.0) + _tone(329.6, 3.0), SR),
        ("organ_a", "organ", "music", "bankM", _tone(196, 2.0) + _tone(392, 2.0), SR),
    ]
    for spk, pitch in (("spk1", 120), ("spk2", 210), ("spk3", 160)):
        for k in range(2):
            specs.append((f"{spk}_{k}", "speech", "speech", spk,
                          _speechlike(rng, pitch + 7 * k, 2.0), SR))
    clips = []
    for name, label, category, source_id, wav, sr in specs:
        path = root / f"{name}.wav"
        sf.write(path, wav.astype(np.float32), sr)
        clips.append(
            Clip(path=path.name, label=label, captions=(label, f"the sound of {label}"),
                 source="synthetic", source_id=source_id, split="test",
                 duration=len(wav) / sr, sample_rate=sr, category=category)
        )
    manifest = write_manifest(clips, root / "manifest.jsonl")
    return read_manifest(manifest)


def _sfx(corpus):
    return [c for c in corpus if c.category == "sfx"]


def _all_protocols(corpus, **overrides):
    return [
        TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR, **overrides)),
        ThreeSource(_sfx(corpus), ThreeSourceConfig(duration_s=DUR, **overrides)),
        DnR(corpus, DnRConfig(duration_s=DUR, **overrides)),
        TwoSpeaker(corpus, TwoSpeakerConfig(duration_s=DUR, **overrides)),
    ]


def test_loudness_is_scale_exact_and_ignores_padding():
    x = _tone(440, 1.0)
    assert loudness_db(3.0 * x) - loudness_db(x) == pytest.approx(20 * np.log10(3.0), abs=1e-9)
    padded = np.concatenate([np.zeros(SR), x, np.zeros(SR)])
    assert loudness_db(padded) == pytest.approx(loudness_db(x), abs=1e-6)
    assert loudness_db(np.zeros(100)) == -np.inf


@pytest.mark.parametrize("augment", [False, True])
def test_mixture_is_sum_of_sources(corpus, augment):
    for protocol in _all_protocols(corpus, augment=augment):
        for i in range(4):
            m = protocol.draw(i, seed=1)
            assert m.mixture.dtype == np.float32 and m.sources.dtype == np.float32
            assert m.sources.shape == (len(m.labels), int(DUR * SR))
            np.testing.assert_allclose(m.mixture, m.sources.sum(0), atol=1e-6)
            assert np.abs(m.sources).max() <= 0.99 + 1e-6
            assert np.abs(m.mixture).max() <= 0.99 + 1e-6
            assert len(m.prompts) == len(m.labels) == len(m.gains_db) == m.n_sources


def test_three_source_distinct_classes(corpus):
    protocol = ThreeSource(_sfx(corpus), ThreeSourceConfig(duration_s=DUR))
    seen = set()
    for i in range(30):
        m = protocol.draw(i)
        assert len(set(m.labels)) == 3
        assert m.prompts == m.labels  # prompt_mode="label"
        seen.update(m.labels)
    assert len(seen) >= 4  # labels vary across items


@pytest.mark.parametrize("loudness,requested", [("audiosep", 7.0), ("snr", 7.0), ("snr", -12.5)])
def test_two_source_realises_requested_level(corpus, loudness, requested):
    cfg = TwoSourceConfig(duration_s=DUR, loudness=loudness, level_range_db=(requested,) * 2)
    protocol = TwoSource(_sfx(corpus), cfg)
    for i in range(12):
        m = protocol.draw(i)
        target, interferer = (loudness_db(s) for s in m.sources)
        realised = interferer - target if loudness == "audiosep" else target - interferer
        assert realised == pytest.approx(requested, abs=0.1)
        assert m.labels[0] != m.labels[1]


@pytest.mark.parametrize("loudness,bound", [("audiosep", 10.0), ("snr", 15.0)])
def test_two_source_level_ranges(corpus, loudness, bound):
    protocol = TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR, loudness=loudness))
    diffs = []
    for i in range(40):
        m = protocol.draw(i)
        diffs.append(loudness_db(m.sources[0]) - loudness_db(m.sources[1]))
        assert m.levels_db[0] - m.levels_db[1] == pytest.approx(diffs[-1], abs=0.01)
    diffs = np.array(diffs)
    assert np.all(np.abs(diffs) <= bound + 0.1)
    assert diffs.max() > bound / 3 and diffs.min() < -bound / 3  # uses the whole range


def test_levels_exact_with_augmentation(corpus):
    cfg = TwoSourceConfig(duration_s=DUR, level_range_db=(5.0, 5.0), augment=True)
    protocol = TwoSource(_sfx(corpus), cfg)
    for i in range(10):
        m = protocol.draw(i)
        assert loudness_db(m.sources[1]) - loudness_db(m.sources[0]) == pytest.approx(5, abs=0.1)


def test_short_clip_padding_and_looping(corpus):
    short = [c for c in corpus if c.path.endswith("beep_b.wav")][0]
    others = [c for c in _sfx(corpus) if c.label == "hiss"]
    n_short = int(0.4 * SR)
    for mode in ("pad", "loop"):
        protocol = TwoSource([short, *others], TwoSourceConfig(duration_s=DUR, short_clips=mode))
        m = protocol.draw(0)
        k = m.labels.index("beep")
        active = np.count_nonzero(np.abs(m.sources[k]) > 1e-6)
        assert (active <= n_short + 1) if mode == "pad" else (active > 2 * n_short)


def test_crops_avoid_silence(corpus):
    late = [c for c in corpus if c.label == "late tone"][0]
    hiss = [c for c in corpus if c.label == "hiss"][0]
    protocol = TwoSource([late, hiss], TwoSourceConfig(duration_s=DUR))
    for i in range(10):
        m = protocol.draw(i)
        k = m.labels.index("late tone")
        assert np.mean(np.abs(m.sources[k]) > 1e-4) > 0.5
        assert m.offsets_s[k][0] >= 6.0 - 0.5 * DUR  # crop mostly in the active last quarter


def test_determinism(corpus):
    a = _all_protocols(corpus)
    b = _all_protocols(corpus)  # fresh instances, empty caches
    for pa, pb in zip(a, b):
        m1, m2 = pa.draw(3, seed=7), pb.draw(3, seed=7)
        np.testing.assert_array_equal(m1.sources, m2.sources)
        assert (m1.labels, m1.prompts, m1.clip_paths, m1.offsets_s, m1.gains_db) == (
            m2.labels, m2.prompts, m2.clip_paths, m2.offsets_s, m2.gains_db)
        different = [pa.draw(3, seed=s) for s in (8, 9, 10)]
        assert any(not np.array_equal(m1.mixture, d.mixture) for d in different)
        assert not np.array_equal(pa.draw(4, seed=7).mixture, m1.mixture)


def test_prompt_mode_keeps_audio(corpus):
    by_label = TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR))
    by_caption = TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR, prompt_mode="caption"))
    for i in range(5):
        m1, m2 = by_label.draw(i), by_caption.draw(i)
        np.testing.assert_array_equal(m1.mixture, m2.mixture)
        for label, prompt in zip(m2.labels, m2.prompts):
            assert prompt in (label, f"the sound of {label}")


def test_heldout_prompts(corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "codecsep.data.captions", types.ModuleType("fake"))
    with pytest.raises(ValueError, match="PARAPHRASES_HELDOUT"):
        TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR, prompt_mode="heldout"))
    fake = types.ModuleType("codecsep.data.captions")
    fake.PARAPHRASES_HELDOUT = {label: (f"{label} (held out)",) for label in
                                ("beep", "hum", "hiss", "knock")}
    monkeypatch.setitem(sys.modules, "codecsep.data.captions", fake)
    with pytest.raises(ValueError, match="late tone"):
        TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR, prompt_mode="heldout"))
    clips = [c for c in _sfx(corpus) if c.label != "late tone"]
    m = TwoSource(clips, TwoSourceConfig(duration_s=DUR, prompt_mode="heldout")).draw(0)
    assert m.prompts == tuple(f"{label} (held out)" for label in m.labels)


def test_dnr_categories(corpus):
    protocol = DnR(corpus, DnRConfig(duration_s=DUR))
    category = {c.path: c.category for c in corpus}
    label = {c.path: c.label for c in corpus}
    n_effects = set()
    for i in range(20):
        m = protocol.draw(i)
        assert m.labels[:2] == ("speech", "music") and m.prompts[:2] == ("speech", "music")
        assert category[m.clip_paths[0][0]] == "speech"
        assert category[m.clip_paths[1][0]] == "music"
        effects = m.clip_paths[2]
        assert all(category[p] == "sfx" for p in effects)
        effect_labels = [label[p] for p in effects]
        assert len(set(effect_labels)) == len(effect_labels)
        assert m.labels[2] == m.prompts[2] == ", ".join(effect_labels)
        assert len(m.offsets_s[2]) == len(m.clip_gains_db[2]) == len(effects)
        n_effects.add(len(effects))
    assert n_effects == {1, 2, 3}


def test_dnr_needs_all_categories(corpus):
    with pytest.raises(ValueError, match="music"):
        DnR([c for c in corpus if c.category != "music"])


def test_two_speaker_distinct_speakers(corpus):
    speaker = {c.path: c.source_id for c in corpus}
    protocol = TwoSpeaker(corpus, TwoSpeakerConfig(duration_s=DUR))
    for i in range(15):
        m = protocol.draw(i)
        a, b = (speaker[p[0]] for p in m.clip_paths)
        assert a != b
        assert abs(loudness_db(m.sources[0]) - loudness_db(m.sources[1])) <= 5.1
    equal = TwoSpeaker(corpus, TwoSpeakerConfig(duration_s=DUR, sir_db_range=(0.0, 0.0)))
    m = equal.draw(0)
    assert loudness_db(m.sources[0]) == pytest.approx(loudness_db(m.sources[1]), abs=0.1)
    with pytest.raises(ValueError, match="speakers"):
        TwoSpeaker([c for c in corpus if c.source_id == "spk1"])


def test_eval_set_round_trip_and_no_overwrite(corpus, tmp_path):
    protocol = DnR(corpus, DnRConfig(duration_s=DUR, prompt_mode="caption"))
    out = write_eval_set(protocol, 3, tmp_path / "dnr_eval", seed=5)
    header = (out / "metadata.csv").read_text().splitlines()[0].split(",")
    assert header[:11] == ["mixture_id", "mixture_path", "source_index", "source_path", "label",
                           "prompt", "gain_db", "clip_path", "offset_s", "protocol", "seed"]
    items = read_eval_set(out)
    assert len(items) == 3
    for i, item in enumerate(items):
        expected = protocol.draw(i, seed=5)
        np.testing.assert_array_equal(item.mixture, expected.mixture)
        np.testing.assert_array_equal(item.sources, expected.sources)
        assert item.labels == expected.labels and item.prompts == expected.prompts
        assert item.clip_paths == expected.clip_paths
        for got, want in zip(item.offsets_s, expected.offsets_s):
            assert got == pytest.approx(want, abs=1e-4)
        assert (item.protocol, item.seed, item.index) == ("dnr", 5, i)
    with pytest.raises(FileExistsError):
        write_eval_set(protocol, 2, out, seed=6)
    write_eval_set(protocol, 2, out, seed=6, overwrite=True)
    assert len(read_eval_set(out)) == 2 and read_eval_set(out)[0].seed == 6
    assert [p.name for p in tmp_path.iterdir()] == ["dnr_eval"]  # no temp dirs left behind
    stranger = tmp_path / "not_a_set"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="metadata.csv"):
        write_eval_set(protocol, 1, stranger, seed=0, overwrite=True)


def test_eval_set_pcm16(corpus, tmp_path):
    protocol = TwoSource(_sfx(corpus), TwoSourceConfig(duration_s=DUR))
    out = write_eval_set(protocol, 1, tmp_path / "pcm", seed=0, subtype="PCM_16")
    item = read_eval_set(out)[0]
    assert sf.info(str(out / "mixtures" / "two_source-s0-000000.wav")).subtype == "PCM_16"
    np.testing.assert_allclose(item.mixture, item.sources.sum(0), atol=1e-3)


def test_datasets_and_collate(corpus):
    protocol = ThreeSource(_sfx(corpus), ThreeSourceConfig(duration_s=DUR))
    loader = torch.utils.data.DataLoader(
        MixtureDataset(protocol, length=4, seed=2), batch_size=2, collate_fn=collate_mixtures
    )
    batch = next(iter(loader))
    assert batch["mixture"].shape == (2, 1, int(DUR * SR))
    assert batch["sources"].shape == (2, 3, int(DUR * SR))
    assert len(batch["prompts"]) == 2 and len(batch["prompts"][0]) == 3
    shards = [MixtureStream(protocol, seed=2, start=10, rank=r, world_size=2) for r in (0, 1)]
    firsts = [[m.index for _, m in zip(range(3), iter(s))] for s in shards]
    assert firsts == [[10, 12, 14], [11, 13, 15]]
    np.testing.assert_array_equal(next(iter(shards[1])).mixture, protocol.draw(11, 2).mixture)


def test_cache_is_lru(corpus):
    cache = ClipAudioCache(max_items=2)
    paths = [c.path for c in corpus[:3]]
    for p in paths:
        cache.get(p)
    assert len(cache) == 2 and paths[0] not in cache._items


def test_registry_and_config_errors(corpus):
    assert set(PROTOCOLS) == {"two_source", "three_source", "dnr", "two_speaker"}
    p = make_protocol("two_source", _sfx(corpus), {"duration_s": DUR, "level_range_db": [1, 2]})
    assert p.config.level_range_db == (1, 2)
    with pytest.raises(ValueError, match="unknown"):
        make_protocol("four_source", corpus)
    with pytest.raises(ValueError, match="bad"):
        make_protocol("two_source", corpus, {"duraton_s": 2.0})
    with pytest.raises(ValueError, match="prompt_mode"):
        MixConfig(prompt_mode="labels")
    with pytest.raises(ValueError, match="labels"):
        ThreeSource([c for c in corpus if c.label in ("beep", "hum")])
