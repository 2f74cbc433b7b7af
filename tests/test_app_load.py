"""The web app without a browser: the plain separation function, its refusals, and a load test
of 8 concurrent clients on loopback, each of which must get back its own audio."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import dominant_hz, free_port, save_tiny_separator, tone

from codecsep.app import AppInputError, Limits, check_upload, resolve_request, separate_upload
from codecsep.audio import load_audio
from codecsep.separators.separator import Separator
from codecsep.text import parse_instruction

torch.set_num_threads(1)
SR = 16000
CLIENTS = 8


@pytest.fixture(scope="module")
def separator(tmp_path_factory):
    return Separator.load(save_tiny_separator(tmp_path_factory.mktemp("model")))


# ------------------------------------------------------------------------------ plain function
def test_refuses_non_audio_oversized_and_too_long(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio at all")
    with pytest.raises(AppInputError, match="not an audio file"):
        check_upload(tmp_path / "notes.wav")
    wav = tone(tmp_path / "a.wav", 440, seconds=2.0)
    assert check_upload(wav) == pytest.approx(2.0)
    with pytest.raises(AppInputError, match="limit is"):
        check_upload(wav, Limits(max_bytes=1000))
    with pytest.raises(AppInputError, match="min long"):
        check_upload(wav, Limits(max_seconds=1.0))
    with pytest.raises(AppInputError, match="upload or record"):
        check_upload(None)


def test_requests_as_prompts_or_instructions():
    assert resolve_request("dog barking", "remove") == ("remove", "dog barking")
    assert resolve_request("remove the dog barking", "auto") == ("remove", "dog barking")
    with_labels = functools.partial(parse_instruction, labels=["dog barking", "piano"])
    assert resolve_request("get rid of the dog", "auto", with_labels) == ("remove", "dog barking")
    assert resolve_request("keep only the piano", "auto", with_labels) == ("extract", "piano")
    for bad in ("", "   "):
        with pytest.raises(AppInputError, match="type what"):
            resolve_request(bad, "extract")
    with pytest.raises(AppInputError, match="task must be"):
        resolve_request("dog", "isolate")


def test_the_app_lists_the_sounds_its_model_knows(separator, tmp_path):
    from dataclasses import replace

    from codecsep.app import build_app
    from codecsep.text.anchors import PromptAnchors

    def sounds_panel(sep):
        config = build_app(sep, output_root=tmp_path).config
        return [c for c in config["components"] if c.get("props", {}).get("elem_id") == "sounds"]

    assert not sounds_panel(separator)  # no training captions: nothing to list
    known = Separator.load(save_tiny_separator(tmp_path / "known"))
    known.config = replace(known.config, anchors=PromptAnchors(("a violin playing", "birds chirping")))
    panel = sounds_panel(known)
    assert len(panel) == 1 and "2 sounds" in panel[0]["props"]["label"]


def test_separate_upload_writes_result_residual_and_figure(separator, tmp_path):
    src = tone(tmp_path / "in.wav", 440, channels=2, sr=22050)  # resampled to the model's rate
    extract = separate_upload(separator, src, "dog", "extract", tmp_path / "x")
    remove = separate_upload(separator, src, "dog", "remove", tmp_path / "r")
    a, sr = sf.read(extract.result, always_2d=True)
    b, _ = sf.read(extract.residual, always_2d=True)
    assert sr == SR and a.shape == b.shape == (SR, 2)
    mix, _ = load_audio(src, sample_rate=SR)
    assert np.allclose(a + b, mix.T.numpy(), atol=1e-3)  # result + residual = the mixture
    # removing is extracting with the outputs swapped
    assert np.allclose(sf.read(remove.result)[0], sf.read(extract.residual)[0])
    assert extract.figure.read_bytes()[:4] == b"\x89PNG"
    assert "extract 'dog'" in extract.message


def test_the_ui_message_carries_the_presence_checks_warning(separator, tmp_path, monkeypatch):
    from codecsep.separators import api
    from codecsep.separators.presence import PresenceCheck, PresenceDetector
    from codecsep.text.audio_encoder import AudioEncoder, AudioEncoderConfig
    from codecsep.text.base import get_text_encoder

    src = tone(tmp_path / "in.wav", 440)
    monkeypatch.setattr(api, "installed_presence_check", lambda: None)
    assert "\n" not in separate_upload(separator, src, "dog", "extract", tmp_path / "a").message
    cfg = AudioEncoderConfig(n_bands=16, channels=24, depth=2, embed_dim=32, text_encoder="hash")
    encoder = AudioEncoder(cfg, text_encoder=get_text_encoder("hash", dim=32)).eval()
    flags_all = PresenceDetector(("level",), (0.0,), (1.0,), (0.0,), -10.0, 0.5)  # P = 0.00005
    monkeypatch.setattr(api, "installed_presence_check", lambda: PresenceCheck(encoder, flags_all))
    r = separate_upload(separator, src, "dog", "extract", tmp_path / "b")
    assert r.message.splitlines()[1].startswith("Note: 'dog': the sound may not be in the input")


def test_the_ui_message_names_the_nearest_trained_sound_of_an_unknown_prompt(tmp_path, monkeypatch):
    from dataclasses import replace

    from codecsep.separators import api
    from codecsep.text.anchors import PromptAnchors

    monkeypatch.setattr(api, "installed_presence_check", lambda: None)
    known = Separator.load(save_tiny_separator(tmp_path / "known"))
    known.config = replace(known.config, anchors=PromptAnchors(("a violin playing", "birds chirping")))
    src = tone(tmp_path / "in.wav", 440)
    assert "\n" not in separate_upload(known, src, "a violin playing", "extract", tmp_path / "a").message
    note = separate_upload(known, src, "zq xv", "extract", tmp_path / "b").message.splitlines()[1]
    assert note.startswith("Note: 'zq xv' is ") and "2 trained sounds" in note


# ------------------------------------------------------------------------------ load test
@pytest.fixture(scope="module")
def server(separator, tmp_path_factory):
    pytest.importorskip("gradio")
    from codecsep.app import build_app, launch

    with pytest.MonkeyPatch.context() as mp:  # gradio's upload cache goes to tmp, too
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        app = build_app(separator, concurrency=2, output_root=tmp_path_factory.mktemp("outputs"))
        app, url = launch(app, port=free_port(), block=False)
        yield url
        app.close()


def test_concurrent_clients_each_get_their_own_result(server, tmp_path):
    from gradio_client import Client, handle_file

    freqs = [300.0 + 150 * i for i in range(CLIENTS)]
    inputs = [tone(tmp_path / f"in{i}.wav", f) for i, f in enumerate(freqs)]

    def one(i: int):
        client = Client(server, verbose=False, download_files=str(tmp_path / f"dl{i}"))
        task = "extract" if i % 2 else "remove"
        return client.predict(handle_file(str(inputs[i])), f"tone {i}", task,
                              api_name="/separate")

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, range(CLIENTS), timeout=120))
    for i, (result, residual, figure, message) in enumerate(results):
        assert f"'tone {i}'" in message and f"in{i}.wav" in message
        assert dominant_hz(result) == pytest.approx(freqs[i], abs=2)
        assert dominant_hz(residual) == pytest.approx(freqs[i], abs=2)
        assert sf.info(result).frames == SR


def test_server_refuses_non_audio_with_a_clear_message(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "x.txt").write_text("hello")
    client = Client(server, verbose=False, download_files=str(tmp_path))
    with pytest.raises(AppError, match="not an audio file"):
        client.predict(handle_file(str(tmp_path / "x.txt")), "dog", "auto", api_name="/separate")
