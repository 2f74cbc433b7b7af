"""DAC backend: the Descript Audio Codec (Kumar et al. 2023, https://arxiv.org/abs/2306.06546)
run through `transformers.DacModel`, with official weights read from a local path only.

Two checkpoint layouts are read, detected from the path:
- descript: the `.pth` file written by descript-audio-codec, `{"state_dict", "metadata":
  {"kwargs"}}`, weight-normalised convs stored as `weight_g` / `weight_v`. Keys are renamed with
  an explicit module map (`descript_module_map`) and the weight norm is folded into the weights.
- transformers: a directory written by `DacModel.save_pretrained` (config.json + model.safetensors).

Shapes: waveform (B, 1, T); latent (B, 1024, F) with F = ceil(T / hop_length); codes (B, N, F).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import CodecSepError, require
from .base import Codec

if TYPE_CHECKING:  # pragma: no cover
    from transformers import DacConfig, DacModel


class CodecLoadError(CodecSepError):
    """A codec that cannot be built or loaded (bad path, unknown layout, mismatched weights)."""


@dataclass(frozen=True)
class DACVariant:
    """Architecture of one official DAC release, in `transformers.DacConfig` field names."""

    name: str
    sampling_rate: int
    downsampling_ratios: tuple[int, ...]
    n_codebooks: int
    encoder_hidden_size: int = 64
    decoder_hidden_size: int = 1536
    codebook_size: int = 1024
    codebook_dim: int = 8

    def config_kwargs(self) -> dict:
        kwargs = asdict(self)
        del kwargs["name"]
        kwargs["downsampling_ratios"] = list(self.downsampling_ratios)
        return kwargs


VARIANTS = {
    v.name: v
    for v in (
        DACVariant("16k", 16000, (2, 4, 5, 8), n_codebooks=12),
        DACVariant("24k", 24000, (2, 4, 5, 8), n_codebooks=32),
        DACVariant("44k", 44100, (2, 4, 8, 8), n_codebooks=9),
    )
}
CONFIG_FIELDS = frozenset(VARIANTS["16k"].config_kwargs())


def _transformers():
    return require("transformers", "text")


def _variant(name: str) -> DACVariant:
    """'16k', '16khz', 'dac-16k' and 'dac_16khz' all name the 16 kHz release."""
    key = name.lower().removeprefix("dac").strip("-_").removesuffix("hz")
    if key not in VARIANTS:
        raise CodecLoadError(f"unknown DAC variant {name!r}: choose one of {', '.join(VARIANTS)}")
    return VARIANTS[key]


def _codec_id(config: "DacConfig") -> str:
    fields = {k: getattr(config, k) for k in CONFIG_FIELDS}
    fields["downsampling_ratios"] = list(fields["downsampling_ratios"])
    for variant in VARIANTS.values():
        if fields == variant.config_kwargs():
            return f"dac-{variant.name}"
    return "dac-custom"


# ---------------------------------------------------------------------------------------------
# descript <-> transformers key mapping
# ---------------------------------------------------------------------------------------------
# descript builds nn.Sequentials: encoder.block = [conv, EncoderBlock x n, Snake, conv],
# decoder.model = [conv, DecoderBlock x n, Snake, conv, Tanh]; EncoderBlock.block =
# [ResidualUnit x 3, Snake, conv]; DecoderBlock.block = [Snake, convT, ResidualUnit x 3];
# ResidualUnit.block = [Snake, conv k7, Snake, conv k1]. transformers names the same modules.
_RESIDUAL_UNIT = {"block.0": "snake1", "block.1": "conv1", "block.2": "snake2", "block.3": "conv2"}
_WEIGHT_NORM_G = ("weight_g", "parametrizations.weight.original0")
_WEIGHT_NORM_V = ("weight_v", "parametrizations.weight.original1")
_PARAMS = (*_WEIGHT_NORM_G, *_WEIGHT_NORM_V, "weight", "bias", "alpha")


def descript_module_map(n_strides: int, n_codebooks: int) -> dict[str, str]:
    """descript module name -> transformers module name, for every module holding parameters."""
    n = n_strides
    names = {
        "encoder.block.0": "encoder.conv1",
        f"encoder.block.{n + 1}": "encoder.snake1",
        f"encoder.block.{n + 2}": "encoder.conv2",
        "decoder.model.0": "decoder.conv1",
        f"decoder.model.{n + 1}": "decoder.snake1",
        f"decoder.model.{n + 2}": "decoder.conv2",
    }
    for i in range(n):
        enc, hf_enc = f"encoder.block.{i + 1}", f"encoder.block.{i}"
        dec, hf_dec = f"decoder.model.{i + 1}", f"decoder.block.{i}"
        names[f"{enc}.block.3"] = f"{hf_enc}.snake1"
        names[f"{enc}.block.4"] = f"{hf_enc}.conv1"
        names[f"{dec}.block.0"] = f"{hf_dec}.snake1"
        names[f"{dec}.block.1"] = f"{hf_dec}.conv_t1"
        for r in range(3):
            for part, hf_part in _RESIDUAL_UNIT.items():
                names[f"{enc}.block.{r}.{part}"] = f"{hf_enc}.res_unit{r + 1}.{hf_part}"
                names[f"{dec}.block.{r + 2}.{part}"] = f"{hf_dec}.res_unit{r + 1}.{hf_part}"
    for k in range(n_codebooks):
        for part in ("in_proj", "out_proj", "codebook"):
            names[f"quantizer.quantizers.{k}.{part}"] = f"quantizer.quantizers.{k}.{part}"
    return names


def _split_param(key: str) -> tuple[str, str | None]:
    for param in _PARAMS:
        if key.endswith("." + param):
            return key[: -len(param) - 1], param
    return key, None


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=tuple(range(1, v.ndim)), keepdim=True)


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain weight of a `weight_norm(layer, dim=0)`: w = g * v / ||v||, norm over dims 1.."""
    return v * (g / _norm_except_dim0(v))


