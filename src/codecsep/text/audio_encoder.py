"""An audio encoder aligned with the text space: the role of HSM-TSS's Q-Audio / CLAP's audio tower.

    enc = AudioEncoder.load()                      # shipped: src/codecsep/assets/audio-encoder
    a = enc.embed(wav)                             # (T,) or (C, T) at 16 kHz -> (E,), unit norm
    enc.embed_text(["dog barking"]) @ a            # cosine in the (frozen) MiniLM text space
    semantic_score(out["target"][0], "dog barking")   # a CLAP-score-like check of an output

Features: the Mica latent (a hop-320 MDCT at 16 kHz, 50 frames/s) pooled into mel bands in dB
(`band_levels`: the network's input, so training can precompute it), then taken relative to the
loudest band-frame and floored at -80 dB, so the embedding ignores the gain. Network: conv
stem, ConvNeXt blocks, one stride-2 step (25 frames/s), attention + max pooling over time, a
linear map to E and a unit norm. It is trained contrastively (symmetric InfoNCE, learnable
temperature) against the frozen text embeddings of the clips' captions
(`codecsep.train.audio_encoder`), so audio and text share one space: text -> audio retrieval,
audio queries for the separator (`separate --query-audio`), semantic scores of outputs, and the
global stage of the hierarchical separator (`codecsep.separators.hierarchical`).
"""

from __future__ import annotations

import functools
import math
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import config_from_dict, load_model, save_checkpoint
from ..codecs import ASSETS
from ..codecs.mdct import MDCT
from ..errors import CodecSepError
from ..nn.convnext import ConvNeXtBlock

DEFAULT_AUDIO_ENCODER = ASSETS / "audio-encoder"
KIND = "audio-encoder"


@dataclass(frozen=True)
class AudioEncoderConfig:
    sample_rate: int = 16000
    hop_length: int = 320  # the Mica latent's MDCT: 50 frames/s at 16 kHz
    n_bands: int = 64  # mel bands pooled from the MDCT power
    channels: int = 128
    depth: int = 4  # ConvNeXt blocks, half at 50 frames/s and half at 25
    embed_dim: int = 384  # = the text encoder's dimension
    text_encoder: str = "minilm"  # the frozen text space the audio is aligned with
    floor_db: float = 80.0


