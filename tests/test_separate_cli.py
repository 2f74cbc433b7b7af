"""`codecsep separate` and `codecsep.separate`: files, folders, code streams, and bad input.

A tiny random separator (Mica codec with a 4-codebook RVQ, hash text encoder) is saved once;
every test runs the real command in-process through `cli.main`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SR, save_tiny_separator

import codecsep
from codecsep import cli
from codecsep.codecs import CodesFile, load_codec
from codecsep.separators.api import slug
from codecsep.separators.separator import Separator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(save_tiny_separator(tmp_path_factory.mktemp("model")))


def write_wav(path: Path, seconds=1.0, channels=1, sr=SR, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(channels)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, subtype="PCM_16")
    return path


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(["separate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ------------------------------------------------------------------------------ happy paths
def test_separate_one_file_writes_one_file_per_prompt(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "in" / "street.wav", seconds=1.3)
    before = digest(wav)
    code, out, _ = run([wav, "-p", "dog barking", "-p", "Car horn!", "--residual",
                        "-o", tmp_path / "out", "--model", model], capsys)
    assert code == 0
    names = sorted(p.name for p in files_under(tmp_path / "out"))
    assert names == ["car_horn.wav", "car_horn_residual.wav", "dog_barking.wav",
                     "dog_barking_residual.wav"]
    target, sr = sf.read(tmp_path / "out" / "street" / "dog_barking.wav", dtype="float32")
    residual, _ = sf.read(tmp_path / "out" / "street" / "dog_barking_residual.wav", dtype="float32")
    mix, _ = sf.read(wav, dtype="float32")
    assert sr == SR and target.shape == mix.shape
    np.testing.assert_allclose(target + residual, mix, atol=3e-3)  # target + rest = mixture
    assert "real-time factor" in out and "dog_barking.wav" in out
    assert digest(wav) == before  # the input is never modified


def test_remove_writes_the_residual_as_main_output(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "a.wav")
    code, _, _ = run([wav, "-p", "speech", "--remove", "-o", tmp_path / "out", "--model", model],
                     capsys)
    assert code == 0
    assert [p.name for p in files_under(tmp_path / "out")] == ["speech_removed.wav"]
    code, _, _ = run([wav, "-p", "speech", "--remove", "--residual", "-o", tmp_path / "out2",
                      "--model", model], capsys)
    removed, _ = sf.read(tmp_path / "out2" / "a" / "speech_removed.wav")
    target, _ = sf.read(tmp_path / "out2" / "a" / "speech.wav")  # what was removed
    np.testing.assert_allclose(removed + target, sf.read(wav)[0], atol=3e-3)


def test_directory_input_mirrors_names_sorted(model, tmp_path, capsys):
    for name in ("b.wav", "a.flac", "notes.txt"):
        write_wav(tmp_path / "in" / "x.wav").rename(tmp_path / "in" / name)
    code, out, _ = run([tmp_path / "in", "-p", "piano", "--format", "flac",
                        "-o", tmp_path / "out", "--model", model], capsys)
    assert code == 0
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files_under(tmp_path / "out")] \
        == ["a/piano.flac", "b/piano.flac"]
    assert out.index("a.flac") < out.index("b.wav")


def test_folders_skip_hidden_files_and_say_which_subfolders_they_skip(model, tmp_path, capsys):
    write_wav(tmp_path / "in" / "a.wav")
    (tmp_path / "in" / "._a.wav").write_bytes(b"macOS resource fork, not audio")
    write_wav(tmp_path / "in" / "sub" / "b.wav")
    code, _, err = run([tmp_path / "in", "-p", "dog", "-o", tmp_path / "out", "--model", model],
                       capsys)
    assert code == 0 and "1 file(s) (1 subfolder(s) not searched)" in err
    assert [p.name for p in files_under(tmp_path / "out")] == ["dog.wav"]
    (tmp_path / "only").mkdir()
    write_wav(tmp_path / "only" / "deeper" / "c.wav")
    code, _, err = run([tmp_path / "only", "-p", "dog", "-o", tmp_path / "o3", "--model", model],
                       capsys)
    assert code == 2 and "no audio files in this directory (1 subfolder(s) not searched)" in err


def test_multichannel_is_separated_per_channel_or_downmixed(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "st.wav", channels=2)
    assert run([wav, "-p", "violin", "-o", tmp_path / "o1", "--model", model], capsys)[0] == 0
    assert sf.info(str(tmp_path / "o1" / "st" / "violin.wav")).channels == 2
    assert run([wav, "-p", "violin", "--channels", "mono", "-o", tmp_path / "o2",
                "--model", model], capsys)[0] == 0
    assert sf.info(str(tmp_path / "o2" / "st" / "violin.wav")).channels == 1


def test_44k_input_is_resampled_and_said_so(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "hi.wav", seconds=0.5, sr=44100)
    code, _, err = run([wav, "-p", "flute", "-o", tmp_path / "out", "--model", model], capsys)
    assert code == 0 and "resampling 44100 Hz -> 16000 Hz" in err
    info = sf.info(str(tmp_path / "out" / "hi" / "flute.wav"))
    assert info.samplerate == SR and info.frames == round(22050 * SR / 44100)


@pytest.mark.filterwarnings("ignore::codecsep.audio.ClippingWarning")  # random codec: loud
def test_codes_out_then_codes_in(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "m.wav", seconds=0.7, channels=2)
    code, _, _ = run([wav, "-p", "speech", "--codes-out", "--n-quantizers", "3",
                      "-o", tmp_path / "c", "--model", model], capsys)
    assert code == 0
    cf = CodesFile.load(tmp_path / "c" / "m" / "speech.codes")
    assert cf.codes.shape[:2] == (2, 3) and cf.length == int(0.7 * SR) and cf.n_quantizers == 3
    cf.check_codec(load_codec(Separator.load(model).config.codec))

    # codes in -> codes out keeps the codec, channels and bitrate (or lowers it)
    code, _, _ = run([tmp_path / "c" / "m" / "speech.codes", "--codes-in", "--codes-out",
                      "--n-quantizers", "2", "-p", "music", "--residual",
                      "-o", tmp_path / "cc", "--model", model], capsys)
    assert code == 0
    out = CodesFile.load(tmp_path / "cc" / "speech" / "music.codes")
    assert out.codes.shape == (2, 2, cf.codes.shape[-1]) and out.length == cf.length
    assert (tmp_path / "cc" / "speech" / "music_residual.codes").is_file()

    # codes in -> audio out decodes at the codec's rate, to the original length
    code, _, _ = run([tmp_path / "c" / "m", "--codes-in", "-p", "music", "-o", tmp_path / "ca",
                      "--model", model], capsys)
    assert code == 0
    info = sf.info(str(tmp_path / "ca" / "speech" / "music.wav"))
    assert (info.channels, info.frames, info.samplerate) == (2, cf.length, SR)


def test_instruction_is_parsed_into_task_and_targets(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "song.wav")
    code, _, err = run([wav, "--instruction", "please get rid of the dog", "-o", tmp_path / "out",
                        "--model", model], capsys)
    assert code == 0 and "remove" in err
    assert [p.name for p in files_under(tmp_path / "out")] == ["dog_removed.wav"]


def test_python_api_separate(model, tmp_path):
    wav = write_wav(tmp_path / "x.wav", channels=2)
    out = codecsep.separate(str(wav), ["dog", "cat"], model=model)
    assert out["target"].shape == (2, 2, SR) and out["sample_rate"] == SR
    arr = torch.from_numpy(sf.read(wav, dtype="float32")[0].T.copy())
    again = codecsep.separate(arr, ["dog", "cat"], model=model, sample_rate=SR)
    torch.testing.assert_close(again["target"], out["target"])
    as_read = sf.read(wav, dtype="float32")[0]  # (T, C), as soundfile returns it
    torch.testing.assert_close(codecsep.separate(as_read, ["dog", "cat"], model=model,
                                                 sample_rate=SR)["target"], out["target"])
    mono = codecsep.separate(arr[0].numpy(), "dog", model=model, sample_rate=48000)
    assert mono["target"].shape == (1, 1, SR // 3)
    with pytest.raises(codecsep.errors.CodecSepError, match="sample_rate is for arrays"):
        codecsep.separate(str(wav), "dog", model=model, sample_rate=SR)
    with pytest.warns(UserWarning, match="the input is silent"):
        silent = codecsep.separate(np.zeros(SR, np.float32), "dog", model=model)
    assert silent["target"].abs().max() == 0


def test_slug():
    assert slug("  Dog barking! ") == "dog_barking"
    assert slug("???") == "prompt"
    assert slug("köpek havlıyor") == "köpek_havlıyor"
    assert len(slug("a" * 500)) <= 60


# ------------------------------------------------------------------------------ bad input
def bad_cases(tmp_path: Path, model: str):
    good = write_wav(tmp_path / "in" / "good.wav")
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF not really a wav")
    nan = tmp_path / "nan" / "z.wav"  # sorted after good: its NaN is found before good is written
    nan.parent.mkdir()
    sf.write(nan, np.r_[np.zeros(SR), np.nan, np.zeros(99)].astype(np.float32), SR,
             subtype="FLOAT")
    write_wav(tmp_path / "taken" / "good.wav")
    (tmp_path / "exists" / "good").mkdir(parents=True)
    (tmp_path / "exists" / "good" / "dog.wav").write_bytes(b"keep me")
    out = tmp_path / "out"
    m = ["--model", model]
    return [
        ([good, "-p", "   ", "-o", out, *m], "empty prompt"),
        ([good, "-p", "dog", "-p", "", "-o", out, *m], "empty prompt"),
        ([good, "-o", out, *m], "no prompts"),
        ([tmp_path / "missing.wav", "-p", "dog", "-o", out, *m], "no such file"),
        ([good, tmp_path / "in" / "broken.wav", "-p", "dog", "-o", out, *m], "cannot read audio"),
        ([tmp_path / "in", "-p", "dog", "-o", out, *m], "cannot read audio"),  # folder with it
        ([good, nan, "-p", "dog", "-o", out, *m], "NaN or infinite"),
        ([good, "-p", "dog", "-o", tmp_path / "exists", *m], "already exists"),
        ([good, tmp_path / "taken" / "good.wav", "-p", "dog", "-o", out, *m], "same folder"),
        ([good, good, "-p", "dog", "-o", out, *m], "given twice"),
        ([good, "-p", "dog", "-o", tmp_path / "out.wav", *m], "-o names the output folder"),
        ([good, "-p", "dog", "-p", "Dog!", "-o", out, *m], "same file"),
        ([good, "-p", "dog", "--codes-in", "-o", out, *m], "not a CodecSep codes file"),
        ([good, "-p", "dog", "--codes-out", "--n-quantizers", "9", "-o", out, *m],
         "has 4 codebooks"),
        ([good, "-p", "dog", "--n-quantizers", "2", "-o", out, *m], "--codes-out"),
        ([good, "-p", "dog", "--model", tmp_path / "nomodel", "-o", out], "not a CodecSep"),
        ([good, "--instruction", "  ", "-o", out, *m], "empty --instruction"),
        ([good, "--instruction", "remove it", "-p", "dog", "-o", out, *m], "do not combine"),
    ]


def test_every_bad_input_exits_2_with_one_line_and_writes_nothing(model, tmp_path, capsys):
    cases = bad_cases(tmp_path, model)
    before = {p: digest(p) for p in files_under(tmp_path)}
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2, (argv, err)
        assert message in err and err.count("\n") == 1 and err.startswith("codecsep: error:"), err
        assert not (tmp_path / "out").exists(), argv
        assert {p: digest(p) for p in files_under(tmp_path)} == before, argv


def test_overwrite_replaces_existing_outputs(model, tmp_path, capsys):
    wav = write_wav(tmp_path / "a.wav")
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "dog.wav").write_bytes(b"old")
    args = [wav, "-p", "dog", "-p", "cat", "-o", tmp_path / "out", "--model", model]
    assert run(args, capsys)[0] == 2
    assert not (tmp_path / "out" / "a" / "cat.wav").exists()  # nothing, not even the new file
    assert run([*args, "--overwrite"], capsys)[0] == 0
    assert sf.info(str(tmp_path / "out" / "a" / "dog.wav")).frames == SR


def test_an_output_folder_that_cannot_be_made_fails_before_separating(model, tmp_path, capsys,
                                                                        monkeypatch):
    from codecsep.separators import cli as separate_cli

    wav = write_wav(tmp_path / "a.wav")
    (tmp_path / "afile").write_bytes(b"x")  # a file where a folder of the -o path should be
    called = []
    monkeypatch.setattr(separate_cli, "run_job", lambda *a: called.append(a) or "separated")
    code, _, err = run([wav, "-p", "piano", "-o", tmp_path / "afile" / "sub", "--model", model], capsys)
    assert code == 2 and "cannot write outputs there" in err and not called
    code, _, err = run([wav, "-p", "piano", "-o", tmp_path / "new" / "deep", "--model", model], capsys)
    assert code == 0 and len(called) == 1 and (tmp_path / "new" / "deep" / "a").is_dir()


def test_silent_and_very_short_inputs_are_separated_with_a_warning(model, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, dtype=np.float32), SR)
    code, _, err = run([silent, "-p", "dog", "-o", tmp_path / "o1", "--model", model], capsys)
    assert code == 0 and "warning" in err and "silent" in err
    assert np.abs(sf.read(tmp_path / "o1" / "silent" / "dog.wav")[0]).max() == 0
    short = write_wav(tmp_path / "short.wav", seconds=0.03)
    code, _, err = run([short, "-p", "dog", "-o", tmp_path / "o2", "--model", model], capsys)
    assert code == 0 and "30 ms long" in err and "is silent" not in err
    code, _, err = run([write_wav(tmp_path / "ok.wav"), "-p", "dog", "-o", tmp_path / "o3",
                        "--model", model], capsys)
    assert code == 0 and "warning" not in err


def test_a_target_far_below_its_input_is_noted():
    from codecsep.separators.api import quiet_targets

    wav = torch.randn(1, 16000)
    targets = torch.stack([0.5 * wav, 1e-3 * wav])  # -6 dB and -60 dB
    notes = quiet_targets(wav, targets, ["piano", "dog"])
    assert [p for p, _ in notes] == ["dog"] and "60 dB below the input" in notes[0][1]


def test_prompts_the_presence_check_flags_are_warned_about_and_outputs_are_unchanged(
        model, tmp_path, capsys, monkeypatch):
    from codecsep.separators import api
    from codecsep.separators.presence import PresenceCheck, PresenceDetector, presence_features
    from codecsep.text.audio_encoder import AudioEncoder, AudioEncoderConfig
    from codecsep.text.base import get_text_encoder

    monkeypatch.setattr(api, "installed_presence_check", lambda: None)
    wav = write_wav(tmp_path / "a.wav")
    args = [wav, "-p", "dog", "-p", "piano", "--model", model]
    assert run([*args, "-o", tmp_path / "plain"], capsys)[0] == 0
    mix = torch.from_numpy(sf.read(wav, dtype="float32")[0])[None]
    out = codecsep.separate(str(wav), ["dog", "piano"], model=model)
    assert out["presence"] is None  # no check installed: no presence
    cfg = AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=32, text_encoder="hash")
    torch.manual_seed(0)
    encoder = AudioEncoder(cfg, text_encoder=get_text_encoder("hash", dim=32)).eval()
    sem = [r["sem_target"] for r in presence_features(mix, out["target"], out["residual"],
                                                      ["dog", "piano"], SR, encoder)]
    lower = int(np.argmin(sem))
    # P(present) rises with `sem_target`; 0.5 between the two prompts' values
    detector = PresenceDetector(("sem_target",), (sum(sem) / 2,), (abs(sem[0] - sem[1]) / 4,),
                                (1.0,), 0.0, 0.5)
    monkeypatch.setattr(api, "installed_presence_check", lambda: PresenceCheck(encoder, detector))
    code, _, err = run([*args, "-o", tmp_path / "checked"], capsys)
    assert code == 0
    for k, prompt in enumerate(("dog", "piano")):
        assert (f"'{prompt}': the sound may not be in the input" in err) == (k == lower), err
    for name in ("dog.wav", "piano.wav"):  # the check only warns
        assert digest(tmp_path / "plain" / "a" / name) == digest(tmp_path / "checked" / "a" / name)
    code, _, err = run([*args, "--no-presence-check", "-o", tmp_path / "unchecked"], capsys)
    assert code == 0 and "may not be in the input" not in err, err
    with pytest.warns(UserWarning, match="may not be in the input"):
        found = codecsep.separate(str(wav), ["dog", "piano"], model=model)["presence"]
    assert found["absent"] == [k == lower for k in range(2)]
    assert found["probability"][lower] < 0.5 < found["probability"][1 - lower]


# ------------------------------------------------------------------------------ codec encode/decode
def test_codec_encode_decode_round_trip_and_feed_separate(model, tmp_path, capsys):
    codec_dir = str(Path(model).parent / "codec")
    wav = write_wav(tmp_path / "a.wav", seconds=1.0, channels=2)
    codes = tmp_path / "a.codes"
    assert cli.main(["codec", "encode", str(wav), "-o", str(codes), "--codec", codec_dir,
                     "--n-quantizers", "3"]) == 0
    assert "2 channel(s), 3 codebooks" in capsys.readouterr().out
    cf = CodesFile.load(codes)
    assert cf.codes.shape[:2] == (2, 3) and cf.length == SR
    assert cli.main(["codec", "encode", str(wav), "-o", str(codes), "--codec", codec_dir]) == 2
    assert "already exists" in capsys.readouterr().err  # kept: same 3 codebooks
    assert CodesFile.load(codes).n_quantizers == 3
    back = tmp_path / "back.wav"
    assert cli.main(["codec", "decode", str(codes), "-o", str(back), "--codec", codec_dir]) == 0
    assert sf.info(str(back)).frames == SR and sf.info(str(back)).channels == 2
    assert cli.main(["codec", "decode", str(codes), "-o", str(tmp_path / "x.wav")]) == 2
    assert "made by codec" in capsys.readouterr().err  # the shipped Mica is another codec
    assert cli.main(["codec", "decode", str(codes), "-o", str(back), "--codec", codec_dir]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["codec", "encode", str(wav), "-o", str(tmp_path / "b.codes"), "--codec",
                     codec_dir, "--n-quantizers", "0"]) == 2  # not quietly "all codebooks"
    assert "has 4 codebooks (choose 1 to 4)" in capsys.readouterr().err
    code, _, err = run([codes, "-p", "piano", "-o", tmp_path / "o", "--model", model], capsys)
    assert code == 2 and "pass --codes-in" in err
    code, _, _ = run([codes, "--codes-in", "--codes-out", "-p", "piano", "-o", tmp_path / "o",
                      "--model", model], capsys)
    assert code == 0 and CodesFile.load(tmp_path / "o" / "a" / "piano.codes").codes.shape[:2] == (2, 3)


def test_loud_inputs_warn_in_one_line_and_float_keeps_every_sample(model, tmp_path, capsys):
    loud = tmp_path / "loud.wav"
    sf.write(loud, 3.0 * np.sin(np.arange(SR) / 5.0).astype(np.float32), SR, subtype="FLOAT")
    code, _, err = run([loud, "-p", "dog", "--residual", "-o", tmp_path / "a", "--model", model],
                       capsys)
    assert code == 0 and "codecsep: warning:" in err and "--float keeps them" in err
    assert sf.info(str(tmp_path / "a" / "loud" / "dog_residual.wav")).subtype == "PCM_16"
    code, _, err = run([loud, "-p", "dog", "--residual", "--float", "-o", tmp_path / "b",
                        "--model", model], capsys)
    assert code == 0 and "clipped" not in err
    kept, _ = sf.read(tmp_path / "b" / "loud" / "dog_residual.wav")
    assert np.abs(kept).max() > 1
    code, _, err = run([loud, "-p", "dog", "--float", "--format", "flac", "-o", tmp_path / "c",
                        "--model", model], capsys)
    assert code == 2 and "--float writes 32-bit float WAV" in err
