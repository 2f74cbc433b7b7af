"""Deterministic mixture protocols drawn from a manifest split (16 kHz mono).

Item `i` of a protocol under seed `s` is a pure function of (clips, config, s, i): four
independent numpy streams seeded with (s, i, stream) pick the clips, the crops, the prompts and
the augmentation, so changing the prompt mode or switching augmentation off leaves the chosen
clips unchanged (the same mixtures can be scored with label, caption and held-out prompts).

Protocols (all share one renderer for cropping, padding, loudness and augmentation):
- `TwoSource`  target + interferer of another class. Level difference uniform in +-10 dB
  (AudioSep, https://arxiv.org/abs/2308.05037) or SNR uniform in +-15 dB (HSM-TSS).
- `ThreeSource` three distinct classes (CodecSep / USS evaluation protocol).
- `DnR`        speech + music + 1-3 summed effects (Divide and Remaster v2 levels:
  speech -17, effects -21, music -24 LUFS, +-2 dB per stem, +-1 dB per effect clip).
- `TwoSpeaker` two different speakers (Libri2Mix-style), SIR uniform in +-5 dB.

Loudness is the RMS over active 20 ms frames (frames within `GATE_DB` of the loudest one), so
zero padding does not change it and a gain g shifts it by exactly 20 log10 g: the returned
sources realise the requested level differences to float precision.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from codecsep.audio import load_audio, save_audio
from codecsep.data import augment
from codecsep.data.manifest import Clip

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms activity frames
GATE_DB = -40.0  # a frame is active when within 40 dB of the loudest frame
CROP_GATE_DB = -30.0  # activity used to pick non-silent crops, relative to the clip's peak frame
SILENCE_POWER = 1e-10  # mean square below this (-100 dBFS) is digital silence

PROMPT_MODES = ("label", "caption", "heldout")
SHORT_CLIP_MODES = ("pad", "loop")
BALANCE_MODES = ("label", "clip")


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_range(name: str, lo_hi):
    lo, hi = lo_hi
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {lo_hi!r}")


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (`codecsep.data.augment`), applied per clip before its level is set,
    so requested level differences stay exact."""

    gain_db: float = 6.0  # whole-mixture level jitter, +- dB (relative levels untouched)
    eq_prob: float = 0.3  # random first-order tilt EQ
    reverb_prob: float = 0.3  # exponentially decaying noise IR, RT60 0.1-0.8 s
    speed_prob: float = 0.5  # pitch + tempo together, by resampling
    speed_range: float = 0.05  # factor uniform in [1 - r, 1 + r]


@dataclass(frozen=True)
class MixConfig:
    """Settings every protocol shares."""

    duration_s: float = 4.0
    short_clips: str = "pad"  # "pad": zeros around a randomly placed clip; "loop": tile it
    prompt_mode: str = "label"  # "label" | "caption" | "heldout"
    balance: str = "label"  # "label": every class equally likely; "clip": every clip
    ref_level_db: float = -25.0  # active loudness (dBFS) of a source at relative level 0 dB
    peak_limit: float = 0.99  # everything is scaled down together if a peak exceeds this
    min_active_fraction: float = 0.5  # a crop is "not silent" with this share of active frames
    crop_tries: int = 8
    augment: bool = False  # False for evaluation sets
    augmentation: AugmentConfig = AugmentConfig()

    def __post_init__(self):
        _check_choice("short_clips", self.short_clips, SHORT_CLIP_MODES)
        _check_choice("prompt_mode", self.prompt_mode, PROMPT_MODES)
        _check_choice("balance", self.balance, BALANCE_MODES)
        if self.duration_s <= 0 or self.crop_tries < 1:
            raise ValueError("duration_s must be > 0 and crop_tries >= 1")


LOUDNESS_RANGES_DB = {"audiosep": (-10.0, 10.0), "snr": (-15.0, 15.0)}


