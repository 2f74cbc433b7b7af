"""The text-encoder contract, prompt validation, the embedding cache and the encoder registry.

Every encoder maps a batch of prompts to `(B, E)` float32 rows of unit L2 norm. Prompts are
normalised first (Unicode NFKC, whitespace collapsed, ends stripped; case is kept because CLAP's
tokenizer is cased), and the normalised text is what gets embedded and what keys the cache.

Caching: `CachedTextEncoder` keeps an in-memory LRU and one `.npy` file per prompt on disk, named
by the SHA-1 of the normalised prompt, under `<root>/text/<encoder cache_id>/`. The root is the
`cache_dir` argument, else `$CODECSEP_CACHE`, else `~/.cache/codecsep`. Files are written
atomically (temp file + `os.replace`), so parallel workers can share one cache directory. Heavy
encoders load their model on first use, so a warm cache never even imports `transformers`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CodecSepError, require_installed

CACHE_ENV = "CODECSEP_CACHE"


class PromptError(CodecSepError):
    """A text prompt that cannot be used (empty, whitespace only, not a string, no target)."""


class TextEncoderError(CodecSepError):
    """A text encoder that cannot be built or loaded (unknown name, missing checkpoint...)."""


def normalize_prompt(text: str) -> str:
    """Canonical form of a prompt: NFKC, single spaces, no leading/trailing space."""
    if not isinstance(text, str):
        raise PromptError(f"a prompt must be a string, got {type(text).__name__}")
    norm = " ".join(unicodedata.normalize("NFKC", text).split())
    if not norm:
        raise PromptError(f"empty prompt {text!r}: describe the sound, e.g. 'birdsong'")
    return norm


def normalize_prompts(texts: Sequence[str]) -> list[str]:
    """Validate and normalise a batch; a bare string is refused (it would embed its letters)."""
    if isinstance(texts, str):
        raise PromptError(f"expected a list of prompts, got the string {texts!r}; wrap it in [...]")
    return [normalize_prompt(t) for t in texts]


def prompt_key(text: str) -> str:
    """Cache key: SHA-1 of the UTF-8 normalised prompt."""
    return hashlib.sha1(normalize_prompt(text).encode("utf-8")).hexdigest()


class TextEncoder(ABC):
    """Prompts -> `(B, E)` float32 unit-norm embeddings.

    Subclasses set `name` (registry name), `dim` (E) and implement `_encode` on already
    normalised prompts; `embed` validates, batches and normalises. `cache_id` names the
    on-disk cache and must change whenever the embeddings would (weights, dimension...).
    """

    name: str
    dim: int
    cacheable: bool = True  # worth a disk cache (False for encoders cheaper than a file read)

    @property
    def cache_id(self) -> str:
        return self.name

    def config(self) -> dict:
        """Keyword arguments that rebuild this encoder: `get_text_encoder(**enc.config())`."""
        return {"name": self.name}

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed prompts: list of B strings -> (B, E) float32, each row of unit L2 norm."""
        prompts = normalize_prompts(texts)
        if not prompts:
            return torch.zeros(0, self.dim)
        emb = self._encode(prompts).detach().to("cpu", torch.float32)
        if emb.shape != (len(prompts), self.dim):
            raise TextEncoderError(
                f"{self.name}: expected embeddings of shape {(len(prompts), self.dim)}, "
                f"got {tuple(emb.shape)}"
            )
        return F.normalize(emb, dim=-1)

    @abstractmethod
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        """Normalised prompts -> (B, E) embeddings (need not be normalised)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def default_cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "codecsep"


class CachedTextEncoder(TextEncoder):
    """Wraps an encoder with an in-memory LRU and an optional on-disk cache.

    Repeated prompts (also within one batch) are embedded once; a miss batch goes to the wrapped
    encoder in a single call. `cache_dir` is the root (default `$CODECSEP_CACHE` or
    `~/.cache/codecsep`); files go to `<root>/text/<cache_id>/<sha1[:2]>/<sha1>.npy`.
    A disk that cannot be written only disables the disk cache, with one warning.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        cache_dir: str | os.PathLike | None = None,
        disk: bool = True,
        max_memory_items: int = 100_000,
    ):
        self.encoder = encoder
        self.name, self.dim = encoder.name, encoder.dim
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
        self.directory: Path | None = root / "text" / encoder.cache_id if disk else None
        self.max_memory_items = max_memory_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    @property
    def cache_id(self) -> str:
        return self.encoder.cache_id

    def config(self) -> dict:
        return self.encoder.config()

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        found = {p: self._lookup(p) for p in dict.fromkeys(prompts)}
        missing = [p for p, v in found.items() if v is None]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            for p, row in zip(missing, self.encoder.embed(missing)):
                found[p] = row.clone()
                self._remember(p, found[p])
                self._store(p, found[p])
        return torch.stack([found[p] for p in prompts])

    def _lookup(self, prompt: str) -> torch.Tensor | None:
        if prompt in self._memory:
            self._memory.move_to_end(prompt)
            return self._memory[prompt]
        row = self._load(prompt)
        if row is not None:
            self._remember(prompt, row)
        return row

    def _remember(self, prompt: str, row: torch.Tensor) -> None:
        self._memory[prompt] = row
        self._memory.move_to_end(prompt)
        while len(self._memory) > self.max_memory_items:
            self._memory.popitem(last=False)

    def _path(self, prompt: str) -> Path:
        key = prompt_key(prompt)
        return self.directory / key[:2] / f"{key}.npy"

    def _load(self, prompt: str) -> torch.Tensor | None:
        if self.directory is None:
            return None
        path = self._path(prompt)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # absent, or truncated/corrupt: recompute (and overwrite)
            return None
        if arr.shape != (self.dim,) or arr.dtype != np.float32 or not np.isfinite(arr).all():
            return None
        return torch.from_numpy(arr)

    def _store(self, prompt: str, row: torch.Tensor) -> None:
        if self.directory is None:
            return
        path = self._path(prompt)
        try:
            _atomic_save_npy(path, row.numpy().astype(np.float32))
        except OSError as e:
            warnings.warn(f"text embedding cache disabled: cannot write {path} ({e})", stacklevel=3)
            self.directory = None


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------------
# Hash encoder: a dependency-free deterministic stand-in for tests and tiny models
# ---------------------------------------------------------------------------------------------
class HashTextEncoder(TextEncoder):
    """Hashed bag of character n-grams -> fixed Gaussian random projection -> unit norm.

    Deterministic across processes and machines (BLAKE2 hashing, seeded projection). Prompts that
    share many n-grams (typos, plurals) get close embeddings; synonyms do not. Case-insensitive.
    """

    name = "hash"
    cacheable = False

    def __init__(
        self, dim: int = 64, ngrams: Sequence[int] = (2, 3, 4), buckets: int = 4096, seed: int = 0
    ):
        if dim < 1 or buckets < 1 or not ngrams or min(ngrams) < 1:
            raise TextEncoderError("hash encoder: dim, buckets and n-gram sizes must be >= 1")
        self.dim, self.ngrams, self.buckets, self.seed = int(dim), tuple(ngrams), buckets, seed
        gen = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(buckets, self.dim, generator=gen) / self.dim**0.5

    @property
    def cache_id(self) -> str:
        grams = "".join(map(str, self.ngrams))
        return f"hash-d{self.dim}-n{grams}-b{self.buckets}-s{self.seed}"

    def config(self) -> dict:
        return {
            "name": "hash",
            "dim": self.dim,
            "ngrams": list(self.ngrams),
            "buckets": self.buckets,
            "seed": self.seed,
        }

    def _bag(self, prompt: str) -> torch.Tensor:
        text = f" {prompt.lower()} "
        grams = [text[i : i + n] for n in self.ngrams for i in range(max(len(text) - n + 1, 1))]
        ids = [
            int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            % self.buckets
            for g in grams
        ]
        return torch.bincount(torch.tensor(ids), minlength=self.buckets).float()

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([self._bag(p) for p in prompts]) @ self.projection


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
EncoderFactory = Callable[..., TextEncoder]
DEFAULT_TEXT_ENCODER = "minilm"


