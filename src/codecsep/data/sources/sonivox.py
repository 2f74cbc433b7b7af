"""Render a MIDI file with the Sonivox EAS synthesizer (Debian `libsonivox3`, Apache-2.0).

Sonivox is the General MIDI wavetable synthesizer Sonic Network wrote for phones (Android's MIDI
player until 2022); its library carries its own small GM sample set, recorded independently of the
SoundFont banks, so it is one more instrument bank. No binary renders files with it, so this drives
the shared library through ctypes: the library is only unpacked from its .deb (nothing installed),
reads the MIDI bytes through two callbacks and renders 16-bit stereo at its own rate (22,050 Hz),
which is resampled here to the rate asked for and written as mono.

The structures mirror `sonivox/eas.h` and `eas_types.h` of version 3.6 (EAS_I32 is a C long).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import torch

LIBRARY_GLOB = "usr/lib/*/libsonivox.so.3"
EAS_STATE_STOPPED, EAS_STATE_ERROR = 4, 7

_READ_AT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
_SIZE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _EasFile(ctypes.Structure):  # EAS_FILE: an opaque handle and two callbacks
    _fields_ = [("handle", ctypes.c_void_p), ("readAt", _READ_AT), ("size", _SIZE)]


class _LibConfig(ctypes.Structure):  # S_EAS_LIB_CONFIG
    _fields_ = [("libVersion", ctypes.c_ulong), ("checkedVersion", ctypes.c_int),
                ("maxVoices", ctypes.c_long), ("numChannels", ctypes.c_long),
                ("sampleRate", ctypes.c_long), ("mixBufferSize", ctypes.c_long),
                ("filterEnabled", ctypes.c_int), ("buildTimeStamp", ctypes.c_ulong),
                ("buildGUID", ctypes.c_char_p)]


def library_path(package_root: str | Path) -> Path:
    """The shared library inside the unpacked `libsonivox3` package."""
    found = sorted(Path(package_root).glob(LIBRARY_GLOB))
    if not found:
        raise FileNotFoundError(f"no {LIBRARY_GLOB} under {package_root}: is it libsonivox3?")
    return found[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        raise RuntimeError(f"sonivox {what} failed with EAS error {result}")


def render_midi(library: str | Path, midi: str | Path) -> tuple[np.ndarray, int]:
    """Render `midi`; returns (mono float32 samples, sample rate of the synthesizer)."""
    lib = ctypes.CDLL(str(library))
    lib.EAS_Config.restype = ctypes.POINTER(_LibConfig)
    config = lib.EAS_Config().contents
    data = Path(midi).read_bytes()
    buffer = ctypes.create_string_buffer(data, len(data))

    def read_at(_handle, dst, offset, size):
        n = max(0, min(size, len(data) - offset))
        ctypes.memmove(dst, ctypes.addressof(buffer) + offset, n)
        return n

    # the callbacks must outlive the render: keep them referenced in this frame
    read_cb, size_cb = _READ_AT(read_at), _SIZE(lambda _handle: len(data))
    locator = _EasFile(ctypes.cast(buffer, ctypes.c_void_p), read_cb, size_cb)  # handle must be non-NULL
    eas, stream = ctypes.c_void_p(), ctypes.c_void_p()
    _check(lib.EAS_Init(ctypes.byref(eas)), "init")
    try:
        _check(lib.EAS_OpenFile(eas, ctypes.byref(locator), ctypes.byref(stream)), f"open {midi}")
        _check(lib.EAS_Prepare(eas, stream), "prepare")
        channels, frames = int(config.numChannels), int(config.mixBufferSize)
        pcm = (ctypes.c_short * (frames * channels))()
        done, state, blocks = ctypes.c_long(), ctypes.c_long(), []
        while True:
            _check(lib.EAS_Render(eas, pcm, frames, ctypes.byref(done)), "render")
            blocks.append(np.frombuffer(pcm, dtype=np.int16)[: done.value * channels].copy())
            _check(lib.EAS_State(eas, stream, ctypes.byref(state)), "state")
            if state.value in (EAS_STATE_STOPPED, EAS_STATE_ERROR):
                break
        _check(lib.EAS_CloseFile(eas, stream), "close")
    finally:
        lib.EAS_Shutdown(eas)
    x = np.concatenate(blocks).reshape(-1, channels).astype(np.float32) / 32768.0
    return x.mean(axis=1), int(config.sampleRate)


def render_to_wav(library: str | Path, midi: str | Path, wav: str | Path, sample_rate: int) -> None:
    """Render `midi` to a mono wav at `sample_rate` (written in place, as fluidsynth's -F does)."""
    import soundfile as sf

    from ...audio import resample

    x, sr = render_midi(library, midi)
    y = resample(torch.from_numpy(x)[None], sr, sample_rate)[0].numpy()
    sf.write(str(wav), y, sample_rate, subtype="PCM_16")