@dataclass(frozen=True)
class TwoSourceConfig(MixConfig):
    # "audiosep": interferer level relative to target; "snr": target level relative to interferer
    loudness: str = "audiosep"
    level_range_db: tuple[float, float] | None = None  # None: +-10 (audiosep) or +-15 (snr)

    def __post_init__(self):
        super().__post_init__()
        _check_choice("loudness", self.loudness, tuple(LOUDNESS_RANGES_DB))
        _check_range("level_range_db", self.resolved_range_db)

    @property
    def resolved_range_db(self) -> tuple[float, float]:
        return self.level_range_db or LOUDNESS_RANGES_DB[self.loudness]


@dataclass(frozen=True)
class ThreeSourceConfig(MixConfig):
    level_range_db: tuple[float, float] = (-5.0, 5.0)  # each source, relative to ref_level_db

    def __post_init__(self):
        super().__post_init__()
        _check_range("level_range_db", self.level_range_db)


@dataclass(frozen=True)
class DnRConfig(MixConfig):
    speech_level_db: float = 0.0
    music_level_db: float = -7.0
    effects_level_db: float = -4.0
    stem_jitter_db: float = 2.0
    clip_jitter_db: float = 1.0  # between the effect clips summed into the effects stem
    n_effects: tuple[int, int] = (1, 3)

    def __post_init__(self):
        super().__post_init__()
        _check_range("n_effects", self.n_effects)
        if self.n_effects[0] < 1:
            raise ValueError(f"n_effects must be >= 1, got {self.n_effects!r}")


@dataclass(frozen=True)
class TwoSpeakerConfig(MixConfig):
    sir_db_range: tuple[float, float] = (-5.0, 5.0)  # (0.0, 0.0) for equal levels

    def __post_init__(self):
        super().__post_init__()
        _check_range("sir_db_range", self.sir_db_range)


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class Mixture:
    """One mixture. `mixture == sources.sum(0)` exactly; sources already carry their gains."""

    mixture: np.ndarray  # (T,) float32
    sources: np.ndarray  # (K, T) float32
    labels: tuple[str, ...]  # K class labels (effects stem: comma-joined labels)
    prompts: tuple[str, ...]  # K text prompts
    gains_db: tuple[float, ...]  # K gains applied to each (augmented, summed) source stem
    levels_db: tuple[float, ...]  # K active loudnesses (dBFS) of the returned sources
    clip_paths: tuple[tuple[str, ...], ...]  # per source, the clip(s) summed into it
    offsets_s: tuple[tuple[float, ...], ...]  # clip time at mixture time 0 (< 0: delayed clip)
    clip_gains_db: tuple[tuple[float, ...], ...]  # total gain of each clip in its source
    protocol: str
    seed: int
    index: int
    sample_rate: int = SAMPLE_RATE

    @property
    def n_sources(self) -> int:
        return self.sources.shape[0]


def collate_mixtures(batch: Sequence[Mixture]) -> dict:
    """DataLoader collate_fn: mixture (B, 1, T), sources (B, K, T), prompts/labels [B][K]."""
    return {
        "mixture": torch.from_numpy(np.stack([m.mixture for m in batch]))[:, None],
        "sources": torch.from_numpy(np.stack([m.sources for m in batch])),
        "levels_db": torch.tensor([m.levels_db for m in batch], dtype=torch.float32),
        "prompts": [list(m.prompts) for m in batch],
        "labels": [list(m.labels) for m in batch],
    }


# ----------------------------------------------------------------------------- loudness