def _minilm(**kw) -> TextEncoder:
    from .minilm import MiniLMTextEncoder

    return MiniLMTextEncoder(**kw)


def _clap(**kw) -> TextEncoder:
    from .clap import ClapTextEncoder

    return ClapTextEncoder(**kw)


_REGISTRY: dict[str, EncoderFactory] = {"minilm": _minilm, "clap": _clap, "hash": HashTextEncoder}


def register_text_encoder(name: str, factory: EncoderFactory) -> None:
    """Add a backend: `factory(**kw)` must return a `TextEncoder`."""
    _REGISTRY[name] = factory


def available_text_encoders() -> list[str]:
    return sorted(_REGISTRY)


def get_text_encoder(
    name: str = DEFAULT_TEXT_ENCODER,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    **kw,
) -> TextEncoder:
    """Build a text encoder by registry name ("minilm" default, "clap", "hash").

    Extra keywords go to the backend (e.g. `dim=32` for "hash", `path=...` for "clap").
    With `cache=True` a cacheable encoder is wrapped in `CachedTextEncoder(cache_dir=...)`;
    the cheap "hash" encoder is never wrapped.
    """
    if name not in _REGISTRY:
        raise TextEncoderError(
            f"unknown text encoder {name!r}; choose from {', '.join(available_text_encoders())}"
        )
    try:
        encoder = _REGISTRY[name](**kw)
    except TypeError as e:  # an unknown keyword: fail loudly, never ignore it
        raise TextEncoderError(f"text encoder {name!r}: {e}") from e
    if cache and encoder.cacheable:
        return CachedTextEncoder(encoder, cache_dir=cache_dir)
    return encoder


# ---------------------------------------------------------------------------------------------
# Shared helpers for the transformers-backed encoders
# ---------------------------------------------------------------------------------------------
def offline_hub() -> None:
    """Keep huggingface_hub off the network (only effective before it is first imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports while loading local weights."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class TransformersTextEncoder(TextEncoder):
    """A Hugging Face tokenizer + model, loaded on first use and run in batches.

    Subclasses call `__init__(device, batch_size)` once their own checks pass, set `_tokenizer`
    and `_model` in `load()`, truncate at `max_length` tokens and map one tokenized batch to its
    (b, E) rows in `_embed_batch`.
    """

    max_length: int

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64):
        require_installed("transformers")
        self.device, self.batch_size = torch.device(device), batch_size
        self._tokenizer = self._model = None

    @abstractmethod
    def load(self) -> TransformersTextEncoder:
        """Load tokenizer and weights now (otherwise done lazily by the first `embed`)."""

    @abstractmethod
    def _embed_batch(self, batch) -> torch.Tensor:
        """One tokenizer output (input_ids, attention_mask, ... on `device`) -> (b, E)."""

    @torch.inference_mode()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        self.load()
        rows = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._tokenizer(
                prompts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            rows.append(self._embed_batch(batch))
        return torch.cat(rows).float().cpu()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H) token states, (B, L) attention mask -> (B, H) mean over real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
