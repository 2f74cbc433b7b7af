"""Hierarchical CodecSep: HSM-TSS's global-then-local idea on codec latents.

    stage 1  g_mix = A(mixture latent)                     aligned audio encoder, frozen
             g_hat = normalize(t + MLP([g_mix ; t]))        predicted target embedding (E,)
    stage 2  mask  = Masker(latent, [t ; g_hat])            the CodecSep masker, cond_dim = 2E

t is the text embedding (or an audio query's embedding: the spaces are aligned). A is the audio
encoder of `codecsep.text.audio_encoder`, which reads the Mica latent (an MDCT) directly, so
stage 1 costs no extra transform. Both stages live in `HierarchicalMasker`, which takes the same
(latent, cond) as `Masker`: `Separator.separate`, `separate_codes` and the overlap-add windows
run unchanged, each window's mixture embedding coming from its own latent. The stage-1 MLP ends
in a zero-initialised layer, so untrained it predicts the text embedding itself.

    sep = HierarchicalSeparator.load("runs/hier/checkpoint")
    sep.separate(wav, ["dog barking"])["target"]          # (P, C, T), as Separator

Training (`codecsep.train.hierarchical`) conditions stage 2 on the clean target's embedding
with probability p (teacher forcing, HSM-TSS's switcher) and on stage 1's prediction otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CodecSepError
from ..text.audio_encoder import AudioEncoder, AudioEncoderConfig
from .masker import Masker, MaskerConfig
from .separator import Separator, SeparatorConfig


@dataclass(frozen=True)
class HierarchicalConfig(SeparatorConfig):
    masker: MaskerConfig = field(default_factory=lambda: MaskerConfig(cond_dim=768))
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    stage1_hidden: int = 512
    stage1_depth: int = 2


class GlobalPredictor(nn.Module):
    """Stage 1: mixture embedding (B, E) + text (B, E) -> predicted target embedding (B, E)."""

    def __init__(self, dim: int, hidden: int, depth: int):
        super().__init__()
        layers = [nn.Linear(2 * dim, hidden), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.net = nn.Sequential(*layers, self.out)

    def forward(self, mixture: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(text + self.net(torch.cat([mixture, text], dim=-1)), dim=-1)


class HierarchicalMasker(nn.Module):
    """(latent (B, D, F), text (B, E)) -> mask (B, D, F), through stage 1 then the masker."""

    def __init__(self, masker: Masker, audio: AudioEncoder, hidden: int, depth: int):
        super().__init__()
        self.masker, self.audio = masker, audio.requires_grad_(False)
        self.stage1 = GlobalPredictor(audio.config.embed_dim, hidden, depth)

    def mixture_embedding(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, D, F) -> (B, E): the frozen audio encoder on the mixture's own latent."""
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            return self.audio.embed_latent(latent.float())

    def predict(self, latent: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Stage 1: (B, D, F), (B, E) -> predicted target embedding (B, E), unit norm."""
        return self.stage1(self.mixture_embedding(latent), text.float())

    def forward(self, latent: torch.Tensor, text: torch.Tensor,
                target_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """Stage 2 conditioned on [text ; g], g = `target_embedding` or stage 1's prediction."""
        g = self.predict(latent, text) if target_embedding is None else target_embedding
        return self.masker(latent, torch.cat([text, g.to(text.dtype)], dim=-1))


class HierarchicalSeparator(Separator):
    """A `Separator` whose masker is a `HierarchicalMasker`; everything else is inherited."""

    checkpoint_kind = "hierarchical"
    config_class = HierarchicalConfig
    checkpoint_label = "a hierarchical separator"
    default_checkpoint = None

    def __init__(self, config: HierarchicalConfig, codec=None, text_encoder=None,
                 audio_encoder: AudioEncoder | None = None):
        super().__init__(config, codec=codec, text_encoder=text_encoder)
        audio = audio_encoder if audio_encoder is not None else AudioEncoder(config.audio)
        check_compatible(config, audio, self.codec)
        self.masker = HierarchicalMasker(self.masker, audio, config.stage1_hidden,
                                         config.stage1_depth)

    @property
    def text_dim(self) -> int:
        """E: what `embed` and `separate(cond=...)` give per prompt (the masker sees 2E)."""
        return self.config.audio.embed_dim

    def forward(self, mixture: torch.Tensor, cond: torch.Tensor, bf16: bool = False,
                target_embedding: torch.Tensor | None = None, p_true: float = 0.0,
                return_embedding: bool = False):
        """Training pass: mixture (B, 1, T), text cond (B, E) -> (target, residual) (B, 1, T),
        plus stage 1's prediction (B, E) with `return_embedding`. Each item's stage 2 sees
        `target_embedding` (the clean target's, B x E) with probability `p_true`."""
        z = self.codec.encode(mixture)
        predicted = self.masker.predict(z, cond)
        g = predicted
        if target_embedding is not None and p_true > 0:
            teacher = torch.rand(len(z), 1, device=z.device) < p_true
            g = torch.where(teacher, target_embedding, predicted)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mask = self.masker(z, cond, target_embedding=g)
        target = mask.float() * z
        both = self.codec.decode(torch.cat([target, z - target]), mixture.shape[-1])
        return (*both.chunk(2), predicted) if return_embedding else both.chunk(2)


def check_compatible(config: HierarchicalConfig, audio: AudioEncoder, codec) -> None:
    """One-line errors for an audio encoder, masker or codec that do not fit together."""
    if audio.config != config.audio:
        raise CodecSepError("the audio encoder given differs from config.audio: build the "
                            "config with audio=encoder.config")
    if audio.config.text_encoder != config.text_encoder:
        raise CodecSepError(f"the audio encoder is aligned with {audio.config.text_encoder!r} "
                            f"text embeddings, the separator uses {config.text_encoder!r}")
    if config.masker.cond_dim != 2 * audio.config.embed_dim:
        raise CodecSepError(f"masker cond_dim must be 2 x {audio.config.embed_dim} = "
                            f"{2 * audio.config.embed_dim} ([text ; target embedding]), "
                            f"got {config.masker.cond_dim}")
    if codec.latent_space_id() != audio.latent_space_id:
        raise CodecSepError(f"the hierarchical separator needs a codec whose latent is the "
                            f"{audio.latent_space_id} MDCT (Mica); {codec.codec_id} gives "
                            f"{codec.latent_space_id()}")