def _frame_stats(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame sum of squares and sample counts over 20 ms frames (last frame partial)."""
    n_frames = max(1, math.ceil(len(wav) / FRAME))
    padded = np.zeros(n_frames * FRAME, dtype=np.float64)
    padded[: len(wav)] = wav
    energy = np.square(padded).reshape(n_frames, FRAME).sum(1)
    counts = np.full(n_frames, FRAME, dtype=np.float64)
    counts[-1] = len(wav) - (n_frames - 1) * FRAME or FRAME
    return energy, counts


def loudness_db(wav: np.ndarray, gate_db: float = GATE_DB) -> float:
    """Active loudness in dBFS: RMS over frames within `gate_db` of the loudest; -inf if silent.

    Scale-exact: loudness_db(g * x) == loudness_db(x) + 20 log10(g).
    """
    energy, counts = _frame_stats(np.asarray(wav, dtype=np.float64))
    power = energy / counts
    peak = power.max()
    if peak <= SILENCE_POWER:
        return -math.inf
    active = power >= peak * 10.0 ** (gate_db / 10.0)
    return 10.0 * math.log10(energy[active].sum() / counts[active].sum())


# ----------------------------------------------------------------------------- audio + cache


def _read_mono(path: str) -> np.ndarray:
    """Decode a file to (N,) mono float32 at 16 kHz (AudioError names a bad file)."""
    wav, _ = load_audio(path, sample_rate=SAMPLE_RATE, mono=True)
    return wav[0].numpy()


@dataclass(frozen=True)
class _Decoded:
    wav: np.ndarray  # (N,) float32, 16 kHz
    active_cumsum: np.ndarray  # (n_frames + 1,) cumulative count of active frames


def _decode(path: str) -> _Decoded:
    wav = _read_mono(path)
    energy, counts = _frame_stats(wav)
    power = energy / counts
    threshold = max(power.max() * 10.0 ** (CROP_GATE_DB / 10.0), SILENCE_POWER)
    active = power >= threshold
    return _Decoded(wav, np.concatenate([[0], np.cumsum(active)]))


class ClipAudioCache:
    """Small LRU cache of decoded clips (each DataLoader worker holds its own copy)."""

    def __init__(self, max_items: int = 256):
        self.max_items = max_items
        self._items: OrderedDict[str, _Decoded] = OrderedDict()

    def get(self, path: str) -> _Decoded:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        decoded = _decode(path)
        self._items[path] = decoded
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return decoded

    def __len__(self) -> int:
        return len(self._items)


# ----------------------------------------------------------------------------- augmentation


class _Augmenter:
    """Draws the per-clip augmentation of `codecsep.data.augment` from a config."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def speed(self, rng) -> float:
        r = self.cfg.speed_range
        factor = rng.uniform(1.0 - r, 1.0 + r)
        return factor if rng.random() < self.cfg.speed_prob else 1.0

    def filter(self, x: np.ndarray, rng) -> np.ndarray:
        if rng.random() < self.cfg.eq_prob:
            x = augment.tilt_eq(x, rng)
        if rng.random() < self.cfg.reverb_prob:
            x = augment.reverb(x, rng, SAMPLE_RATE)
        return np.asarray(x, dtype=np.float64)


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float64)
    out[: min(length, len(x))] = x[:length]
    return out


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class SourceDraw:
    """What a protocol chose for one source, before any audio is touched."""

    clips: tuple[Clip, ...]
    label: str
    prompt: str
    level_db: float  # requested loudness relative to the reference level
    clip_levels_db: tuple[float, ...] = ()  # relative levels of the clips summed (default 0 dB)


@dataclass
class _RenderedSource:
    stem: np.ndarray  # (T,) float64, before the source gain
    offsets_s: tuple[float, ...]
    clip_gains_db: tuple[float, ...]


def _extract(wav: np.ndarray, offset: int, length: int, loop: bool) -> np.ndarray:
    """Samples [offset, offset + length) of `wav`; outside the clip: zeros, or wrap if loop."""
    if loop:
        return wav[(offset + np.arange(length)) % len(wav)].astype(np.float64)
    out = np.zeros(length, dtype=np.float64)
    start, stop = max(0, offset), min(len(wav), offset + length)
    if stop > start:
        out[start - offset : stop - offset] = wav[start:stop]
    return out


