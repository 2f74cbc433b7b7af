"""Codec backends behind one contract (`Codec`), and `load_codec` to get one by name or path.

Names: "mica" (our shipped default), a Mica checkpoint directory, or "dac-16k" / "dac-24k" /
"dac-44k" followed by ":PATH" to official weights on disk (descript .pth or transformers dir;
the weights must be that release's), or "dac:PATH" for any DAC configuration.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CodecSepError
from .base import Codec, CodesFile

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CODEC = ASSETS / "mica-16k"


def load_mica(path: str | Path = DEFAULT_CODEC) -> Codec:
    from ..checkpoint import config_from_dict, load_model
    from .mica import MicaCodec, MicaConfig

    return load_model(path, "mica", "a Mica codec",
                      lambda cfg: MicaCodec(config_from_dict(MicaConfig, cfg)))


def load_codec(name: str | Path = "mica") -> Codec:
    """A codec, in eval mode, from a registry name or a checkpoint path."""
    name = str(name)
    if name == "mica":
        return load_mica(DEFAULT_CODEC)
    if name.startswith("dac"):
        from .dac import DACCodec, _variant

        variant, _, path = name.partition(":")
        if not path:
            raise CodecSepError(f"{variant} needs local weights: use '{variant}:/path/to/weights'")
        wanted = None if variant == "dac" else f"dac-{_variant(variant).name}"
        codec = DACCodec.load(path).eval()
        if wanted and codec.codec_id != wanted:
            raise CodecSepError(f"{path}: holds {codec.codec_id} weights, not {wanted} "
                                "(use 'dac:PATH' to load any DAC)")
        return codec
    if Path(name).is_dir():
        return load_mica(name)
    raise CodecSepError(f"unknown codec {name!r}: use 'mica', a checkpoint dir, or 'dac-16k:PATH'")


__all__ = ["Codec", "CodesFile", "load_codec", "load_mica", "DEFAULT_CODEC"]
