"""`codecsep serve`: a local web app (Gradio) to separate a sound out of a recording by text.

Upload or record audio, type a prompt ("birdsong") or an instruction ("remove the speech"),
choose extract / remove / auto, then hear and download the result, the residual and a
spectrogram of all three. The work is done by `separate_upload`, a plain function the UI calls
(and the tests call without a browser); Gradio's queue runs a few requests at once.

    codecsep serve --model runs/sep/checkpoint --port 7860
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from .audio import load_audio, save_audio, spectrogram_db
from .errors import CodecSepError, require
from .separators.api import check_separation, prompt_notes, slug

TASKS = ("auto", "extract", "remove")
SPECTROGRAM_FFT = 512


class AppInputError(CodecSepError):
    """An upload or request the app refuses (too long, too large, not audio, no prompt)."""


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 600.0  # 10 minutes
    max_bytes: int = 50 * 2**20  # 50 MB
    keep_outputs_seconds: float = 3600.0  # result files older than this are deleted


@dataclass(frozen=True)
class AppResult:
    """Paths of the written files and a summary for the UI (one line, then any notes: the
    presence check's and the input's warnings, as `codecsep separate` prints them)."""

    result: Path
    residual: Path
    figure: Path
    task: str
    description: str
    message: str


# ---------------------------------------------------------------------------------------------
# Input checks and request parsing
# ---------------------------------------------------------------------------------------------
def check_upload(path, limits: Limits = Limits()) -> float:
    """Refuse missing, oversized, non-audio or too-long files; returns the duration (s)."""
    if not path:
        raise AppInputError("upload or record some audio first")
    path = Path(path)
    if not path.is_file():
        raise AppInputError(f"{path.name}: the upload is missing, try again")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise AppInputError(f"{path.name}: file is {size / 2**20:.0f} MB, the limit is "
                            f"{limits.max_bytes / 2**20:.0f} MB")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError):
        raise AppInputError(f"{path.name}: not an audio file we can read "
                            "(use wav, flac, ogg, mp3 or aiff)") from None
    if info.frames <= 0:
        raise AppInputError(f"{path.name}: the audio is empty")
    if info.duration > limits.max_seconds:
        raise AppInputError(f"{path.name}: audio is {info.duration / 60:.1f} min long, the limit "
                            f"is {limits.max_seconds / 60:.0f} min")
    return float(info.duration)


def resolve_request(text: str, task: str = "auto", read=None) -> tuple[str, str]:
    """(text, task) -> (task, description). "auto" reads the text as an instruction with `read`
    (a separator's `read_instruction`: "remove the speech" -> ("remove", "speech"));
    "extract"/"remove" use it as is."""
    if task not in TASKS:
        raise AppInputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    text = (text or "").strip()
    if not text:
        raise AppInputError("type what to extract or remove, e.g. 'violin'")
    if task != "auto":
        return task, text
    if read is None:
        from .text import parse_instruction as read
    instruction = read(text)
    return instruction.task, instruction.description


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def spectrogram_figure(panels: dict[str, torch.Tensor], sample_rate: int, path) -> Path:
    """Write a PNG with one spectrogram per (title -> (C, T) waveform), stacked vertically."""
    from matplotlib.figure import Figure  # no pyplot: thread-safe, no GUI backend

    fig = Figure(figsize=(9, 2.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, wav) in zip(axes, panels.items()):
        spec = spectrogram_db(wav, SPECTROGRAM_FFT, SPECTROGRAM_FFT // 4)
        seconds = wav.shape[-1] / sample_rate
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80,
                  vmax=spec.max(), extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    fig.savefig(path, dpi=80)
    return Path(path)


def prune_outputs(root: Path, max_age: float) -> None:
    """Delete request folders under `root` older than `max_age` seconds."""
    now = time.time()
    for d in root.glob("req-*"):
        if d.is_dir() and now - d.stat().st_mtime > max_age:
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The separation the UI calls
# ---------------------------------------------------------------------------------------------
_EMBED_LOCK = threading.Lock()  # text encoders load lazily and cache on disk: one at a time


def separate_upload(separator, audio_path, text: str, task: str = "auto", out_dir=None,
                    limits: Limits = Limits()) -> AppResult:
    """Separate one uploaded file: writes result.wav, residual.wav and a spectrogram PNG.

    `task` "extract" keeps the described sound, "remove" removes it, "auto" reads `text` as an
    instruction. The result is the kept part; the residual is everything else.
    """
    seconds = check_upload(audio_path, limits)
    task, description = resolve_request(text, task, separator.read_instruction)
    wav, sr = load_audio(audio_path, sample_rate=separator.sample_rate)  # (C, T)
    with _EMBED_LOCK:
        cond = separator.embed([description])
        notes = prompt_notes(separator, [description])
    out = separator.separate(wav, [description], cond=cond)
    with _EMBED_LOCK:  # the presence check embeds the prompt, too
        notes += check_separation(separator, wav, out, [description])[1]
    target, rest = out["target"][0], out["residual"][0]  # (C, T) each
    result, residual = (target, rest) if task == "extract" else (rest, target)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="codecsep-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{task}-{slug(description)}"
    panels = {"mixture": wav, f"result: {task} '{description}'": result, "residual": residual}
    return AppResult(
        result=save_audio(out_dir / f"{name}.wav", result, sr, overwrite=True),
        residual=save_audio(out_dir / f"{name}-residual.wav", residual, sr, overwrite=True),
        figure=spectrogram_figure(panels, sr, out_dir / f"{name}.png"),
        task=task, description=description,
        message="\n".join([f"{task} '{description}' from {Path(audio_path).name} ({seconds:.1f} s)",
                            *(f"Note: {n}" for n in notes)]),
    )


# ---------------------------------------------------------------------------------------------
# The Gradio UI
# ---------------------------------------------------------------------------------------------
def build_app(separator, limits: Limits = Limits(), concurrency: int = 2, output_root=None):
    """A `gr.Blocks` app around `separate_upload`; call `.launch()` on it (see `launch`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = require("gradio", "web")
    root = Path(output_root or tempfile.mkdtemp(prefix="codecsep-serve-"))

    def on_click(audio_path, text, task):
        prune_outputs(root, limits.keep_outputs_seconds)
        try:
            r = separate_upload(separator, audio_path, text, task,
                                tempfile.mkdtemp(prefix="req-", dir=root), limits)
        except CodecSepError as e:
            raise gr.Error(str(e)) from None
        return str(r.result), str(r.residual), str(r.figure), r.message

    keep = int(limits.keep_outputs_seconds)  # gradio's copies of uploads and results, too
    with gr.Blocks(title="CodecSep", analytics_enabled=False, delete_cache=(keep, keep)) as app:
        gr.Markdown("# CodecSep\nSeparate a sound from a recording by describing it.")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                 label="Recording", elem_id="input-audio")
                text = gr.Textbox(label="What to separate", elem_id="prompt",
                                  placeholder="violin   or   remove the speech")
                known = separator.anchors.labels()
                if known:
                    from .separators.sounds import describe

                    with gr.Accordion(f"The {len(known)} sounds this model was trained on",
                                      open=False, elem_id="sounds"):
                        gr.Markdown(describe(known).replace("\n", "\n\n"))
                task = gr.Radio(list(TASKS), value="auto", label="Task", elem_id="task",
                                info="auto reads the text as an instruction")
                button = gr.Button("Separate", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                result = gr.Audio(label="Result", type="filepath", interactive=False,
                                  buttons=["download"], elem_id="result")
                residual = gr.Audio(label="Residual (everything else)", type="filepath",
                                    interactive=False, buttons=["download"], elem_id="residual")
        figure = gr.Image(label="Spectrograms", type="filepath", elem_id="figure")
        inputs = [audio, text, task]
        outputs = [result, residual, figure, status]
        button.click(on_click, inputs, outputs, api_name="separate")
        text.submit(on_click, inputs, outputs, api_name=False)
    return app.queue(default_concurrency_limit=concurrency, max_size=4 * concurrency + 16)


def launch(app, host: str = "127.0.0.1", port: int = 7860, limits: Limits = Limits(),
           block: bool = True):
    """Start the server; with `block=False` return at once (tests). Returns (app, url)."""
    _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                           max_file_size=limits.max_bytes, ssr_mode=False, quiet=not block,
                           share=False, show_error=True, footer_links=["api"])
    return app, url


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from .separators.api import get_separator

    separator = get_separator(args.model)
    separator.embed(["warm up"])  # load the text encoder before the first request
    limits = Limits(max_seconds=args.max_minutes * 60, max_bytes=int(args.max_mb * 2**20))
    app = build_app(separator, limits, concurrency=args.concurrency)
    print(f"codecsep serve: model {args.model or 'default'}; open http://{args.host}:{args.port}")
    launch(app, args.host, args.port, limits, block=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="web app: separate uploads or recordings by a text prompt",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="separator checkpoint dir (default: shipped)")
    p.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default %(default)s: this machine only)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="requests processed at once; more wait in the queue (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=10.0,
                   help="longest upload accepted (default %(default)s)")
    p.add_argument("--max-mb", type=float, default=50.0,
                   help="largest upload accepted (default %(default)s)")
    p.set_defaults(func=run)
