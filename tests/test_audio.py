"""codecsep.audio: round trips, resampling, and one-line errors that leave the disk untouched."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codecsep import audio
from codecsep.audio import (
    ClippingWarning,
    atomic_write_bytes,
    list_audio_files,
    load_audio,
    resample,
    save_audio,
    to_mono,
)
from codecsep.errors import AudioError, CodecSepError

SR = 16_000


def sine(freq: float, n: int, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / sr).float()


def stereo(n: int = 4000) -> torch.Tensor:
    return torch.stack([sine(440, n), sine(660, n, amp=0.25)])


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (hidden ones too) with its content."""
    files = (p for p in directory.rglob("*") if p.is_file())
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def expect_error(match_parts: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for part in match_parts:
        assert part in message, (part, message)
    return message


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_pcm16_round_trip_keeps_channels(tmp_path, ext):
    wav = stereo()
    path = save_audio(tmp_path / f"x{ext}", wav, SR)
    assert path == tmp_path / f"x{ext}" and sf.info(path).subtype == "PCM_16"
    loaded, sr = load_audio(path)
    assert sr == SR and loaded.shape == (2, 4000) and loaded.dtype == torch.float32
    assert torch.allclose(loaded, wav, atol=1.5 / 32768)


def test_float_subtype_is_exact_and_not_clipped(tmp_path):
    wav = stereo() * 3.0  # beyond [-1, 1]: FLOAT stores it as is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_audio(tmp_path / "x.wav", wav, SR, subtype="float")
    loaded, _ = load_audio(tmp_path / "x.wav")
    assert sf.info(tmp_path / "x.wav").subtype == "FLOAT"
    assert torch.equal(loaded, wav)


def test_ogg_vorbis_round_trip_is_close(tmp_path):
    wav = stereo(SR)
    save_audio(tmp_path / "x.ogg", wav, SR)
    loaded, sr = load_audio(tmp_path / "x.ogg")
    assert sr == SR and loaded.shape == wav.shape
    assert (loaded - wav).pow(2).mean().sqrt() < 0.02


def test_reads_mp3(tmp_path):
    wav = stereo(SR)
    sf.write(tmp_path / "x.mp3", wav.numpy().T, SR, format="MP3")
    loaded, sr = load_audio(tmp_path / "x.mp3")
    assert sr == SR and loaded.shape[0] == 2 and abs(loaded.shape[1] - SR) < 2000
    assert loaded.abs().max() <= 1.0


def test_integer_pcm_is_scaled_to_unit_range(tmp_path):
    full_scale = np.array([-32768, 0, 16384, 32767], dtype=np.int16).repeat(100)
    sf.write(tmp_path / "x.wav", full_scale, SR, subtype="PCM_16")
    loaded, _ = load_audio(str(tmp_path / "x.wav"))  # str paths work too
    assert loaded.shape == (1, 400)
    assert loaded.min() == -1.0 and loaded.max() <= 1.0 and loaded[0, 200] == 0.5


def test_mono_input_is_saved_as_one_channel(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 1000).numpy(), SR)  # ndarray (T,)
    assert sf.info(tmp_path / "x.wav").channels == 1
    assert load_audio(tmp_path / "x.wav")[0].shape == (1, 1000)


def test_mono_flag_averages_channels(tmp_path):
    wav = stereo()
    save_audio(tmp_path / "x.wav", wav, SR, subtype="FLOAT")
    loaded, _ = load_audio(tmp_path / "x.wav", mono=True)
    assert loaded.shape == (1, 4000)
    assert torch.allclose(loaded, wav.mean(0, keepdim=True), atol=1e-7)


def test_load_resamples_to_requested_rate(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 48_000, sr=48_000)[None], 48_000, subtype="FLOAT")
    loaded, sr = load_audio(tmp_path / "x.wav", sample_rate=SR)
    assert sr == SR and loaded.shape == (1, SR)
    # the tone is still a 440 Hz tone at the new rate (edges excluded: filter transients)
    assert torch.allclose(loaded[0, 500:-500], sine(440, SR)[500:-500], atol=1e-3)