class _Renderer:
    """Crop/pad, augment, level and sum sources: the one core every protocol uses."""

    def __init__(self, cfg: MixConfig, cache: ClipAudioCache):
        self.cfg = cfg
        self.cache = cache
        self.length = int(round(cfg.duration_s * SAMPLE_RATE))
        self.augmenter = _Augmenter(cfg.augmentation)

    def choose_offset(self, decoded: _Decoded, need: int, rng) -> int:
        n = len(decoded.wav)
        if n < need:
            if self.cfg.short_clips == "loop":
                return int(rng.integers(0, n))
            return -int(rng.integers(0, need - n + 1))  # delay the clip inside the window
        starts = rng.integers(0, n - need + 1, size=self.cfg.crop_tries)
        cs = decoded.active_cumsum
        first, last = starts // FRAME, np.minimum((starts + need) // FRAME, len(cs) - 1)
        fraction = (cs[last] - cs[first]) / np.maximum(last - first, 1)
        good = np.flatnonzero(fraction >= self.cfg.min_active_fraction)
        return int(starts[good[0]] if len(good) else starts[np.argmax(fraction)])

    def piece(self, clip: Clip, rng_crop, rng_aug) -> tuple[np.ndarray, float]:
        decoded = self.cache.get(clip.path)
        speed = self.augmenter.speed(rng_aug) if self.cfg.augment else 1.0
        need = self.length if speed == 1.0 else int(math.ceil(self.length * speed)) + 16
        offset = self.choose_offset(decoded, need, rng_crop)
        x = _extract(decoded.wav, offset, need, loop=self.cfg.short_clips == "loop")
        if speed != 1.0:
            x = _fit(augment.change_speed(x, speed), self.length)
        if self.cfg.augment:
            x = self.augmenter.filter(x, rng_aug)
        return x, offset / SAMPLE_RATE

    def source(self, draw: SourceDraw, rng_crop, rng_aug) -> _RenderedSource:
        levels = draw.clip_levels_db or (0.0,) * len(draw.clips)
        pieces, offsets, gains = [], [], []
        for clip, level in zip(draw.clips, levels, strict=True):
            x, offset_s = self.piece(clip, rng_crop, rng_aug)
            # single clips keep their scale (the source gain sets the level); summed clips are
            # first brought to their relative levels so no clip drowns the others
            gain = _gain_to(x, level) if len(draw.clips) > 1 else 0.0
            pieces.append(x * 10.0 ** (gain / 20.0))
            offsets.append(offset_s)
            gains.append(gain)
        return _RenderedSource(np.sum(pieces, axis=0), tuple(offsets), tuple(gains))

    def render(self, draws: list[SourceDraw], rngs, protocol: str, seed: int, index: int):
        rng_crop, rng_aug = rngs
        rendered = [self.source(d, rng_crop, rng_aug) for d in draws]
        ref = self.cfg.ref_level_db
        if self.cfg.augment:
            ref += rng_aug.uniform(-1, 1) * self.cfg.augmentation.gain_db
        gains = np.array([_gain_to(r.stem, ref + d.level_db) for r, d in zip(rendered, draws)])
        stems = np.stack([r.stem for r in rendered]) * (10.0 ** (gains / 20.0))[:, None]
        peak = max(np.abs(stems).max(), np.abs(stems.sum(0)).max())
        limit = min(1.0, self.cfg.peak_limit / peak) if peak > 0 else 1.0
        limit_db = 20.0 * math.log10(limit)
        sources = (stems * 10.0 ** (limit_db / 20.0)).astype(np.float32)
        levels = [loudness_db(s) for s in sources]
        return Mixture(
            mixture=sources.sum(0),
            sources=sources,
            labels=tuple(d.label for d in draws),
            prompts=tuple(d.prompt for d in draws),
            gains_db=tuple(float(g + limit_db) for g in gains),
            levels_db=tuple(float(v) for v in levels),
            clip_paths=tuple(tuple(c.path for c in d.clips) for d in draws),
            offsets_s=tuple(r.offsets_s for r in rendered),
            clip_gains_db=tuple(
                tuple(float(cg + g + limit_db) for cg in r.clip_gains_db)
                for r, g in zip(rendered, gains)
            ),
            protocol=protocol,
            seed=seed,
            index=index,
        )


def _gain_to(x: np.ndarray, target_db: float) -> float:
    """Gain (dB) that brings x's active loudness to target_db; 0 dB for a silent signal."""
    current = loudness_db(x)
    return target_db - current if math.isfinite(current) else 0.0


