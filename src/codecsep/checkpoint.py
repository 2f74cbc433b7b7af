"""Checkpoint directories: `config.json` + `model.safetensors` + `meta.json`.

`config.json` holds `{"class": registry name, "config": resolved config}`; the weights restore
with strict=True; `meta.json` records the version, the content hash of the weights and the exact
command that trained them. Optimizer state lives apart (`train_state.pt`) and is never shipped.
`Checkpointed` gives a model `save`/`load` over such a directory from a few class attributes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CodecSepError


def config_from_dict(cls, d: dict):
    """Build a frozen config dataclass from a dict; unknown keys are an error. Lists become
    tuples, a dict given for a field whose default is a dataclass builds that dataclass, and the
    items of a list field declared with `metadata={"of": SomeConfig}` build SomeConfigs."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise CodecSepError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{f.name: _field_value(f, d[f.name]) for f in fields(cls) if f.name in d})


def _field_value(f, value):
    if isinstance(value, list) and "of" in f.metadata:
        return tuple(config_from_dict(f.metadata["of"], v) for v in value)
    if isinstance(value, dict):
        default = f.default if f.default_factory is MISSING else f.default_factory()
        if is_dataclass(default):
            return config_from_dict(type(default), value)
    return tuple(value) if isinstance(value, list) else value


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory, kind: str, config, state_dict: dict, meta: dict | None = None,
                    half: bool = False) -> Path:
    """Write a checkpoint directory atomically (a temp dir renamed into place)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v
    save_file(tensors, str(tmp / "model.safetensors"))
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    (tmp / "config.json").write_text(json.dumps({"class": kind, "config": cfg}, indent=2))
    info = {"codecsep_version": __version__, "sha256": file_sha256(tmp / "model.safetensors")}
    info.update(meta or {})
    (tmp / "meta.json").write_text(json.dumps(info, indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def _checkpoint_config(directory: Path) -> dict:
    """config.json of a checkpoint directory: {"class": kind, "config": {...}}."""
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise CodecSepError(f"{directory}: not a CodecSep checkpoint (missing {name})")
    cfg = _read_json(directory / "config.json")
    if not (isinstance(cfg, dict) and isinstance(cfg.get("class"), str) and "config" in cfg):
        raise CodecSepError(f"{directory}: config.json does not name a class and a config "
                            "(not a CodecSep checkpoint)")
    return cfg


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CodecSepError(f"{path}: not valid JSON ({e}); the checkpoint is corrupt") from None


def checkpoint_kind(directory) -> str:
    """The registry name a checkpoint directory records ("codecsep", "resunet", ...)."""
    return _checkpoint_config(Path(directory))["class"]


def load_checkpoint(directory) -> tuple[str, dict, dict, dict]:
    """Read (kind, config dict, state_dict in float32, meta); checks the content hash."""
    directory = Path(directory)
    cfg = _checkpoint_config(directory)
    meta_path = directory / "meta.json"
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    if "sha256" in meta and meta["sha256"] != file_sha256(directory / "model.safetensors"):
        raise CodecSepError(f"{directory}: weights do not match their recorded hash (corrupt?)")
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(str(directory / "model.safetensors")).items()}
    return cfg["class"], cfg["config"], state, meta


def load_model(path, kind: str, label: str, build, weights=lambda model: model):
    """Rebuild a model from a checkpoint directory in eval mode, with `.meta` set: `build(config
    dict)` makes it and `weights(model)` is the module whose state_dict was stored (strict). A
    checkpoint of another kind, or one whose config or weights do not fit this version's model,
    is a one-line CodecSepError."""
    found, cfg, state, meta = load_checkpoint(path)
    if found != kind:
        raise CodecSepError(f"{path}: holds a {found!r} checkpoint, not {label}")
    try:
        model = build(cfg)
        weights(model).load_state_dict(state, strict=True)
    except (CodecSepError, RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CodecSepError(f"{path}: does not fit {label} of codecsep {__version__} "
                            f"(made by another version? {first})") from None
    model.meta = meta
    return model.eval()


def provenance(path, meta: dict, **extra) -> dict:
    """What a checkpoint built from others (an average, an ensemble) records of each input:
    its path, step, hash and recipe, with the input's own inputs if it was built too."""
    keep = ("averaged_from", "combined_from", "pruned_from", "refined_from", "history")
    return {"path": str(path), **extra, "step": meta.get("step"), "sha256": meta.get("sha256"),
            "trained_by": meta.get("trained_by"), **{k: meta[k] for k in keep if k in meta}}


def command_line() -> str:
    """The running command, shell-quoted: what a checkpoint's meta records as "trained_by"."""
    return " ".join(shlex.quote(a) for a in sys.argv)


class Checkpointed:
    """`save` / `load` for a model stored as its config plus one submodule's weights.

    A subclass sets `checkpoint_kind` (the name config.json records), `config_class` (a frozen
    dataclass, rebuilt by `config_from_dict`), `checkpoint_label` (names the model in errors),
    `checkpoint_weights` (the attribute whose state_dict is stored), and may set
    `checkpoint_half` (store float16) and `default_checkpoint` (what `load(None)` reads). Hooks:
    `checkpoint_meta()` -> what meta.json records besides the caller's meta, and
    `check_checkpoint(path, meta)` -> raise if the weights do not fit the parts given.
    """

    checkpoint_kind: str
    config_class: type
    checkpoint_label: str
    checkpoint_weights: str = "net"
    checkpoint_half: bool = True
    default_checkpoint: Path | None = None

    def checkpoint_meta(self) -> dict:
        return {}

    def check_checkpoint(self, path: Path, meta: dict) -> None:
        """Raise CodecSepError when the loaded weights do not fit this model's parts."""

    def save(self, directory, meta: dict | None = None) -> Path:
        """Write the checkpoint directory; `meta` adds to (and overrides) `checkpoint_meta()`."""
        info = {**self.checkpoint_meta(), **(meta or {})}
        weights = getattr(self, self.checkpoint_weights).state_dict()
        return save_checkpoint(directory, self.checkpoint_kind, asdict(self.config), weights,
                               meta=info, half=self.checkpoint_half)

    @classmethod
    def load(cls, path=None, **parts):
        """Rebuild from a checkpoint directory (None: `default_checkpoint`) with strict weights;
        `parts` go to the constructor (e.g. `codec=`, `text_encoder=`). Returns it in eval mode
        with `.meta` set."""
        path = Path(path) if path else cls.default_checkpoint
        if path is None:
            raise CodecSepError(f"give the checkpoint folder of {cls.checkpoint_label} to load")
        model = load_model(path, cls.checkpoint_kind, cls.checkpoint_label,
                           lambda cfg: cls(config_from_dict(cls.config_class, cfg), **parts),
                           lambda m: getattr(m, cls.checkpoint_weights))
        model.check_checkpoint(path, model.meta)
        return model