def test_allowed_rates_accepts_listed_rate(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    assert load_audio(tmp_path / "x.wav", allowed_rates={16_000, 24_000})[1] == SR


def test_creates_parent_directories(tmp_path):
    path = save_audio(tmp_path / "a" / "b" / "x.flac", sine(440, 1000), SR)
    assert path.is_file() and set(snapshot(tmp_path)) == {"a/b/x.flac"}


def test_written_file_mode_follows_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    assert (tmp_path / "x.wav").stat().st_mode & 0o777 == 0o666 & ~umask


def test_overwrite_true_replaces(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    save_audio(tmp_path / "x.wav", sine(440, 500), SR, overwrite=True)
    assert load_audio(tmp_path / "x.wav")[0].shape == (1, 500)
    assert set(snapshot(tmp_path)) == {"x.wav"}


# ---------------------------------------------------------------------------------------------
# Clipping
# ---------------------------------------------------------------------------------------------
def test_integer_subtype_clips_with_one_warning(tmp_path):
    wav = torch.stack([sine(440, 1000, amp=1.5), sine(220, 1000, amp=2.0)])
    with pytest.warns(ClippingWarning) as record:
        save_audio(tmp_path / "x.wav", wav, SR, subtype="PCM_24")
    assert len(record) == 1 and "x.wav" in str(record[0].message)
    loaded, _ = load_audio(tmp_path / "x.wav")
    assert loaded.abs().max() <= 1.0 and loaded.abs().max() > 0.999


def test_no_warning_without_clipping(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_audio(tmp_path / "x.flac", stereo(), SR)


# ---------------------------------------------------------------------------------------------
# Read errors: message names the file and the problem; nothing is written
# ---------------------------------------------------------------------------------------------
def test_error_type_is_a_codecsep_error():
    assert issubclass(AudioError, CodecSepError)


def test_missing_file(tmp_path):
    expect_error(["nope.wav", "no such file"], load_audio, tmp_path / "nope.wav")
    assert snapshot(tmp_path) == {}


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "folder.wav").mkdir()
    expect_error(["folder.wav", "is a directory"], load_audio, tmp_path / "folder.wav")
    assert list(tmp_path.rglob("*")) == [tmp_path / "folder.wav"]


@pytest.mark.parametrize("name, content", [
    ("noise.wav", bytes(range(256)) * 4),
    ("text.flac", b"this is not a flac file\n" * 10),
    ("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
])
def test_unreadable_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    before = snapshot(tmp_path)
    expect_error([name, "cannot read audio"], load_audio, tmp_path / name)
    assert snapshot(tmp_path) == before


def test_zero_length_file(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), dtype=np.float32), SR)
    before = snapshot(tmp_path)
    expect_error(["empty.wav", "empty audio", "0 samples"], load_audio, tmp_path / "empty.wav")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_in_file(tmp_path, bad):
    data = np.zeros(100, dtype=np.float32)
    data[50] = bad
    sf.write(tmp_path / "bad.wav", data, SR, subtype="FLOAT")
    before = snapshot(tmp_path)
    expect_error(["bad.wav", "NaN or infinite"], load_audio, tmp_path / "bad.wav")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("rate", [4_000, 384_000])
def test_unsupported_file_rate(tmp_path, rate):
    sf.write(tmp_path / "rate.wav", np.zeros(1000, dtype=np.float32), rate)
    before = snapshot(tmp_path)
    expect_error(
        ["rate.wav", f"unsupported sample rate {rate} Hz", "8000-192000"],
        load_audio, tmp_path / "rate.wav", sample_rate=SR,
    )
    assert snapshot(tmp_path) == before


def test_rate_not_in_allowed_rates(tmp_path):
    sf.write(tmp_path / "x.wav", np.zeros(1000, dtype=np.float32), 22_050)
    before = snapshot(tmp_path)
    expect_error(
        ["x.wav", "unsupported sample rate 22050 Hz", "allowed: 16000, 24000"],
        load_audio, tmp_path / "x.wav", allowed_rates=[24_000, 16_000],
    )
    assert snapshot(tmp_path) == before


def test_unsupported_requested_rate(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    before = snapshot(tmp_path)
    expect_error(
        ["x.wav", "unsupported requested sample rate 1000 Hz"],
        load_audio, tmp_path / "x.wav", sample_rate=1000,
    )
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Write errors: message names the file and the problem; nothing is written or changed
# ---------------------------------------------------------------------------------------------
def test_refuses_to_overwrite(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    before = snapshot(tmp_path)
    mtime = (tmp_path / "x.wav").stat().st_mtime_ns
    expect_error(["x.wav", "already exists", "overwrite=True"],
                 save_audio, tmp_path / "x.wav", sine(220, 500), SR)
    assert snapshot(tmp_path) == before and (tmp_path / "x.wav").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("name, problem", [
    ("x.mp4", "unsupported output format '.mp4'"),
    ("x", "unsupported output format '(no extension)'"),
])
def test_unknown_extension(tmp_path, name, problem):
    expect_error([name, problem, ".wav"], save_audio, tmp_path / name, sine(440, 100), SR)
    assert snapshot(tmp_path) == {}


def test_subtype_invalid_for_format(tmp_path):
    expect_error(["x.flac", "subtype 'FLOAT' is not valid for FLAC", "PCM_16"],
                 save_audio, tmp_path / "x.flac", sine(440, 100), SR, subtype="FLOAT")
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_refuses_non_finite_samples(tmp_path, bad):
    wav = sine(440, 100)
    wav[10] = bad
    for subtype in ("PCM_16", "FLOAT"):
        expect_error(["x.wav", "NaN or infinite"],
                     save_audio, tmp_path / "x.wav", wav, SR, subtype=subtype)
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("wav, problem", [
    (torch.zeros(2, 0), "empty waveform"),
    (torch.zeros(1, 2, 100), "expected a (C, T) or (T,) waveform"),
    (torch.zeros(100, 2), "more channels than samples"),
])
def test_refuses_bad_shapes(tmp_path, wav, problem):
    expect_error(["x.wav", problem], save_audio, tmp_path / "x.wav", wav, SR)
    assert snapshot(tmp_path) == {}


def test_refuses_integer_samples(tmp_path):
    pcm = np.array([0, 1000, -1000], dtype=np.int16).repeat(10)
    expect_error(["x.wav", "floating-point waveform", "int16"],
                 save_audio, tmp_path / "x.wav", pcm, SR)
    assert snapshot(tmp_path) == {}


def test_half_precision_tensors_are_written(tmp_path):
    save_audio(tmp_path / "x.wav", sine(440, 100).to(torch.bfloat16), SR, subtype="FLOAT")
    loaded, _ = load_audio(tmp_path / "x.wav")
    assert torch.allclose(loaded[0], sine(440, 100), atol=1e-2)


def test_refuses_unsupported_output_rate(tmp_path):
    expect_error(["x.wav", "unsupported sample rate 1000 Hz"],
                 save_audio, tmp_path / "x.wav", sine(440, 100), 1000)
    assert snapshot(tmp_path) == {}


def test_refuses_directory_as_output(tmp_path):
    (tmp_path / "out.wav").mkdir()
    expect_error(["out.wav", "is a directory"],
                 save_audio, tmp_path / "out.wav", sine(440, 100), SR, overwrite=True)
    assert list(tmp_path.rglob("*")) == [tmp_path / "out.wav"]


def test_parent_is_a_file(tmp_path):
    (tmp_path / "parent").write_bytes(b"x")
    before = snapshot(tmp_path)
    expect_error(["parent/x.wav", "cannot write"],
                 save_audio, tmp_path / "parent" / "x.wav", sine(440, 100), SR)
    assert snapshot(tmp_path) == before


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    save_audio(tmp_path / "x.wav", sine(440, 1000), SR)
    before = snapshot(tmp_path)

    def broken_write(file, *args, **kwargs):
        file.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio.sf, "write", broken_write)
    expect_error(["x.wav", "cannot write", "disk full"],
                 save_audio, tmp_path / "x.wav", sine(220, 10), SR, overwrite=True)
    assert snapshot(tmp_path) == before


def test_interrupted_write_leaves_no_temp(tmp_path, monkeypatch):
    def interrupted(file, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audio.sf, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_audio(tmp_path / "x.wav", sine(220, 10), SR)
    assert snapshot(tmp_path) == {}


def test_file_appearing_during_write_is_not_replaced(tmp_path):
    # the final move is a hard link, which fails if the destination appeared after the check
    (tmp_path / "x.wav").write_bytes(b"someone else's file")
    tmp = tmp_path / ".x.wav.tmp"
    tmp.write_bytes(b"ours")
    dest = tmp_path / "x.wav"
    expect_error(["x.wav", "already exists"], audio._move_into_place, tmp, dest, False)
    assert (tmp_path / "x.wav").read_bytes() == b"someone else's file"


# ---------------------------------------------------------------------------------------------
# atomic_write_bytes
# ---------------------------------------------------------------------------------------------
def test_atomic_write_bytes(tmp_path):
    path = atomic_write_bytes(tmp_path / "sub" / "codes.bin", b"abc")
    assert path.read_bytes() == b"abc" and set(snapshot(tmp_path)) == {"sub/codes.bin"}
    expect_error(["codes.bin", "already exists"], atomic_write_bytes, path, b"new")
    assert path.read_bytes() == b"abc"
    atomic_write_bytes(path, b"new", overwrite=True)
    assert snapshot(tmp_path) == {"sub/codes.bin": b"new"}


def test_codes_file_saves_through_atomic_write(tmp_path):
    from codecsep.codecs.base import CodesFile

    codes = torch.randint(0, 1024, (1, 4, 7))
    cf = CodesFile(codes, "toy", "0123456789abcdef", SR, 2240, 4)
    cf.save(tmp_path / "x.csc")
    assert torch.equal(CodesFile.load(tmp_path / "x.csc").codes, codes)
    with pytest.raises(AudioError, match="already exists"):
        cf.save(tmp_path / "x.csc")
    assert set(snapshot(tmp_path)) == {"x.csc"}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def test_resample_any_leading_dims():
    wav = torch.randn(2, 3, 1000)
    out = resample(wav, SR, 44_100)
    assert out.shape == (2, 3, round(1000 * 44_100 / SR)) and out.dtype == torch.float32
    # each row is resampled independently, exactly like resampling it alone
    assert torch.allclose(out[1, 2], resample(wav[1, 2], SR, 44_100), atol=1e-6)


def test_resample_preserves_a_tone_and_dtype():
    tone = sine(1000, 24_000, sr=24_000).double()
    out = resample(tone, 24_000, SR)
    assert out.dtype == torch.float64 and out.shape == (SR,)
    assert torch.allclose(out[200:-200], sine(1000, SR).double()[200:-200], atol=1e-3)


def test_resample_same_rate_is_identity_and_rejects_bad_rates():
    wav = torch.randn(1, 100)
    assert resample(wav, SR, SR) is wav
    with pytest.raises(ValueError, match="positive"):
        resample(wav, 0, SR)
    with pytest.raises(ValueError, match="empty"):
        resample(torch.zeros(1, 0), SR, 8000)


def test_to_mono():
    wav = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert torch.equal(to_mono(wav), torch.tensor([[2.0, 4.0]]))
    assert to_mono(torch.randn(5, 2, 10)).shape == (5, 1, 10)
    with pytest.raises(ValueError):
        to_mono(torch.randn(10))


def test_list_audio_files(tmp_path):
    for name in ["b.wav", "a.FLAC", "c.mp3", "notes.txt", "d.ogg"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.wav").write_bytes(b"")
    assert [p.name for p in list_audio_files(tmp_path)] == ["a.FLAC", "b.wav", "c.mp3", "d.ogg"]
    assert [p.name for p in list_audio_files(tmp_path, recursive=True)][-1] == "e.wav"
    expect_error(["missing", "no such directory"], list_audio_files, tmp_path / "missing")
    expect_error(["b.wav", "not a directory"], list_audio_files, tmp_path / "b.wav")


def test_spectrogram_db_shapes_floor_and_channels():
    from codecsep.audio import spectrogram_db

    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(16000) / 16000)
    db = spectrogram_db(tone)
    assert db.shape == (257, 16000 // 128 + 1)
    assert db.mean(1).argmax() == 32  # 1 kHz is bin 1000 / (16000 / 512)
    assert np.allclose(spectrogram_db(torch.stack([tone, tone])), db, atol=1e-4)  # channel mean
    assert spectrogram_db(np.zeros(100)).min() == -120  # short input padded, silence floored