# ----------------------------------------------------------------------------- selection


class _Pool:
    """Clips grouped by a key (label, category, speaker); sorted keys keep draws reproducible."""

    def __init__(self, clips: Sequence[Clip], key, balance: str = "label"):
        groups: dict[str, list[Clip]] = {}
        for clip in clips:
            groups.setdefault(key(clip), []).append(clip)
        self.keys = sorted(groups)
        self.groups = groups
        self.balance = balance

    def pick_keys(self, rng, n: int, exclude=()) -> list[str]:
        keys = [k for k in self.keys if k not in exclude]
        weights = np.array([len(self.groups[k]) if self.balance == "clip" else 1 for k in keys])
        chosen = rng.choice(len(keys), size=n, replace=False, p=weights / weights.sum())
        return [keys[i] for i in chosen]

    def pick_clip(self, rng, key: str) -> Clip:
        group = self.groups[key]
        return group[int(rng.integers(len(group)))]


def _load_heldout() -> dict:
    try:
        from codecsep.data.captions import PARAPHRASES_HELDOUT
    except ImportError as e:
        raise ValueError(
            "prompt_mode='heldout' needs codecsep.data.captions.PARAPHRASES_HELDOUT, "
            f"which is not available ({e}); use prompt_mode='label' or 'caption'"
        ) from e
    return PARAPHRASES_HELDOUT


class _Prompter:
    def __init__(self, mode: str, labels):
        self.mode = mode
        self.heldout = _load_heldout() if mode == "heldout" else {}
        missing = sorted(set(labels) - set(self.heldout)) if mode == "heldout" else []
        if missing:
            raise ValueError(f"no held-out paraphrases for labels: {missing}")

    def __call__(self, label: str, clip: Clip, rng) -> str:
        choices = {"label": (label,), "caption": clip.captions}.get(self.mode)
        if choices is None:
            choices = self.heldout[label]
        return choices[int(rng.integers(len(choices)))]


# ----------------------------------------------------------------------------- protocols


class MixtureProtocol:
    """Base: subclasses pick `SourceDraw`s; the shared renderer makes the audio."""

    name: ClassVar[str]
    config_class: ClassVar[type[MixConfig]]

    def __init__(self, clips: Sequence[Clip], config: MixConfig | None = None, cache_size=256):
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{self.name} needs a {self.config_class.__name__}")
        self.clips = list(clips)
        if not self.clips:
            raise ValueError(f"{self.name}: no clips")
        self.renderer = _Renderer(self.config, ClipAudioCache(cache_size))
        self.prompter = _Prompter(self.config.prompt_mode, self._prompt_labels())

    def draw(self, index: int, seed: int = 0) -> Mixture:
        """Mixture number `index` under `seed`: always the same for the same clips and config."""
        if index < 0 or seed < 0:
            raise ValueError(f"index and seed must be >= 0, got {index}, {seed}")
        rng_pick, rng_prompt, rng_crop, rng_aug = (
            np.random.default_rng((seed, index, stream)) for stream in range(4)
        )
        draws = self.choose(rng_pick, rng_prompt)
        return self.renderer.render(draws, (rng_crop, rng_aug), self.name, seed, index)

    def choose(self, rng, rng_prompt) -> list[SourceDraw]:
        raise NotImplementedError

    def _prompt_labels(self) -> set[str]:
        return {c.label for c in self.clips}


def _need(pool: _Pool, n: int, what: str, protocol: str):
    if len(pool.keys) < n:
        raise ValueError(f"{protocol} needs >= {n} distinct {what}, found {pool.keys}")


