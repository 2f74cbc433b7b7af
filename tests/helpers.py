"""Helpers several test files share: tiny saved models, test signals, manifests, free ports.

Import them as `from helpers import save_tiny_separator` (pytest puts tests/ on sys.path).
Everything here is offline and writes only below the folder it is given.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codecsep.checkpoint import save_checkpoint
from codecsep.codecs import load_codec
from codecsep.codecs.mica import MicaCodec, MicaConfig
from codecsep.data.manifest import Clip, write_manifest
from codecsep.separators.masker import MaskerConfig
from codecsep.separators.separator import Separator, SeparatorConfig
from codecsep.text.base import get_text_encoder

SR = 16000
TINY_CODEC = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)
TINY_MASKER = MaskerConfig(dim=32, depth=1, heads=2, ffn_dim=64, cond_dim=64, cond_hidden=16)


# ------------------------------------------------------------------------------ models
def save_tiny_codec(directory: Path) -> Path:
    """A random tiny Mica codec checkpoint (seeded), loadable by `load_codec(str(directory))`."""
    torch.manual_seed(0)
    codec = MicaCodec(TINY_CODEC)
    return save_checkpoint(directory, "mica", TINY_CODEC, codec.state_dict(), half=True)


def save_tiny_separator(root: Path, masker: MaskerConfig = TINY_MASKER) -> Path:
    """A random tiny separator whose config names its codec folder and the hash encoder."""
    codec_dir = save_tiny_codec(root / "codec")
    cfg = SeparatorConfig(codec=str(codec_dir), text_encoder="hash", masker=masker)
    codec = load_codec(str(codec_dir))
    sep = Separator(cfg, codec=codec, text_encoder=get_text_encoder("hash"))
    return sep.save(root / "sep")


BANDSPLIT = MaskerConfig(trunk="bandsplit", split="8x4,32x3,64x3", dim=16, depth=1, heads=2,
                         ffn_dim=32, cond_dim=TINY_MASKER.cond_dim, cond_hidden=16, dropout=0.0,
                         mask_hidden=16)


def save_member(root: Path, name: str, masker: MaskerConfig, seed: int, **cfg) -> Path:
    """A random separator on the shared tiny codec in `root` (weights moved off their init)."""
    codec_dir = root / "codec"
    if not codec_dir.exists():
        save_tiny_codec(codec_dir)
    torch.manual_seed(seed)
    cfg = {"codec": str(codec_dir), "text_encoder": "hash", **cfg}
    sep = Separator(SeparatorConfig(masker=masker, **cfg),
                    codec=load_codec(str(codec_dir)), text_encoder=get_text_encoder("hash"))
    for p in sep.masker.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return sep.save(root / name, meta={"step": 100 * seed})


# ------------------------------------------------------------------------------ audio + data
def tone(path, freq: float, seconds: float = 1.0, sr: int = SR, channels: int = 1):
    """Write a 0.3-amplitude sine of `freq` Hz to `path` (channels identical); returns path."""
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * freq * t)] * channels, 1), sr)
    return path


def dominant_hz(path) -> float:
    """Frequency of the strongest FFT bin of a file's mono mixdown."""
    x, sr = sf.read(path, always_2d=True)
    spectrum = np.abs(np.fft.rfft(x.mean(1)))
    return float(np.argmax(spectrum) * sr / len(x))


def write_speech_manifest(root, speakers=("a", "b", "c"), per=2, seconds=1.0):
    """`per` noise clips per speaker labelled "speech" (train split); "tts*" speakers are TTS."""
    rng = np.random.default_rng(0)
    clips = []
    for s in speakers:
        for i in range(per):
            path = root / f"{s}{i}.wav"
            wav = 0.1 * rng.standard_normal(int(16000 * seconds))
            sf.write(path, wav.astype("float32"), 16000)
            tts = s.startswith("tts")
            clips.append(Clip(path=path.name, label="speech", captions=("speech",), source="t",
                              source_id=f"{s}:{i}", split="train", duration=seconds,
                              category="speech",
                              extra={"speaker": s, **({"tts": True} if tts else {})}))
    return write_manifest(clips, root / "manifest.jsonl")


# ------------------------------------------------------------------------------ network
def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_script(name: str):
    """A script of `scripts/` as a module (its functions, without running main)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