def mel_band_matrix(n_bins: int, n_bands: int, sample_rate: int) -> torch.Tensor:
    """(n_bands, n_bins) triangular mel filters over MDCT bin centres, rows summing to 1."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    centres_hz = (np.arange(n_bins) + 0.5) * sample_rate / (2 * n_bins)
    edges = 700.0 * (10 ** (np.linspace(0, mel(sample_rate / 2), n_bands + 2) / 2595.0) - 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((centres_hz - lo) / (mid - lo), (hi - centres_hz) / (hi - mid)))
    empty = fb.sum(1) == 0  # bands narrower than a bin: take the nearest bin
    fb[empty, np.abs(centres_hz[None] - mid[empty]).argmin(1)] = 1.0
    return torch.from_numpy(fb / fb.sum(1, keepdims=True)).float()


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioEncoderConfig = AudioEncoderConfig(), text_encoder=None):
        super().__init__()
        c = self.config = config
        self.latent_space_id = f"mdct-{c.sample_rate}-{c.hop_length}"  # for `embed_latent`
        self.mdct = MDCT(c.hop_length)
        self.register_buffer("bands", mel_band_matrix(c.hop_length, c.n_bands, c.sample_rate),
                             persistent=False)
        self.stem = nn.Conv1d(c.n_bands, c.channels, 3, padding=1)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(c.channels) for _ in range(c.depth // 2)))
        self.down = nn.Conv1d(c.channels, c.channels, 2, stride=2)
        self.blocks2 = nn.Sequential(*(ConvNeXtBlock(c.channels)
                                       for _ in range(c.depth - c.depth // 2)))
        self.norm = nn.LayerNorm(c.channels)
        self.score = nn.Linear(c.channels, 1)  # attention pooling weights over frames
        self.proj = nn.Linear(2 * c.channels, c.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's start
        self._text = text_encoder

    # ----------------------------------------------------------------------------- network
    def band_levels(self, latent: torch.Tensor) -> torch.Tensor:
        """MDCT latent (B, D, F) -> mel-band levels in dB (B, n_bands, F), the network's input."""
        power = torch.einsum("kd,bdf->bkf", self.bands, latent.float().pow(2))
        return 10 * torch.log10(power + 1e-10)

    def normalize_levels(self, levels: torch.Tensor) -> torch.Tensor:
        """dB (B, K, F) -> relative to the loudest band-frame, floored: 0 = loudest, -4 = floor."""
        rel = levels - levels.amax(dim=(1, 2), keepdim=True)
        return rel.clamp(min=-self.config.floor_db) / 20

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, n_bands, F) -> (B, E) unit-norm embeddings."""
        h = self.blocks2(self.down(self.blocks(self.stem(feats)))).transpose(1, 2)  # (B, F', C)
        h = self.norm(h)
        w = torch.softmax(self.score(h), dim=1)  # (B, F', 1)
        pooled = torch.cat([(w * h).sum(1), h.amax(1)], dim=-1)
        return F.normalize(self.proj(pooled), dim=-1)

    def embed_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Mica latent / MDCT (B, D, F) -> (B, E): what the hierarchical separator uses."""
        return self(self.band_levels(latent))

    def embed_wav(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, 1, T) at the encoder's rate -> (B, E)."""
        return self.embed_latent(self.mdct(wav))

    def forward(self, levels: torch.Tensor, text: torch.Tensor | None = None,
                spec_augment: bool = False) -> torch.Tensor:
        """Band levels (B, n_bands, F) in dB (`band_levels`) -> embeddings (B, E); with `text`
        (B, E), CLIP-style logits (B, B): logits[i, j] = scale * <audio i, text j>, the scale
        being the learnable temperature. (Levels, not waveforms, so training can precompute.)"""
        feats = self.normalize_levels(levels)
        if spec_augment:
            feats = mask_bands_and_frames(feats)
        audio = self.embed_features(feats)
        if text is None:
            return audio
        return self.logit_scale.clamp(max=math.log(100)).exp() * audio @ text.T

    # ----------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def embed(self, audio, sample_rate: int | None = None) -> torch.Tensor:
        """One clip (T,) or (C, T) (downmixed) at `sample_rate` (default 16 kHz) -> (E,)."""
        from ..audio import resample

        wav = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio).float()
        wav = wav.mean(0) if wav.ndim == 2 else wav
        if wav.ndim != 1 or wav.shape[0] == 0:
            raise CodecSepError(f"audio must be (T,) or (C, T) with T > 0, got {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise CodecSepError("audio contains NaN or infinite samples")
        wav = resample(wav[None], int(sample_rate or self.config.sample_rate), self.config.sample_rate)
        return self.embed_wav(wav[None])[0]

    @property
    def text_encoder(self):
        if self._text is None:
            from .base import get_text_encoder

            name = self.config.text_encoder
            kw = {"dim": self.config.embed_dim} if name == "hash" else {}
            self._text = get_text_encoder(name, **kw)
        return self._text

    def embed_text(self, prompts) -> torch.Tensor:
        """(P, E) embeddings of the prompts in the space the audio is aligned with."""
        return self.text_encoder.embed([prompts] if isinstance(prompts, str) else list(prompts))

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory, meta: dict | None = None) -> Path:
        info = {"trained_by": " ".join(shlex.quote(a) for a in sys.argv)}
        info.update(meta or {})
        return save_checkpoint(directory, KIND, asdict(self.config), self.state_dict(),
                               meta=info, half=True)

    @classmethod
    def load(cls, path: str | Path | None = None, text_encoder=None) -> AudioEncoder:
        """A checkpoint directory, or None for the shipped encoder."""
        path = Path(path) if path else DEFAULT_AUDIO_ENCODER
        if not (path / "config.json").is_file():
            raise CodecSepError(f"no audio encoder at {path}: train one with "
                                "`codecsep train audio-encoder` or pass its folder")
        return load_model(path, KIND, "an audio encoder",
                          lambda cfg: cls(config_from_dict(AudioEncoderConfig, cfg),
                                          text_encoder=text_encoder))


def mask_bands_and_frames(feats: torch.Tensor, max_bands: int = 8,
                          max_frame_share: float = 0.15) -> torch.Tensor:
    """SpecAugment: per item, one random run of bands and one of frames set to the floor."""
    b, k, f = feats.shape
    floor = feats.amin(dim=(1, 2), keepdim=True)
    band, frame = torch.arange(k)[None, :, None], torch.arange(f)[None, None, :]
    width_k = torch.randint(0, max_bands + 1, (b, 1, 1))
    start_k = (torch.rand(b, 1, 1) * (k - width_k + 1)).long()
    width_f = (torch.rand(b, 1, 1) * max_frame_share * f).long()
    start_f = (torch.rand(b, 1, 1) * (f - width_f + 1)).long()
    masked = ((band >= start_k) & (band < start_k + width_k)) | \
             ((frame >= start_f) & (frame < start_f + width_f))
    return torch.where(masked, floor, feats)