def descript_to_transformers(
    state_dict: dict[str, torch.Tensor], module_map: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename descript keys and fold weight norm. Returns (transformers state dict, unused keys)."""
    out, pairs, unused = {}, {}, []
    for key, value in state_dict.items():
        module, param = _split_param(key)
        hf_module = module_map.get(module)
        if hf_module is None or param is None:
            unused.append(key)
        elif param in _WEIGHT_NORM_G + _WEIGHT_NORM_V:
            pairs.setdefault(hf_module, {})["g" if param in _WEIGHT_NORM_G else "v"] = (key, value)
        else:
            out[f"{hf_module}.{param}"] = value
    for hf_module, gv in pairs.items():
        if set(gv) == {"g", "v"}:
            out[f"{hf_module}.weight"] = fold_weight_norm(gv["g"][1], gv["v"][1])
        else:  # half a weight-norm pair cannot make a weight
            unused.extend(f"{key} (its weight-norm pair is absent)" for key, _ in gv.values())
    return out, unused


def transformers_to_descript(
    state_dict: dict[str, torch.Tensor], module_map: dict[str, str]
) -> dict[str, torch.Tensor]:
    """Inverse of `descript_to_transformers`: every conv weight becomes (weight_g, weight_v)."""
    inverse = {hf: descript for descript, hf in module_map.items()}
    out = {}
    for key, value in state_dict.items():
        hf_module, param = key.rsplit(".", 1)
        name = inverse[hf_module]
        if param == "weight" and not hf_module.endswith("codebook"):  # descript: all convs are WN
            out[f"{name}.weight_g"] = _norm_except_dim0(value).clone()
            out[f"{name}.weight_v"] = value.clone()
        else:
            out[f"{name}.{param}"] = value.clone()
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoint layouts
# ---------------------------------------------------------------------------------------------
# Defaults of descript's `DAC.__init__`: the loader fills absent metadata kwargs the same way.
_DESCRIPT_DEFAULTS = {
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 8, 8],
    "latent_dim": None,
    "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2],
    "n_codebooks": 9,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": 0.0,
    "sample_rate": 44100,
}
_TRANSFORMERS_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def _config_from_descript(kwargs: dict, path: Path) -> dict:
    k = {**_DESCRIPT_DEFAULTS, **kwargs}
    rates = [int(r) for r in k["encoder_rates"]]
    latent = k["encoder_dim"] * 2 ** len(rates)
    if k["latent_dim"] not in (None, latent) or [int(r) for r in k["decoder_rates"]] != rates[::-1]:
        raise CodecLoadError(
            f"{path}: DAC with latent_dim={k['latent_dim']}, decoder_rates={k['decoder_rates']} "
            f"cannot be run by transformers.DacModel (needs latent {latent}, rates {rates[::-1]})"
        )
    if not isinstance(k["codebook_dim"], int):
        raise CodecLoadError(
            f"{path}: per-codebook dimensions {k['codebook_dim']} are not supported"
        )
    return {
        "encoder_hidden_size": int(k["encoder_dim"]),
        "downsampling_ratios": rates,
        "decoder_hidden_size": int(k["decoder_dim"]),
        "n_codebooks": int(k["n_codebooks"]),
        "codebook_size": int(k["codebook_size"]),
        "codebook_dim": int(k["codebook_dim"]),
        "sampling_rate": int(k["sample_rate"]),
    }


def _key_error(path: Path, counts: str, **problems: list[str]) -> CodecLoadError:
    """One line: the key counts, then a few keys of each non-empty problem list."""
    parts = [f"{path}: checkpoint keys do not match DacModel ({counts})"]
    for problem, keys in problems.items():
        if keys:
            more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
            parts.append(f"{problem} {len(keys)}: {', '.join(sorted(keys)[:4])}{more}")
    return CodecLoadError("; ".join(parts))


def _descript_name(hf_key: str, module_map: dict[str, str]) -> str:
    """A transformers key spelled as the descript file would hold it (for error messages)."""
    hf_module, param = hf_key.rsplit(".", 1)
    name = {hf: d for d, hf in module_map.items()}.get(hf_module, hf_module)
    if param == "weight" and not hf_module.endswith("codebook"):
        param = "weight_g/weight_v"
    return f"{name}.{param}"


def _read_descript_file(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors vary by torch version; all mean "not this layout"
        raise CodecLoadError(
            f"{path}: unknown DAC checkpoint layout (not a readable torch file: "
            f"{type(e).__name__}); expected a descript .pth or a transformers directory"
        ) from e
    metadata = checkpoint.get("metadata") if isinstance(checkpoint, dict) else None
    if not isinstance(metadata, dict) or "kwargs" not in metadata or "state_dict" not in checkpoint:
        raise CodecLoadError(
            f"{path}: unknown DAC checkpoint layout (a descript .pth holds 'state_dict' and "
            "'metadata' with 'kwargs')"
        )
    return checkpoint


def load_descript(path: Path) -> "DacModel":
    """Build a DacModel from descript-audio-codec's `.pth` file; every key must be accounted for."""
    checkpoint = _read_descript_file(path)
    kwargs = _config_from_descript(checkpoint["metadata"]["kwargs"], path)
    config = _transformers().DacConfig(**kwargs)
    model = _transformers().DacModel(config)
    module_map = descript_module_map(len(config.downsampling_ratios), config.n_codebooks)
    state, unused = descript_to_transformers(checkpoint["state_dict"], module_map)
    expected = model.state_dict().keys()
    missing = [_descript_name(k, module_map) for k in sorted(set(expected) - set(state))]
    unexpected = unused + sorted(set(state) - set(expected))
    if missing or unexpected or len(state) != len(expected):
        counts = f"{len(state)} mapped, model has {len(expected)}"
        raise _key_error(path, counts, missing=missing, unexpected=unexpected)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shape mismatch: keep the first offending line
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CodecLoadError(f"{path}: weights do not fit the configured DAC: {detail}") from e
    return model.eval()


def load_transformers_dir(path: Path) -> "DacModel":
    """Read a `DacModel.save_pretrained` directory, refusing missing, extra or reshaped weights."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (ValueError, AttributeError) as e:
        raise CodecLoadError(f"{path}: config.json is not a JSON object") from e
    if model_type != "dac":
        raise CodecLoadError(f"{path}: config.json has model_type {model_type!r}, not 'dac'")
    # ignore_mismatched_sizes: report reshaped weights in `info` (checked below) instead of
    # raising an error that only points at a printed table.
    model, info = _transformers().DacModel.from_pretrained(
        path, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True
    )
    missing, unexpected = list(info["missing_keys"]), list(info["unexpected_keys"])
    reshaped = [str(m[0]) for m in info["mismatched_keys"]]
    if missing or unexpected or reshaped:
        n_model = len(model.state_dict())
        counts = f"{n_model - len(missing) - len(reshaped)} loaded, model has {n_model}"
        raise _key_error(path, counts, missing=missing, unexpected=unexpected, reshaped=reshaped)
    return model.eval()


def detect_layout(path: str | os.PathLike) -> str:
    """'transformers' for a save_pretrained directory, 'descript' for a file; errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise CodecLoadError(f"{path}: no such DAC checkpoint (file or directory)")
    if path.is_dir():
        has_weights = any((path / name).is_file() for name in _TRANSFORMERS_WEIGHTS)
        if (path / "config.json").is_file() and has_weights:
            return "transformers"
        raise CodecLoadError(
            f"{path}: unknown DAC checkpoint layout (a transformers directory holds config.json "
            "and model.safetensors or pytorch_model.bin)"
        )
    return "descript"


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------
class DACCodec(Codec):
    """`Codec` over a `transformers.DacModel`; `encode` gives the encoder output before the RVQ."""

    def __init__(self, model: "DacModel"):
        super().__init__()
        config = model.config
        self.model = model.eval()
        self.codec_id = _codec_id(config)
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = int(config.hop_length)
        self.latent_dim = int(config.hidden_size)
        self.n_codebooks = int(config.n_codebooks)
        self.codebook_size = int(config.codebook_size)

    @classmethod
    def from_config(cls, variant: str = "16k", **overrides) -> "DACCodec":
        """Randomly initialised DAC of an official variant; `overrides` are DacConfig fields."""
        unknown = sorted(set(overrides) - CONFIG_FIELDS)
        if unknown:
            raise CodecLoadError(
                f"unknown DAC config field(s) {unknown}: allowed are {sorted(CONFIG_FIELDS)}"
            )
        tf = _transformers()
        config = tf.DacConfig(**{**_variant(variant).config_kwargs(), **overrides})
        return cls(tf.DacModel(config))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DACCodec":
        """Official weights from a local descript `.pth` file or transformers directory."""
        path = Path(path)
        if detect_layout(path) == "transformers":
            return cls(load_transformers_dir(path))
        return cls(load_descript(path))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the transformers layout (config.json + model.safetensors), readable by `load`."""
        self.model.save_pretrained(path)
        return Path(path)

    def descript_checkpoint(self) -> dict:
        """The descript-audio-codec `.pth` content for these weights (`torch.save` it)."""
        config = self.model.config
        rates = [int(r) for r in config.downsampling_ratios]
        module_map = descript_module_map(len(rates), config.n_codebooks)
        kwargs = {
            "encoder_dim": config.encoder_hidden_size,
            "encoder_rates": rates,
            "latent_dim": self.latent_dim,
            "decoder_dim": config.decoder_hidden_size,
            "decoder_rates": rates[::-1],
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "codebook_dim": config.codebook_dim,
            "quantizer_dropout": float(config.quantizer_dropout),
            "sample_rate": self.sample_rate,
        }
        state = transformers_to_descript(self.model.state_dict(), module_map)
        return {"state_dict": state, "metadata": {"kwargs": kwargs}}

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, latent_dim, ceil(T / hop)); T is zero-padded to a multiple of hop."""
        if wav.ndim != 3 or wav.shape[1] != 1 or wav.shape[-1] == 0:
            raise ValueError(f"DAC encodes (B, 1, T) waveforms with T > 0, got {tuple(wav.shape)}")
        return self.model.encoder(F.pad(wav, (0, -wav.shape[-1] % self.hop_length)))

    def quantize(self, latent: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """(B, D, F) -> (B, N, F) int64 codes: DAC's residual VQ with the first N codebooks."""
        n = self.n_codebooks if n_quantizers is None else int(n_quantizers)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_quantizers must be in 1..{self.n_codebooks}, got {n_quantizers}")
        residual, codes = latent, []
        with torch.no_grad():  # same steps as DacResidualVectorQuantizer in eval mode
            for vq in self.model.quantizer.quantizers[:n]:
                quantized, _, _, indices, _ = vq(residual)
                residual = residual - quantized
                codes.append(indices)
        return torch.stack(codes, dim=1)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N, F) codes -> (B, D, F): the sum of the first N codebooks' projected entries."""
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(
                f"codes must be (B, N<={self.n_codebooks}, F), got {tuple(codes.shape)}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        return self.model.quantizer.from_codes(codes.long())[0]

    def decode(self, latent: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """(B, D, F) -> (B, 1, length) waveform; length defaults to F * hop_length."""
        full = latent.shape[-1] * self.hop_length
        length = full if length is None else int(length)
        if not 0 < length <= full:
            raise ValueError(
                f"length must be in 1..{full} for {latent.shape[-1]} frames, got {length}"
            )
        wav = self.model.decoder(latent)
        # DAC's transposed convs lack output_padding, so each odd stride drops a sample (8 at the
        # end for hop 320 = 2*4*5*8): descript's own decode is short too. Zero-fill the tail.
        return F.pad(wav, (0, max(0, length - wav.shape[-1])))[..., :length]
