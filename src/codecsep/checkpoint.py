"""Checkpoint directories: `config.json` + `model.safetensors` + `meta.json`.

`config.json` holds `{"class": registry name, "config": resolved config}`; the weights restore
with strict=True; `meta.json` records the version, the content hash of the weights and the exact
command that trained them. Optimizer state lives apart (`train_state.pt`) and is never shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CodecSepError


def config_from_dict(cls, d: dict):
    """Build a frozen config dataclass from a dict; unknown keys are an error."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise CodecSepError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in d:
            v = d[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


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


def load_checkpoint(directory) -> tuple[str, dict, dict, dict]:
    """Read (kind, config dict, state_dict in float32, meta); checks the content hash."""
    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise CodecSepError(f"{directory}: not a CodecSep checkpoint (missing {name})")
    cfg = json.loads((directory / "config.json").read_text())
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if "sha256" in meta and meta["sha256"] != file_sha256(directory / "model.safetensors"):
        raise CodecSepError(f"{directory}: weights do not match their recorded hash (corrupt?)")
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(str(directory / "model.safetensors")).items()}
    return cfg["class"], cfg["config"], state, meta
