"""CLAP text tower (the CodecSep paper's text encoder; 512-d for laion/clap-htsat-*).

Loaded with `transformers.ClapTextModelWithProjection` from a LOCAL directory only: either a full
`ClapModel` checkpoint (e.g. `laion/clap-htsat-unfused` saved with `save_pretrained`; the audio
tower's weights are skipped) or a text-only one. The embedding is the projected pooled text state,
L2-normalised, i.e. `ClapModel.get_text_features`. Paper: https://arxiv.org/abs/2211.06687
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .base import (
    TextEncoderError,
    TransformersTextEncoder,
    offline_hub,
    quiet_transformers,
)

PATH_ENV = "CODECSEP_CLAP_PATH"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
MAX_TOKENS = 77  # LAION-CLAP's training length


class ClapTextEncoder(TransformersTextEncoder):
    """CLAP text embeddings from a local checkpoint directory: (B, projection_dim)."""

    name = "clap"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ):
        self.path = _checkpoint_dir(path)
        self.config_dict = _read_config(self.path)
        self.dim = _projection_dim(self.config_dict)
        super().__init__(device, batch_size)
        self.max_length = MAX_TOKENS

    @property
    def cache_id(self) -> str:
        """Content-derived: config plus weight file names and sizes (no 600 MB hashing)."""
        h = hashlib.sha1(json.dumps(self.config_dict, sort_keys=True).encode())
        for f in sorted(self.path.iterdir()):
            if f.suffix in WEIGHT_SUFFIXES:
                h.update(f"{f.name}:{f.stat().st_size}".encode())
        return f"clap-{h.hexdigest()[:12]}"

    def config(self) -> dict:
        return {"name": self.name, "path": str(self.path)}

    def load(self) -> ClapTextEncoder:
        """Load tokenizer and text tower now (otherwise done lazily by the first `embed`)."""
        if self._model is None:
            offline_hub()
            from transformers import AutoTokenizer, ClapTextModelWithProjection

            try:
                with quiet_transformers():
                    tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                    model, info = ClapTextModelWithProjection.from_pretrained(
                        self.path, local_files_only=True, output_loading_info=True
                    )
            except (OSError, ValueError, KeyError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise TextEncoderError(f"{self.path}: cannot load CLAP ({first})") from e
            _check_loaded(self.path, info)
            positions = model.config.max_position_embeddings - 2  # RoBERTa offsets by pad id + 1
            self.max_length = min(MAX_TOKENS, positions)
            self._tokenizer, self._model = tokenizer, model.eval().to(self.device)
        return self

    def _embed_batch(self, batch) -> torch.Tensor:
        """The projected pooled text state, `ClapModel.get_text_features`: (b, projection_dim)."""
        batch.pop("token_type_ids", None)
        return self._model(**batch).text_embeds


def _checkpoint_dir(path: str | os.PathLike | None) -> Path:
    raw = path if path is not None else os.environ.get(PATH_ENV)
    if not raw:
        raise TextEncoderError(
            "the CLAP text encoder needs a local checkpoint directory "
            f"(e.g. laion/clap-htsat-unfused saved with save_pretrained): pass path=... "
            f"or set {PATH_ENV}"
        )
    directory = Path(raw).expanduser()
    if not directory.is_dir():
        raise TextEncoderError(f"CLAP checkpoint directory not found: {directory}")
    if not any(f.suffix in WEIGHT_SUFFIXES for f in directory.iterdir()):
        raise TextEncoderError(f"{directory}: no weights (*.safetensors or *.bin) in the folder")
    return directory


def _read_config(directory: Path) -> dict:
    try:
        cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TextEncoderError(f"{directory}: no config.json, not a CLAP checkpoint") from None
    except json.JSONDecodeError as e:
        raise TextEncoderError(f"{directory}/config.json: invalid JSON ({e})") from None
    if cfg.get("model_type") not in ("clap", "clap_text_model"):
        raise TextEncoderError(
            f"{directory}: model_type is {cfg.get('model_type')!r}, expected a CLAP checkpoint"
        )
    return cfg


def _projection_dim(cfg: dict) -> int:
    """Embedding size without loading the model (ClapConfig defaults to 512)."""
    if cfg["model_type"] == "clap_text_model":
        return int(cfg.get("projection_dim", 512))
    text = cfg.get("text_config") or {}
    return int(text.get("projection_dim", cfg.get("projection_dim", 512)))


def _check_loaded(directory: Path, info: dict) -> None:
    """Every text-tower weight must come from the checkpoint (no silent random init)."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(
        str(m[0] if isinstance(m, tuple) else m) for m in info.get("mismatched_keys") or []
    )
    if missing or mismatched:
        names = ", ".join(missing[:3] + mismatched[:3])
        raise TextEncoderError(
            f"{directory}: CLAP text weights missing or of the wrong shape "
            f"({len(missing) + len(mismatched)} tensors, e.g. {names})"
        )