class TwoSource(MixtureProtocol):
    name = "two_source"
    config_class = TwoSourceConfig

    def __init__(self, clips, config=None, cache_size=256):
        super().__init__(clips, config, cache_size)
        self.pool = _Pool(self.clips, lambda c: c.label, self.config.balance)
        _need(self.pool, 2, "labels", self.name)

    def choose(self, rng, rng_prompt):
        labels = self.pool.pick_keys(rng, 2)
        clips = [self.pool.pick_clip(rng, label) for label in labels]
        diff = rng.uniform(*self.config.resolved_range_db)
        # audiosep: interferer relative to target; snr: target relative to interferer
        levels = (0.0, diff) if self.config.loudness == "audiosep" else (0.0, -diff)
        return [
            SourceDraw((c,), c.label, self.prompter(c.label, c, rng_prompt), lv)
            for c, lv in zip(clips, levels)
        ]


class ThreeSource(MixtureProtocol):
    name = "three_source"
    config_class = ThreeSourceConfig

    def __init__(self, clips, config=None, cache_size=256):
        super().__init__(clips, config, cache_size)
        self.pool = _Pool(self.clips, lambda c: c.label, self.config.balance)
        _need(self.pool, 3, "labels", self.name)

    def choose(self, rng, rng_prompt):
        labels = self.pool.pick_keys(rng, 3)
        clips = [self.pool.pick_clip(rng, label) for label in labels]
        levels = rng.uniform(*self.config.level_range_db, size=3)
        return [
            SourceDraw((c,), c.label, self.prompter(c.label, c, rng_prompt), float(lv))
            for c, lv in zip(clips, levels)
        ]


class DnR(MixtureProtocol):
    """Sources in order: speech, music, effects (1-3 clips of distinct labels, summed)."""

    name = "dnr"
    config_class = DnRConfig
    _cats = ("speech", "music", "sfx")

    def __init__(self, clips, config=None, cache_size=256):
        super().__init__(clips, config, cache_size)
        by_category = {cat: [c for c in self.clips if c.category == cat] for cat in self._cats}
        empty = [cat for cat, group in by_category.items() if not group]
        if empty:
            raise ValueError(f"dnr needs clips of category speech, music and sfx; none for {empty}")
        self.speech = by_category["speech"]
        self.music = by_category["music"]
        self.effects = _Pool(by_category["sfx"], lambda c: c.label, self.config.balance)

    def _prompt_labels(self):
        return {"speech", "music"} | {c.label for c in self.clips if c.category == "sfx"}

    def choose(self, rng, rng_prompt):
        cfg = self.config
        speech = self.speech[int(rng.integers(len(self.speech)))]
        music = self.music[int(rng.integers(len(self.music)))]
        n = int(rng.integers(cfg.n_effects[0], cfg.n_effects[1] + 1))
        labels = self.effects.pick_keys(rng, min(n, len(self.effects.keys)))
        effects = tuple(self.effects.pick_clip(rng, label) for label in labels)
        jitter = rng.uniform(-1, 1, size=3) * cfg.stem_jitter_db
        clip_levels = tuple(rng.uniform(-1, 1, size=len(effects)) * cfg.clip_jitter_db)
        effect_prompt = ", ".join(self.prompter(c.label, c, rng_prompt) for c in effects)
        return [
            SourceDraw((speech,), "speech", self.prompter("speech", speech, rng_prompt),
                       cfg.speech_level_db + jitter[0]),
            SourceDraw((music,), "music", self.prompter("music", music, rng_prompt),
                       cfg.music_level_db + jitter[1]),
            SourceDraw(effects, ", ".join(labels), effect_prompt,
                       cfg.effects_level_db + jitter[2], clip_levels),
        ]


def speaker_of(clip) -> str:
    """The speaker id: the corpus records it in `extra["speaker"]` (its source_id is the
    recording); public datasets without it use the source_id."""
    return clip.extra.get("speaker", clip.source_id)


class TwoSpeaker(MixtureProtocol):
    name = "two_speaker"
    config_class = TwoSpeakerConfig

    def __init__(self, clips, config=None, cache_size=256):
        speech = [c for c in clips if c.category == "speech"]
        super().__init__(speech, config, cache_size)
        # speakers, not clips, are balanced: prolific speakers would dominate otherwise
        self.pool = _Pool(self.clips, speaker_of, "label")
        _need(self.pool, 2, "speakers of category speech", self.name)

    def choose(self, rng, rng_prompt):
        speakers = self.pool.pick_keys(rng, 2)
        clips = [self.pool.pick_clip(rng, s) for s in speakers]
        sir = rng.uniform(*self.config.sir_db_range)
        return [
            SourceDraw((c,), c.label, self.prompter(c.label, c, rng_prompt), lv)
            for c, lv in zip(clips, (0.0, -sir))
        ]


