"""Codec backends behind one contract (`Codec`), and `load_codec` to get one by name or path.

Names: "mica" (our shipped default), a Mica checkpoint directory, or "dac-16k" / "dac-24k" /
"dac-44k" followed by ":PATH" to official weights on disk (descript .pth or transformers dir).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CodecSepError
from .base import Codec, CodesFile

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CODEC = ASSETS / "mica-16k"


def load_mica(path: str | Path = DEFAULT_CODEC) -> Codec:
    from ..checkpoint import config_from_dict, load_checkpoint
    from .mica import MicaCodec, MicaConfig

    kind, cfg, state, _ = load_checkpoint(path)
    if kind != "mica":
        raise CodecSepError(f"{path}: holds a {kind!r} checkpoint, not a Mica codec")
    codec = MicaCodec(config_from_dict(MicaConfig, cfg))
    codec.load_state_dict(state, strict=True)
    return codec.eval()


def load_codec(name: str | Path = "mica") -> Codec:
    """A codec, in eval mode, from a registry name or a checkpoint path."""
    name = str(name)
    if name == "mica":
        return load_mica(DEFAULT_CODEC)
    if name.startswith("dac-"):
        from .dac import DACCodec

        variant, _, path = name.partition(":")
        if not path:
            raise CodecSepError(f"{variant} needs local weights: use '{variant}:/path/to/weights'")
        return DACCodec.load(path).eval()
    if Path(name).is_dir():
        return load_mica(name)
    raise CodecSepError(f"unknown codec {name!r}: use 'mica', a checkpoint dir, or 'dac-16k:PATH'")


__all__ = ["Codec", "CodesFile", "load_codec", "load_mica", "DEFAULT_CODEC"]
