"""Audio I/O: read, write, resample, with one-line errors that name the file and the problem.

Shapes: a waveform is `(C, T)` float32 (channels, samples); helpers that accept batches take any
leading dims `(..., T)`.

Multi-channel policy: `load_audio` keeps every channel, `(C, T)`, so a separator separates each
channel on its own and writes the same number of channels back; `mono=True` downmixes by averaging
the channels. Nothing is ever silently dropped.

Levels: integer PCM is scaled to [-1, 1] by soundfile; floating-point files are returned as stored
(values beyond +-1 are kept, not clipped). Writing to a fixed-point or lossy subtype clips to
[-1, 1] and warns once per written file; NaN or infinite samples are refused on read and on write.

Writes are atomic: the data goes to a hidden temporary file in the destination directory, which
is then moved into place (`os.replace`), so a crash never leaves a half-written file behind.
An existing file is never replaced unless `overwrite=True`.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import AudioError

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
# Extensions `load_audio` reads (all through libsndfile) and `list_audio_files` lists.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
# Extension -> (libsndfile format, default subtype) for `save_audio`.
OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
# Subtypes that store floats as they are; every other subtype clips to [-1, 1].
FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
SOXR_QUALITY = "HQ"


class ClippingWarning(UserWarning):
    """Samples beyond [-1, 1] were clipped when writing a fixed-point or lossy file. `summary`
    says what was clipped (the message adds how the API keeps the samples)."""

    def __init__(self, path: Path, count: int, peak: float):
        self.summary = f"{path}: clipped {count} samples to [-1, 1] (peak {peak:.3f})"
        super().__init__(f"{self.summary}; write subtype='FLOAT' to keep them")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = False,
    allowed_rates: Iterable[int] | None = None,
) -> tuple[torch.Tensor, int]:
    """Read an audio file (wav, flac, ogg, mp3, aiff) as a `(C, T)` float32 tensor.

    The file's own rate must lie in [8 kHz, 192 kHz] and, when `allowed_rates` is given, be one
    of them. With `sample_rate` the audio is resampled (soxr, high quality) and that rate is
    returned; otherwise the file's rate is. `mono=True` averages the channels into `(1, T)`.
    Raises `AudioError` with a one-line message naming the file and the problem.
    """
    path = Path(path)
    _check_readable(path)
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{path}: cannot read audio ({_one_line(e)})") from e
    _check_rate(file_rate, path, allowed_rates)
    _check_samples(data, data.shape[0], path)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        wav = to_mono(wav)
    if sample_rate is not None and sample_rate != file_rate:
        _check_rate(sample_rate, path, None, what="requested sample rate")
        wav = resample(wav, file_rate, sample_rate)
        file_rate = sample_rate
    return wav, int(file_rate)


def _check_readable(path: Path) -> None:
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioError(f"{path}: no such file")


def check_audio_file(path: str | Path, block: int = 1 << 16) -> None:
    """Refuse now what `load_audio` would refuse later (unreadable, empty, bad rate, NaN or
    infinite samples), reading the file in blocks so a long file costs no more than a block."""
    path = Path(path)
    _check_readable(path)
    try:
        info = sf.info(str(path))
        _check_rate(info.samplerate, path, None)
        _check_samples(None, info.frames, path)
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            _check_samples(chunk, info.frames, path)
    except AudioError:
        raise
    except (sf.SoundFileError, RuntimeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({_one_line(e)})") from e


def _check_samples(data: np.ndarray | None, frames: int, path: Path) -> None:
    """What `load_audio` refuses in a file's samples: none at all, or NaN / infinite ones."""
    if frames == 0:
        raise AudioError(f"{path}: empty audio file (0 samples)")
    if data is not None and not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")