PROTOCOLS: dict[str, type[MixtureProtocol]] = {
    cls.name: cls for cls in (TwoSource, ThreeSource, DnR, TwoSpeaker)
}


def make_protocol(name: str, clips: Sequence[Clip], config: MixConfig | dict | None = None):
    """Build a protocol by name; a dict config is checked against the protocol's dataclass."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown mixture protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    cls = PROTOCOLS[name]
    if isinstance(config, dict):
        config = _config_from_dict(cls.config_class, config)
    return cls(clips, config)


def _config_from_dict(config_class: type[MixConfig], values: dict) -> MixConfig:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if isinstance(values.get("augmentation"), dict):
        values["augmentation"] = AugmentConfig(**values["augmentation"])
    try:
        return config_class(**values)
    except TypeError as e:  # unknown key
        raise ValueError(f"bad {config_class.__name__}: {e}") from e


# ----------------------------------------------------------------------------- datasets


class MixtureDataset(torch.utils.data.Dataset):
    """Map-style: item i is `protocol.draw(i, seed)`. Use `collate_fn=collate_mixtures`."""

    def __init__(self, protocol: MixtureProtocol, length: int, seed: int = 0):
        self.protocol, self.length, self.seed = protocol, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Mixture:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.protocol.draw(index, self.seed)


class MixtureStream(torch.utils.data.IterableDataset):
    """Infinite training stream; each (rank, worker) shard draws a disjoint set of indices.

    Shard s of n yields indices start + s, start + s + n, ...: pass `start` = items already
    consumed to resume a run where it stopped.
    """

    def __init__(self, protocol: MixtureProtocol, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.protocol, self.seed, self.start = protocol, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        n_shards = self.world_size * n_workers
        index = self.start + self.rank * n_workers + worker
        while True:
            yield self.protocol.draw(index, self.seed)
            index += n_shards


# ----------------------------------------------------------------------------- eval sets

EVAL_COLUMNS = (
    "mixture_id", "mixture_path", "source_index", "source_path", "label", "prompt", "gain_db",
    "clip_path", "offset_s", "protocol", "seed",
    "level_db", "clip_gain_db",  # ours, after AudioSep's columns
)
MULTI_SEP = ";"  # joins the clips of one source (effects stems) inside a cell
EVAL_SUBTYPES = ("FLOAT", "PCM_16", "PCM_24")


def _mixture_id(protocol: str, seed: int, index: int) -> str:
    return f"{protocol}-s{seed}-{index:06d}"


def _eval_rows(m: Mixture, mixture_id: str) -> list[dict]:
    return [
        {
            "mixture_id": mixture_id,
            "mixture_path": f"mixtures/{mixture_id}.wav",
            "source_index": k,
            "source_path": f"sources/{mixture_id}_s{k}.wav",
            "label": m.labels[k],
            "prompt": m.prompts[k],
            "gain_db": f"{m.gains_db[k]:.4f}",
            "clip_path": MULTI_SEP.join(m.clip_paths[k]),
            "offset_s": MULTI_SEP.join(f"{o:.5f}" for o in m.offsets_s[k]),
            "protocol": m.protocol,
            "seed": m.seed,
            "level_db": f"{m.levels_db[k]:.4f}",
            "clip_gain_db": MULTI_SEP.join(f"{g:.4f}" for g in m.clip_gains_db[k]),
        }
        for k in range(m.n_sources)
    ]


def _prepare_target(out_dir: Path, overwrite: bool):
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=True)")
        if not (out_dir / "metadata.csv").is_file():
            raise FileExistsError(f"refusing to replace {out_dir}: it has no metadata.csv")


def write_eval_set(protocol: MixtureProtocol, n_items: int, out_dir, seed: int, *,
                   overwrite: bool = False, subtype: str = "FLOAT") -> Path:
    """Render items 0..n_items-1 to 16 kHz wavs + metadata.csv (one row per source).

    Written to a temporary sibling and renamed, so a set is complete or absent. FLOAT keeps
    mixture == sum(sources) exact; PCM_16 halves the size at ~1e-4 quantisation error.
    """
    _check_choice("subtype", subtype, EVAL_SUBTYPES)
    out_dir = Path(out_dir)
    _prepare_target(out_dir, overwrite)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_eval_files(protocol, n_items, tmp, seed, subtype)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, out_dir)
    return out_dir


def _write_eval_files(protocol: MixtureProtocol, n_items: int, tmp: Path, seed: int, subtype):
    (tmp / "mixtures").mkdir(parents=True)
    (tmp / "sources").mkdir()
    rows = []
    for index in range(n_items):
        m = protocol.draw(index, seed)
        mixture_id = _mixture_id(protocol.name, seed, index)
        item_rows = _eval_rows(m, mixture_id)
        save_audio(tmp / item_rows[0]["mixture_path"], m.mixture, SAMPLE_RATE, subtype=subtype)
        for row, source in zip(item_rows, m.sources):
            save_audio(tmp / row["source_path"], source, SAMPLE_RATE, subtype=subtype)
        rows.extend(item_rows)
    with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    info = {"protocol": protocol.name, "config": asdict(protocol.config), "seed": seed,
            "n_items": n_items, "sample_rate": SAMPLE_RATE, "subtype": subtype}
    (tmp / "protocol.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def _swap_into_place(tmp: Path, out_dir: Path):
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True, eq=False)
class EvalSet(Sequence):
    """A written evaluation set; items (Mixture) are loaded lazily from disk."""

    root: Path
    ids: tuple[str, ...]
    rows: dict = field(repr=False)  # mixture_id -> list of metadata rows (one per source)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i) -> Mixture:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rows = self.rows[self.ids[i]]
        sources = np.stack([_read_mono(str(self.root / r["source_path"])) for r in rows])
        return Mixture(
            mixture=_read_mono(str(self.root / rows[0]["mixture_path"])),
            sources=sources,
            labels=tuple(r["label"] for r in rows),
            prompts=tuple(r["prompt"] for r in rows),
            gains_db=tuple(float(r["gain_db"]) for r in rows),
            levels_db=tuple(float(r["level_db"]) for r in rows),
            clip_paths=tuple(_cells(r["clip_path"]) for r in rows),
            offsets_s=tuple(_cells(r["offset_s"], float) for r in rows),
            clip_gains_db=tuple(_cells(r["clip_gain_db"], float) for r in rows),
            protocol=rows[0]["protocol"],
            seed=int(rows[0]["seed"]),
            index=int(self.ids[i].rsplit("-", 1)[-1]),
        )


def _cells(cell: str, cast=str) -> tuple:
    return tuple(cast(v) for v in cell.split(MULTI_SEP) if v)


def read_eval_set(root) -> EvalSet:
    """Open a set written by `write_eval_set`."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"not an evaluation set: missing {meta}")
    rows: dict[str, list[dict]] = {}
    with open(meta, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["mixture_id"], []).append(row)
    for group in rows.values():
        group.sort(key=lambda r: int(r["source_index"]))
    return EvalSet(root, tuple(rows), rows)


__all__ = [
    "SAMPLE_RATE", "AugmentConfig", "MixConfig", "TwoSourceConfig", "ThreeSourceConfig",
    "DnRConfig", "TwoSpeakerConfig", "Mixture", "SourceDraw", "MixtureProtocol", "TwoSource",
    "ThreeSource", "DnR", "TwoSpeaker", "PROTOCOLS", "make_protocol", "loudness_db",
    "ClipAudioCache", "MixtureDataset", "MixtureStream", "collate_mixtures", "write_eval_set",
    "read_eval_set", "EvalSet",
]