def same_text_space(encoder: AudioEncoder, separator) -> bool:
    """Do the encoder's embeddings and the separator's prompt embeddings share one space (the
    same text encoder and dimension)?"""
    return (encoder.config.text_encoder == separator.config.text_encoder
            and encoder.config.embed_dim == separator.text_dim)


def check_query_space(encoder: AudioEncoder, separator) -> None:
    """Audio-query embeddings can stand in for a separator's prompt embeddings only if both
    live in the same text space (`same_text_space`)."""
    name = separator.config.text_encoder
    dim = separator.text_dim
    if not same_text_space(encoder, separator):
        raise CodecSepError(
            f"the audio encoder is aligned with {encoder.config.text_encoder!r} "
            f"({encoder.config.embed_dim}-d) text embeddings, the separator is conditioned on "
            f"{name!r} ({dim}-d): audio queries need one shared space")


# =============================================================================== scores
@functools.lru_cache(maxsize=1)
def shipped_audio_encoder() -> AudioEncoder:
    """The shipped encoder, loaded once per process."""
    return AudioEncoder.load()


def semantic_score(audio, prompts, encoder: AudioEncoder | None = None,
                   sample_rate: int | None = None):
    """Cosine between each output's audio embedding and its prompt's text embedding.

    audio: one clip (T,) / (C, T) with one prompt string -> float; or rows (P, C, T) with P
    prompts -> (P,) tensor. A CLAP-score-like check that an output sounds like what was asked.
    """
    encoder = encoder or shipped_audio_encoder()
    single = isinstance(prompts, str)
    prompts = [prompts] if single else list(prompts)
    wav = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio).float()
    rows = wav[None, None] if wav.ndim == 1 else wav[None] if wav.ndim == 2 else wav
    if rows.ndim != 3 or len(rows) != len(prompts):
        raise CodecSepError(f"give one prompt per audio row: {len(prompts)} prompt(s) for audio "
                            f"of shape {tuple(wav.shape)}")
    audio_emb = torch.stack([encoder.embed(r, sample_rate) for r in rows])
    scores = (audio_emb * encoder.embed_text(prompts)).sum(-1)
    return float(scores[0]) if single else scores


def retrieval_metrics(audio_emb: torch.Tensor, audio_labels, text_emb: torch.Tensor,
                      text_labels, ks=(1, 10)) -> dict:
    """Text -> audio retrieval and zero-shot class accuracy in a shared space.

    audio_emb (N, E) gallery with N labels; text_emb (Q, E) queries (one per class) with Q labels.
    R@k: share of queries with a gallery item of their class among the top k; P@10: share of
    the top 10 that is of the class; mAP over each query's ranking. class_accuracy: share of
    gallery items whose most similar query is their class (balanced: mean of per-class shares).
    """
    audio_labels, text_labels = list(audio_labels), list(text_labels)
    sim = F.normalize(text_emb.float(), dim=-1) @ F.normalize(audio_emb.float(), dim=-1).T
    relevant = torch.tensor([[a == t for a in audio_labels] for t in text_labels])  # (Q, N)
    has = relevant.any(1)
    order = sim.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order)[has].float()  # (Q', N) ranked relevance
    out = {f"R@{k}": float(hits[:, :k].any(1).float().mean()) for k in ks}
    out["P@10"] = float(hits[:, :10].mean())
    precision = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1)
    out["mAP"] = float(((precision * hits).sum(1) / hits.sum(1)).mean())
    known = [i for i, a in enumerate(audio_labels) if a in text_labels]
    pred = sim[:, known].argmax(0)
    truth = torch.tensor([text_labels.index(audio_labels[i]) for i in known])
    correct = (pred == truth).float()
    out["class_accuracy"] = float(correct.mean())
    out["balanced_class_accuracy"] = float(torch.stack(
        [correct[truth == c].mean() for c in truth.unique()]).mean())
    out.update(n_queries=int(has.sum()), n_gallery=len(audio_labels))
    return out


def clip_retrieval(encoder: AudioEncoder, clips, labels, text_encoder=None,
                   progress: bool = True) -> dict:
    """`retrieval_metrics` for clips (list of (T,) arrays at the encoder's rate) and their labels,
    the queries being each label's own text."""
    from tqdm import tqdm

    emb = torch.stack([encoder.embed(c) for c in tqdm(clips, desc="embedding clips",
                                                       unit="clip", disable=not progress)])
    classes = sorted(set(labels))
    text = (text_encoder or encoder.text_encoder).embed(classes)
    return retrieval_metrics(emb, labels, text, classes)
