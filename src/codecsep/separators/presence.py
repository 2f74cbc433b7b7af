"""Is the prompted sound in the mixture at all? A check on one separation's outputs.

A masker asked for a sound that is not there still returns part of the mixture
(`scripts/absent_prompts.py`). This module scores each (mixture, prompt) from what one pass
already produced, with an audio encoder aligned with the text space:

    feats = presence_features(mixture, out["target"], out["residual"], prompts, sr)
    detector = PresenceDetector.load(path)      # fitted by scripts/fit_presence.py
    detector.absent(feats)                      # [True, False, ...]: prompts to warn about

    check = PresenceCheck.load()                # the installed check (audio encoder + detector),
    check.probabilities(separator, wav, out["target"], out["residual"], prompts)   # or None

Features (one dict per prompt):
  level         target level minus mixture level (dB)
  sem_target    cosine(audio embedding of the target, text embedding of the prompt)
  sem_residual  the same for what is left
  sem_mixture   the same for the mixture
  contrast      sem_target - sem_residual: a sound that is there is cut out and leaves the rest
  z_target      sem_target as a z-score among the target's cosines with the corpus's class names
                (a raw cosine depends on the class: some names sit closer to every sound)
  z_mixture     the same for the mixture
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..audio import level_db
from ..codecs import ASSETS
from ..errors import CodecSepError

FEATURES = ("level", "sem_target", "sem_residual", "sem_mixture", "contrast", "z_target", "z_mixture")
DEFAULT_PRESENCE = ASSETS / "presence"  # audio-encoder/ + detector.json (its README: provenance)
TEXT_KINDS = ("raw", "anchored")  # the prompt embedding a detector was fitted on


def _vocabulary() -> list[str]:
    from ..data.captions import CAPTIONS

    return list(CAPTIONS)


def _zscore(value: torch.Tensor, audio_emb: torch.Tensor, vocab_emb: torch.Tensor) -> float:
    """How far a prompt's cosine with one audio embedding stands above the vocabulary's."""
    ref = vocab_emb @ audio_emb
    return float((value - ref.mean()) / (ref.std() + 1e-6))


def presence_features(mixture: torch.Tensor, targets: torch.Tensor, residuals: torch.Tensor,
                      prompts, sample_rate: int, encoder=None,
                      text: torch.Tensor | None = None) -> list[dict]:
    """mixture (C, T) or (T,); targets / residuals (P, C, T) or (P, T); one prompt per row.
    `text`: the prompts' (P, E) unit-norm embeddings in the encoder's text space, if not the
    raw ones (e.g. a separator's anchored embeddings, `separator.embed(prompts)`)."""
    from ..text.audio_encoder import shipped_audio_encoder

    encoder = encoder or shipped_audio_encoder()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(targets) != len(prompts) or len(residuals) != len(prompts):
        raise CodecSepError(f"{len(prompts)} prompt(s) for {len(targets)} target(s) and "
                            f"{len(residuals)} residual(s)")
    text = encoder.embed_text(prompts) if text is None else text.float()
    vocab = encoder.embed_text(_vocabulary())
    mix_emb = encoder.embed(mixture, sample_rate)
    mix_db = level_db(mixture)
    rows = []
    for p, (t, r) in enumerate(zip(targets, residuals)):
        t_emb = encoder.embed(t, sample_rate)
        st, sm = text[p] @ t_emb, text[p] @ mix_emb
        sr = float(text[p] @ encoder.embed(r, sample_rate))
        rows.append({"level": level_db(t) - mix_db, "sem_target": float(st), "sem_residual": sr,
                     "sem_mixture": float(sm), "contrast": float(st) - sr,
                     "z_target": _zscore(st, t_emb, vocab), "z_mixture": _zscore(sm, mix_emb, vocab)})
    return rows


@dataclass
class PresenceDetector:
    """Logistic regression on standardised features; P(present) below `threshold` = flagged."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    fitted_by: str = ""
    text: str = "raw"  # "anchored": fitted on a separator's anchored prompt embeddings

    def __post_init__(self):
        if self.text not in TEXT_KINDS:
            raise CodecSepError(f"presence detector text {self.text!r}: use one of {TEXT_KINDS}")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise CodecSepError(f"unknown presence feature(s) {sorted(unknown)}: use {FEATURES}")
        if not len(self.features) == len(self.mean) == len(self.std) == len(self.weights):
            raise CodecSepError("a presence detector needs one mean, std and weight per feature")

    def probability(self, rows: list[dict]) -> list[float]:
        """P(the prompted sound is present) for each feature row."""
        out = []
        for row in rows:
            z = self.bias + sum(w * (row[f] - m) / s for f, m, s, w
                                in zip(self.features, self.mean, self.std, self.weights))
            out.append(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))
        return out

    def absent(self, rows: list[dict]) -> list[bool]:
        return [p < self.threshold for p in self.probability(rows)]

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> PresenceDetector:
        path = Path(path)
        if not path.is_file():
            raise CodecSepError(f"no presence detector at {path}")
        d = json.loads(path.read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class PresenceCheck:
    """An audio encoder and the detector fitted on its features: P(present) per prompt."""

    encoder: object  # AudioEncoder
    detector: PresenceDetector

    @classmethod
    def load(cls, path=None) -> PresenceCheck | None:
        """A folder with `audio-encoder/` and `detector.json`; None (no check) if the default
        folder is not installed."""
        from ..text.audio_encoder import AudioEncoder

        folder = Path(path) if path else DEFAULT_PRESENCE
        if path is None and not (folder / "detector.json").is_file():
            return None
        return cls(AudioEncoder.load(folder / "audio-encoder"),
                   PresenceDetector.load(folder / "detector.json"))

    def prompt_embeddings(self, separator, prompts) -> torch.Tensor | None:
        """The separator's anchored embeddings if the detector wants them and they share the
        encoder's text space; None for the raw ones."""
        from ..text.audio_encoder import same_text_space

        if self.detector.text == "raw" or not same_text_space(self.encoder, separator):
            return None
        return separator.embed(prompts)

    @torch.inference_mode()
    def probabilities(self, separator, wav: torch.Tensor, targets: torch.Tensor,
                      residuals: torch.Tensor, prompts) -> list[float]:
        rows = presence_features(wav, targets, residuals, prompts, separator.sample_rate,
                                 self.encoder, self.prompt_embeddings(separator, prompts))
        return self.detector.probability(rows)