def _check_rate(
    rate: int, path: Path, allowed_rates: Iterable[int] | None, what: str = "sample rate"
) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{path}: unsupported {what} {rate} Hz "
            f"(supported: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )
    if allowed_rates is not None:
        allowed = sorted(int(r) for r in allowed_rates)
        if rate not in allowed:
            raise AudioError(
                f"{path}: unsupported {what} {rate} Hz (allowed: "
                + ", ".join(str(r) for r in allowed)
                + " Hz)"
            )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def list_audio_files(directory: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Audio files (known extensions, any case) in `directory`, sorted by path; hidden files
    (a name starting with ".", such as macOS's "._song.wav") are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        problem = "not a directory" if directory.exists() else "no such directory"
        raise AudioError(f"{directory}: {problem}")
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(
        p for p in candidates
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def save_audio(
    path: str | os.PathLike,
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    overwrite: bool = False,
    subtype: str | None = None,
) -> Path:
    """Write a `(C, T)` or `(T,)` waveform atomically; the format comes from the extension.

    `.wav` and `.flac` default to PCM_16, `.ogg` to VORBIS; pass `subtype` (e.g. "FLOAT",
    "PCM_24") to choose. Fixed-point and lossy subtypes clip to [-1, 1] (with a `ClippingWarning`);
    NaN/inf samples are refused. Parent directories are created. Returns the written path.
    """
    path = Path(path)
    fmt, subtype = _output_format(path, subtype)
    data = _as_channels_first(wav, path)
    _check_rate(int(sample_rate), path, None)
    if subtype not in FLOAT_SUBTYPES:
        data = _clip(data, path)

    def write(f: BinaryIO) -> None:
        sf.write(f, data.T, int(sample_rate), subtype=subtype, format=fmt)

    return _atomic_write(path, write, overwrite)


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write `data` to `path` atomically (temp file + `os.replace`), refusing to overwrite."""
    return _atomic_write(Path(path), lambda f: f.write(data), overwrite)


def _output_format(path: Path, subtype: str | None) -> tuple[str, str]:
    ext = path.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise AudioError(
            f"{path}: unsupported output format {ext or '(no extension)'!r} "
            f"(use {', '.join(OUTPUT_FORMATS)})"
        )
    fmt, default = OUTPUT_FORMATS[ext]
    subtype = (subtype or default).upper()
    if not sf.check_format(fmt, subtype):
        raise AudioError(
            f"{path}: subtype {subtype!r} is not valid for {fmt} files "
            f"(choose from {', '.join(sorted(sf.available_subtypes(fmt)))})"
        )
    return fmt, subtype


def _float_array(wav: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    """The waveform as a float32 numpy array (float64 stays float64); integers are refused."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
        if wav.is_floating_point() and wav.dtype != torch.float64:
            wav = wav.float()  # half / bfloat16 have no numpy equivalent
        wav = wav.numpy()
    data = np.asarray(wav)
    if data.dtype.kind != "f":
        raise AudioError(
            f"{path}: expected a floating-point waveform in [-1, 1], got dtype {data.dtype}"
        )
    return data.astype(np.float64 if data.dtype == np.float64 else np.float32, copy=False)


def _as_channels_first(wav: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    data = _float_array(wav, path)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise AudioError(f"{path}: expected a (C, T) or (T,) waveform, got shape {data.shape}")
    if data.shape[1] == 0:
        raise AudioError(f"{path}: refusing to write an empty waveform (0 samples)")
    if data.shape[0] > data.shape[1]:
        raise AudioError(
            f"{path}: waveform of shape {data.shape} has more channels than samples; "
            "expected (C, T), not (T, C)"
        )
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    return data


def _clip(data: np.ndarray, path: Path) -> np.ndarray:
    over = np.abs(data) > 1.0
    if not over.any():
        return data
    warnings.warn(ClippingWarning(path, int(over.sum()), float(np.abs(data).max())),
                  stacklevel=3)
    return np.clip(data, -1.0, 1.0)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object], overwrite: bool) -> Path:
    """Write through `write(file)` into a temp file beside `path`, then move it into place."""
    if path.is_dir():
        raise AudioError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise AudioError(f"{path}: already exists (pass overwrite=True to replace it)")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0o666 so the final file gets the usual umask-derived mode (mkstemp would leave 0600).
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise AudioError(f"{path}: cannot write ({_one_line(e)})") from e
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, path, overwrite)
    except (OSError, sf.SoundFileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{path}: cannot write ({_one_line(e)})") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # a hard link fails if `path` appeared meanwhile: no check-then-replace race
        os.link(tmp, path)
    except FileExistsError as e:
        raise AudioError(f"{path}: already exists (pass overwrite=True to replace it)") from e
    except OSError:  # filesystems without hard links
        if path.exists():
            raise AudioError(f"{path}: already exists (pass overwrite=True to replace it)")
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------------------------
def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample `(..., T)` with soxr (high quality); same dtype and device, not differentiable.

    The output has `round(T * new_sr / orig_sr)` samples, as soxr produces them.
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wav
    if wav.shape[-1] == 0:
        raise ValueError("cannot resample an empty waveform (0 samples)")
    dtype = np.float64 if wav.dtype == torch.float64 else np.float32
    flat = wav.detach().cpu().reshape(-1, wav.shape[-1]).numpy().astype(dtype, copy=False)
    # soxr wants (frames, channels); every leading row is resampled as one channel.
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, new_sr, quality=SOXR_QUALITY)
    out = torch.from_numpy(np.ascontiguousarray(out.T)).to(wav.device, wav.dtype)
    return out.reshape(*wav.shape[:-1], out.shape[-1])


def level_db(x: torch.Tensor) -> float:
    """Mean power of a signal in dB (full scale = 0 dB for a unit-RMS signal); about -300 for silence."""
    return 10 * torch.log10(x.double().pow(2).mean() + 1e-30).item()


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """Average the channels: `(..., C, T)` -> `(..., 1, T)`."""
    if wav.ndim < 2:
        raise ValueError(f"to_mono expects (..., C, T), got shape {tuple(wav.shape)}")
    return wav.mean(dim=-2, keepdim=True)


def spectrogram_db(wav, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """(T,) or (C, T) waveform (the channel mean) -> (n_fft // 2 + 1, frames) power spectrogram
    in dB, floored at -120 dB; input shorter than one frame is zero-padded. The one spectrogram
    the demo, the web app, `eval`'s example plots and the clip sheets draw."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    x = x.mean(0) if x.ndim == 2 else x
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    return (10 * torch.log10(spec.abs().pow(2) + 1e-12)).clamp_min(-120).numpy()
