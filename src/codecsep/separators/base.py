"""What every separator shares: input checks, the text-queried interface and its long-input
windows, and the checkpoint rules of models tied to a codec's latent space.

    class MySeparator(TextQueriedSeparator):    # + checkpoint_kind, config_class, ... (Checkpointed)
        def separate_window(self, chunk, cond):  # (C, w), (P, E) -> (2, P, C, w): target, residual
            ...
    MySeparator(...).separate(wav, ["dog barking"])   # {"target", "residual"}: (P, C, T) each

`separate` runs `separate_window` on overlapping windows of `config.window_seconds`, joined by
crossfades of `config.overlap_seconds` (`chunking.overlap_add`), so memory stays bounded.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpointed, command_line
from ..errors import CodecSepError
from ..text.anchors import PromptAnchors, apply_anchors, nearest_sounds
from ..text.base import normalize_prompts
from .chunking import overlap_add

# separator attributes a run may set instead of the checkpoint's inference settings
INFERENCE_OVERRIDES = ("anchor_weight", "shifts", "members", "postfilter")


def parse_members(text) -> tuple[int, ...]:
    """ "2" -> (2,), "1, 2" -> (1, 2); ValueError for anything but comma-separated integers."""
    return tuple(int(t) for t in str(text).split(","))


def members_arg(text: str) -> int | str:
    """`--members`: one masker of an ensemble (1-based) or several, comma-separated: "2" -> 2,
    "1, 2" -> "1,2" (what results record; the separator checks the range)."""
    try:
        values = parse_members(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1-based masker numbers such as 1 or 1,2, "
                                         f"got {text!r}") from None
    return values[0] if len(values) == 1 else ",".join(map(str, values))


def postfilter_arg(text: str) -> str:
    """`--postfilter`: "N_FFT" or "N_FFT,POWER" of the spectral post-filter, "0" off (checked
    here; results record the text)."""
    from .postfilter import PostFilter

    try:
        PostFilter.parse(text)
    except CodecSepError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return str(text).replace(" ", "")


def apply_overrides(model, overrides: dict, name: str) -> None:
    """Set each `INFERENCE_OVERRIDES` attribute given (None: keep the checkpoint's)."""
    for key, value in overrides.items():
        if value is None:
            continue
        if not hasattr(model, key):
            raise CodecSepError(f"--{key.replace('_', '-')} does not apply to {name}")
        setattr(model, key, value)


def check_prompts(prompts) -> list[str]:
    """One prompt or a list -> the prompts in canonical form (`text.base.normalize_prompt`:
    NFKC, single spaces); one-line errors for none or empty ones."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise CodecSepError("give at least one prompt")
    return normalize_prompts(prompts)


def as_channels(audio) -> torch.Tensor:
    """(T,), (C, T) or (T, C) floating-point array or tensor -> (C, T) float32. A 2-D input
    with more rows than columns is read as (T, C), the layout `soundfile.read` returns (audio
    has more samples than channels). A one-line error for another shape or type, or for NaN or
    infinite samples."""
    wav = audio.detach().cpu() if torch.is_tensor(audio) else torch.from_numpy(np.asarray(audio))
    if not wav.is_floating_point():
        raise CodecSepError(f"audio must be floating point in [-1, 1], got {wav.dtype}")
    wav = wav.float()
    wav = wav.unsqueeze(0) if wav.ndim == 1 else wav
    if wav.ndim == 2 and wav.shape[0] > wav.shape[1]:
        wav = wav.T.contiguous()  # (T, C) -> (C, T)
    if wav.ndim != 2 or wav.shape[-1] == 0:
        raise CodecSepError(f"audio must be (T,) or (C, T) with T > 0, got {tuple(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise CodecSepError("audio contains NaN or infinite samples")
    return wav


class TextQueriedSeparator(Checkpointed, nn.Module):
    """`separate(audio, prompts) -> {"target", "residual"}` over `separate_window`, with the
    text encoder named by `config.text_encoder` loaded on first use. Subclasses give
    `sample_rate`, `text_dim` and `separate_window`."""

    def __init__(self, config, text_encoder=None):
        super().__init__()
        self.config = config
        self._text = text_encoder
        self.anchor_weight: float | None = None  # overrides config.anchors.weight when set
        self._anchor_cache: dict = {}

    @property
    def text_dim(self) -> int:
        """E: the size of a prompt embedding (what `embed` gives, `separate(cond=...)` takes)."""
        raise NotImplementedError

    @property
    def text_encoder(self):
        if self._text is None:
            from ..text.base import get_text_encoder

            self._text = get_text_encoder(self.config.text_encoder)
        return self._text

    @property
    def anchors(self) -> PromptAnchors:
        """The prompt anchoring in force (inactive if the config has none), with `anchor_weight`
        applied when it is set."""
        anchors = getattr(self.config, "anchors", None) or PromptAnchors()
        return anchors if self.anchor_weight is None else replace(anchors, weight=self.anchor_weight)

    def inference_tag(self) -> str:
        """What besides the weights changes the output ('' when nothing does): prompt anchoring,
        and windows other than the 10 s / 1 s every model had before session 14 (their results
        keep their fingerprints)."""
        a = self.anchors
        tags = [f"anchors:w{a.weight:g}:t{a.temperature:g}:n{len(a.texts)}"
                + (f":a{a.n_aliases}" if a.aliases else "")] if a.active else []
        window = (self.config.window_seconds, self.config.overlap_seconds)
        tags += [f"window:{window[0]:g}:{window[1]:g}"] if window != (10.0, 1.0) else []
        return "+".join(tags)

    def embed(self, prompts) -> torch.Tensor:
        """(P, E) text embeddings of the prompts, anchored to the training captions if the
        checkpoint says so (`text.anchors`)."""
        return self.anchor(self.text_encoder.embed(check_prompts(prompts)).float())

    def anchor(self, emb: torch.Tensor) -> torch.Tensor:
        """Text-space embeddings (P, E) anchored as `embed` anchors them (unchanged if the
        checkpoint has no anchors)."""
        return apply_anchors(emb, self.anchors, self.text_encoder.embed, self._anchor_cache)

    def nearest_sounds(self, prompts=None,
                       emb: torch.Tensor | None = None) -> list[tuple[str | None, float]]:
        """Per prompt (or per row of `emb`, e.g. audio queries in the text space): the trained
        sound whose training caption is most similar, and that cosine (`text.anchors`)."""
        if emb is None:
            emb = self.text_encoder.embed(check_prompts(prompts)).float()
        return nearest_sounds(emb, self.anchors, self.text_encoder.embed, self._anchor_cache)

    def read_instruction(self, text: str):
        """A free-form request ("please remove the speech") as an `Instruction` (task and
        targets), its sound named as one of this model's trained sounds when the rules find one
        (`text.instructions`). `separate --instruction` and the web app both read requests so."""
        from ..text.instructions import parse_instruction

        return parse_instruction(text, self.anchors.labels())

    def anchor_queries(self, emb: torch.Tensor, weight: float) -> torch.Tensor:
        """(P, E) audio-query embeddings (already in the text space) pulled toward the training
        captions as prompts are, with `weight` (0: as they are)."""
        anchors = replace(self.anchors, weight=weight)
        return apply_anchors(emb.float(), anchors, self.text_encoder.embed, self._anchor_cache)

    def separate_window(self, chunk: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One window (C, w) and cond (P, E) -> (2, P, C, w): target, then residual."""
        raise NotImplementedError

    @torch.inference_mode()
    def separate(self, audio, prompts, cond: torch.Tensor | None = None) -> dict:
        """audio (T,) or (C, T) at `sample_rate` -> {"target", "residual"}: (P, C, T) each.

        Channels are separated independently. `cond` (P, E) overrides the prompt embeddings
        (e.g. an audio query's embedding).
        """
        wav = as_channels(audio)
        cond = self.embed(prompts) if cond is None else cond
        window, overlap = self.window_samples()
        out = overlap_add(wav, window, overlap, lambda chunk: self.separate_window(chunk, cond))
        return {"target": out[0], "residual": out[1]}

    def window_samples(self) -> tuple[int, int]:
        """(window, overlap) in samples: how `separate` cuts long inputs."""
        return (int(self.config.window_seconds * self.sample_rate),
                int(self.config.overlap_seconds * self.sample_rate))


class LatentSpaceCheckpoint(Checkpointed):
    """Checkpoint rules of a model on `self.codec`'s continuous latent: meta.json records the
    codec and its latent space, and loading refuses a codec whose latent space differs."""

    def checkpoint_meta(self) -> dict:
        return {"codec_id": self.codec.codec_id, "latent_space": self.codec.latent_space_id(),
                "trained_by": command_line()}

    def check_checkpoint(self, path: Path, meta: dict) -> None:
        if meta.get("latent_space") not in (None, self.codec.latent_space_id()):
            raise CodecSepError(f"{path} was trained in latent space {meta['latent_space']}, "
                                f"but codec {self.config.codec} gives "
                                f"{self.codec.latent_space_id()}")


class FrozenCodec:
    """For an nn.Module built around a frozen `self.codec`: its sample rate, and the codec kept
    in eval mode whatever `train()` is asked (an RVQ in training mode runs every stage)."""

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def train(self, mode: bool = True):
        super().train(mode)
        self.codec.eval()
        return self
