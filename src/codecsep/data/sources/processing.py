"""Turn one source recording into clean clips: 16 kHz mono, trimmed, cut, checked, written.

Pure functions on arrays (`to_mono_16k`, `trim_silence`, `cut_segments`, `envelope_hash`) plus
`process_recording`, which a worker process runs on a file and which caches its result as JSON so a
re-run does no audio work for files already done.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_SR = 16000
FRAME = 160  # 10 ms at 16 kHz
MAX_CLIP_SECONDS = 10.0
MIN_ACTIVE_SECONDS = 0.2  # shorter sounds are dropped
MIN_CLIP_SECONDS = 0.5  # clips between MIN_ACTIVE and this are padded with trailing silence
SILENCE_DB = -55.0  # a recording whose loudest 10 ms frame is below this is near-silent
TRIM_BELOW_PEAK_DB = 45.0  # trim leading/trailing frames this far below the loudest frame
SEGMENT_BELOW_PEAK_DB = 35.0  # drop cut segments this far below the recording's loudest frame
PEAK_TARGET = 10 ** (-1 / 20)  # peak-normalise every recording to -1 dBFS
MAX_CLIPS_PER_RECORDING = 12  # long loops give at most this many clips (evenly spread)
CACHE_VERSION = "v2"  # bump when processing or fingerprints change: cached results are redone


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_mono_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """(T,) or (T, C) float audio at `sr` -> (T',) float32 mono at 16 kHz."""
    import soxr

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != TARGET_SR:
        x = soxr.resample(x, sr, TARGET_SR, quality="HQ").astype(np.float32)
    return x


def frame_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of consecutive 10 ms frames."""
    n = max(len(x) // FRAME, 1)
    padded = np.zeros(n * FRAME, np.float32)
    padded[: min(len(x), n * FRAME)] = x[: n * FRAME]
    rms = np.sqrt(np.mean(padded.reshape(n, FRAME) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms + 1e-12)


def trim_silence(x: np.ndarray, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing frames far below the loudest frame (keeps a small margin)."""
    db = frame_db(x)
    threshold = max(db.max() - TRIM_BELOW_PEAK_DB, SILENCE_DB - 10)
    active = np.flatnonzero(db > threshold)
    if active.size == 0:
        return x[:0]
    margin = int(margin_s * TARGET_SR)
    start = max(active[0] * FRAME - margin, 0)
    end = min((active[-1] + 1) * FRAME + margin, len(x))
    return x[start:end]


def cut_segments(n_samples: int, max_seconds: float = MAX_CLIP_SECONDS) -> list[tuple[int, int]]:
    """Equal-length (start, end) segments no longer than `max_seconds`."""
    max_len = int(max_seconds * TARGET_SR)
    n = max(1, math.ceil(n_samples / max_len))
    bounds = np.linspace(0, n_samples, n + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def envelope_hash(x: np.ndarray) -> str:
    """Fingerprint of a recording: equal for copies and re-encodes, rarely for distinct takes.

    A log-energy envelope (20 ms frames, 4 dB steps) plus the spectral centroid of each 100 ms
    frame in half-octave bands: the envelope alone confuses short clicks of different sources.
    """
    hop = TARGET_SR // 50
    n = max(len(x) // hop, 1)
    frames = np.zeros(n * hop, np.float32)
    frames[: min(len(x), n * hop)] = x[: n * hop]
    frames = frames.reshape(n, hop)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)
    rel = np.clip(db - db.max(), -40, 0)
    quant = np.round(rel / 4).astype(np.int8)
    spec = np.abs(np.fft.rfft(frames.reshape(-1)[: (n // 5) * 5 * hop].reshape(-1, 5 * hop),
                              axis=1)) if n >= 5 else np.abs(np.fft.rfft(frames.reshape(1, -1)))
    freqs = np.linspace(0, TARGET_SR / 2, spec.shape[1])
    centroid = (spec * freqs).sum(axis=1) / (spec.sum(axis=1) + 1e-9)
    bands = np.round(2 * np.log2(np.maximum(centroid, 50.0))).astype(np.int8)
    return hashlib.md5(quant.tobytes() + bands.tobytes() + str(n).encode()).hexdigest()


@dataclass
class ProcessResult:
    status: str  # "ok" or a drop reason
    md5: str
    env_hash: str = ""
    orig_sample_rate: int = 0
    orig_duration: float = 0.0
    clips: list = None  # [(file name, duration, padded)]

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _select_segments(x: np.ndarray, peak_db: float) -> list[tuple[int, int]]:
    segments = cut_segments(len(x))
    kept = [(a, b) for a, b in segments if frame_db(x[a:b]).max() > peak_db - SEGMENT_BELOW_PEAK_DB]
    if len(kept) > MAX_CLIPS_PER_RECORDING:
        pick = np.linspace(0, len(kept) - 1, MAX_CLIPS_PER_RECORDING).round().astype(int)
        kept = [kept[i] for i in sorted(set(pick))]
    return kept


def process_audio(x: np.ndarray, sr: int) -> tuple[str, list[np.ndarray]]:
    """(status, clips) for one recording's raw audio."""
    y = to_mono_16k(x, sr)
    if y.size == 0 or not np.isfinite(y).all():
        return "unreadable or empty", []
    peak_db = frame_db(y).max()
    if peak_db < SILENCE_DB:
        return "near-silent", []
    y = trim_silence(y)
    if len(y) < MIN_ACTIVE_SECONDS * TARGET_SR:
        return f"too short after trimming (<{MIN_ACTIVE_SECONDS}s)", []
    y = y * (PEAK_TARGET / max(np.abs(y).max(), 1e-9))
    clips = []
    for a, b in _select_segments(y, frame_db(y).max()):
        seg = y[a:b]
        if len(seg) < MIN_ACTIVE_SECONDS * TARGET_SR:
            continue
        if len(seg) < MIN_CLIP_SECONDS * TARGET_SR:
            seg = np.concatenate([seg, np.zeros(int(MIN_CLIP_SECONDS * TARGET_SR) - len(seg),
                                                np.float32)])
        clips.append(seg)
    return ("ok" if clips else "no clip survived the silence check"), clips


def process_recording(src: str, out_dir: str, stem: str, start_s: float = 0.0,
                      end_s: float | None = None) -> ProcessResult:
    """Process `src` (optionally only [start_s, end_s]) into out_dir/stem_KK.wav; cached."""
    import soundfile as sf

    out = Path(out_dir)
    meta = out / f"{stem}.{CACHE_VERSION}.json"
    if meta.exists():
        return ProcessResult(**json.loads(meta.read_text()))
    partial = start_s > 0 or end_s is not None
    md5 = "" if partial else file_md5(Path(src))  # a piece of a render: hash its samples below
    try:
        info = sf.info(src)
        start = int(start_s * info.samplerate)
        stop = None if end_s is None else int(end_s * info.samplerate)
        x, sr = sf.read(src, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a logged drop
        result = ProcessResult(status=f"unreadable: {type(e).__name__}", md5=md5)
    else:
        if partial:
            md5 = hashlib.md5(x.tobytes()).hexdigest()
        status, clips = process_audio(x, sr)
        result = ProcessResult(status=status, md5=md5, orig_sample_rate=int(sr),
                               orig_duration=round(len(x) / sr, 3), clips=[])
        if clips:
            result.env_hash = envelope_hash(np.concatenate(clips))
            out.mkdir(parents=True, exist_ok=True)
            for k, clip in enumerate(clips):
                name = f"{stem}_{k:02d}.wav"
                sf.write(out / name, clip, TARGET_SR, subtype="PCM_16")
                result.clips.append((name, round(len(clip) / TARGET_SR, 3)))
    out.mkdir(parents=True, exist_ok=True)
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(result.to_json())
    tmp.replace(meta)
    return result
