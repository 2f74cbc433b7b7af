"""End to end in a real browser: headless Chromium uploads a wav, types a prompt, clicks
Separate, and gets playable, downloadable audio and the spectrogram back.

Needs Debian's chromium (`apt-get install -y chromium chromium-driver`) and the playwright
package; the test skips, saying which is missing, otherwise. Playwright's own browser download
(`playwright install`) is never used.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers import free_port, save_tiny_separator, tone

from codecsep.separators.separator import Separator

torch.set_num_threads(1)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'codecsep[web]')")
    from codecsep.app import build_app, launch

    sep = Separator.load(save_tiny_separator(tmp_path_factory.mktemp("model")))
    with pytest.MonkeyPatch.context() as mp:  # gradio's upload cache goes to tmp, too
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        app, url = launch(build_app(sep, output_root=tmp_path_factory.mktemp("out")),
                          port=free_port(), block=False)
        yield url
        app.close()


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    exe = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def test_upload_prompt_click_and_hear_the_result(page, tmp_path):
    demo = tone(tmp_path / "demo.wav", 440.0, seconds=1.5)
    page.locator("#input-audio input[type=file]").set_input_files(str(demo))
    page.locator("#prompt textarea").fill("dog barking")
    page.get_by_label("extract").check()
    page.locator("#run").click()
    page.wait_for_selector("#result audio[src]", state="attached")
    page.wait_for_selector("#residual audio[src]", state="attached")
    page.wait_for_selector("#figure img", state="attached")
    status = page.locator("#status textarea").input_value().splitlines()
    assert status[0] == "extract 'dog barking' from demo.wav (1.5 s)"
    assert all(line.startswith("Note: ") for line in status[1:])  # the presence check's, if any
    href = page.locator("#result a[download]").get_attribute("href")
    wav, sr = sf.read(io.BytesIO(page.request.get(href).body()))
    assert sr == 16000 and len(wav) == 24000  # the downloaded result is the whole clip


def test_non_audio_upload_shows_an_error(page, tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio")
    page.locator("#input-audio input[type=file]").set_input_files(str(tmp_path / "notes.wav"))
    page.locator("#prompt textarea").fill("dog barking")
    page.locator("#run").click()
    page.get_by_text("not an audio file").first.wait_for()
