"""Codecformer: two-speaker separation by masking a neural codec's latent frames.

Yip et al., "Towards Audio Codec-based Speech Separation", Interspeech 2024
(https://arxiv.org/abs/2406.12434; public code github.com/Yip-Jia-Qi/codecformer).

    latent (B, D, F) -> 1x1 conv D->d -> + sinusoidal positions -> Transformer over frames
    -> 1x1 conv d->D -> 1x1 conv D->S*D -> per-speaker mask head -> masks (B, S, D, F)
    estimate_s = decode(mask_s * latent)

The paper's configuration (`PAPER_DAC16K`: DAC-16k's 1024-d latent, 16 pre-LN layers, d=256,
8 heads, FFN 1024, ReLU inside the Transformer as SpeechBrain's SBTransformerBlock) uses the
public code's gated head: Snake(conv(m)) * sigmoid(conv(m)) followed by Snake, an unbounded
mask. `CodecformerConfig()` is the compact default for Mica (D=320 MDCT coefficients): level-
normalised log-magnitude features in, a softmax over speakers out, so the two estimates always
sum to the mixture. Trained with permutation-invariant SI-SDR, optionally against the "codec
SI-SDR" reference (the clean sources passed through the codec, `codec_reference`).

`SepformerCost` is the time-domain Sepformer (Subakan et al., ICASSP 2021) with its published
structure, built only to count MACs for the comparison the paper makes; it is never trained.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..codecs import ASSETS, load_codec
from ..errors import CodecSepError
from ..nn.snake import Snake
from ..nn.transformer import Transformer, sinusoidal_positions
from .base import FrozenCodec, LatentSpaceCheckpoint, as_channels
from .chunking import overlap_add, window_starts
from .masker import latent_features
from .postfilter import PostFilter, apply_postfilter

DEFAULT_CODECFORMER = ASSETS / "codecformer-default"
MASKS = ("snake", "sigmoid", "softmax")
CODEC_REFERENCES = ("off", "latent", "codes")


@dataclass(frozen=True)
class CodecformerConfig:
    codec: str = "mica"
    latent_dim: int = 320
    dim: int = 256
    depth: int = 6
    heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    norm_first: bool = True
    n_speakers: int = 2
    features: str = "logmag"  # "logmag" (MDCT latents) | "linear" (DAC latents, as the paper)
    mask: str = "softmax"  # "snake" (paper: gated, unbounded) | "sigmoid" | "softmax" (sums to 1)
    window_seconds: float = 10.0
    overlap_seconds: float = 1.0
    # inference: re-split each window's mixture by the speakers' STFT magnitudes (0: off)
    postfilter: PostFilter = field(default_factory=PostFilter)

    def __post_init__(self):
        if self.mask not in MASKS:
            raise CodecSepError(f"Codecformer mask must be one of {MASKS}, got {self.mask!r}")
        if self.n_speakers < 2:
            raise CodecSepError(f"Codecformer separates >= 2 speakers, got {self.n_speakers}")


PAPER_DAC16K = CodecformerConfig(codec="dac-16k", latent_dim=1024, dim=256, depth=16, heads=8,
                                 ffn_dim=1024, features="linear", mask="snake")


# ------------------------------------------------------------------------------------ network
class GatedSnakeHead(nn.Module):
    """The public code's output: Snake(Snake(conv(m)) * sigmoid(conv(m))), (B, D, F) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.value = nn.Sequential(nn.Conv1d(channels, channels, 1), Snake(channels))
        self.gate = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.Sigmoid())
        self.act = Snake(channels)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.act(self.value(m) * self.gate(m))


class CodecformerNet(nn.Module):
    """latent (B, D, F) -> masks (B, S, D, F)."""

    def __init__(self, c: CodecformerConfig):
        super().__init__()
        self.config = c
        self.inp = nn.Conv1d(c.latent_dim, c.dim, 1, bias=False)
        self.transformer = Transformer(c.dim, c.depth, c.heads, c.ffn_dim, c.dropout, c.norm_first)
        self.up = nn.Conv1d(c.dim, c.latent_dim, 1, bias=False)
        self.split = nn.Conv1d(c.latent_dim, c.n_speakers * c.latent_dim, 1)
        self.head = GatedSnakeHead(c.latent_dim) if c.mask == "snake" else nn.Identity()

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        c, (b, d, f) = self.config, latent.shape
        h = self.inp(latent_features(latent, c.features)).transpose(1, 2)  # (B, F, d)
        h = h + sinusoidal_positions(f, c.dim, h.device)
        h = self.up(self.transformer(h).transpose(1, 2))  # (B, D, F)
        m = self.head(self.split(h).reshape(b * c.n_speakers, d, f)).reshape(b, -1, d, f)
        if c.mask == "sigmoid":
            return torch.sigmoid(m)
        return torch.softmax(m, dim=1) if c.mask == "softmax" else m


# ------------------------------------------------------------------------------------ helpers
def best_order(y: torch.Tensor, ref: torch.Tensor) -> list[int]:
    """Order of y's rows (S, ..., L) that best matches ref's rows (summed inner products)."""
    s = y.shape[0]
    score = torch.einsum("i...,j...->ij", y.double(), ref.double())  # [i, j] = <y_i, ref_j>
    perms = list(itertools.permutations(range(s)))
    gains = [sum(float(score[p[j], j]) for j in range(s)) for p in perms]
    return list(perms[int(np.argmax(gains))])


class PermutationAligner:
    """Wraps a per-window separator for `overlap_add`: every window's rows (S, ..., w) are
    reordered to agree with the previous window on their overlap, so a permutation-invariant
    model cannot swap speakers between windows. Windows must come in `window_starts` order."""

    def __init__(self, fn, length: int, window: int, overlap: int):
        self.fn, self.starts = fn, window_starts(length, window, overlap)
        self.i, self.prev, self.prev_start = 0, None, 0

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        y, start = self.fn(chunk), self.starts[self.i]
        if self.prev is not None:
            shared = self.prev_start + self.prev.shape[-1] - start
            if shared > 0:
                y = y[best_order(y[..., :shared], self.prev[..., -shared:])]
        self.i, self.prev, self.prev_start = self.i + 1, y, start
        return y


def codec_reference(codec, sources: torch.Tensor, mode: str, n_quantizers: int | None = None):
    """Training references for sources (B, S, T): "off" the clean sources; "latent"
    decode(encode(s)) (the brief's codec SI-SDR; the identity for Mica's MDCT); "codes"
    decode(dequantize(quantize(encode(s), n))) (the paper's transmitted signal)."""
    if mode not in CODEC_REFERENCES:
        raise CodecSepError(f"codec reference must be one of {CODEC_REFERENCES}, got {mode!r}")
    if mode == "off":
        return sources
    b, s, t = sources.shape
    with torch.no_grad():
        z = codec.encode(sources.reshape(b * s, 1, t))
        if mode == "codes":
            z = codec.dequantize(codec.quantize(z, n_quantizers))
        return codec.decode(z, t).reshape(b, s, t)


# ------------------------------------------------------------------------------------ model
class Codecformer(FrozenCodec, LatentSpaceCheckpoint, nn.Module):
    """Codec + CodecformerNet: `separate_speakers(audio) -> (S, C, T)`, `forward` for training."""

    checkpoint_kind = "codecformer"
    config_class = CodecformerConfig
    checkpoint_label = "a Codecformer"
    default_checkpoint = DEFAULT_CODECFORMER

    def __init__(self, config: CodecformerConfig = CodecformerConfig(), codec=None):
        super().__init__()
        self.config = config
        self.codec = codec if codec is not None else load_codec(config.codec)
        self.net = CodecformerNet(config)
        if self.codec.latent_dim != config.latent_dim:
            raise CodecSepError(f"Codecformer expects {config.latent_dim}-d latents, codec "
                                f"{self.codec.codec_id} gives {self.codec.latent_dim}")

    def separate_latent(self, latent: torch.Tensor, mask_from: torch.Tensor | None = None):
        """latent (B, D, F) -> per-speaker latents (B, S, D, F). The masks are computed on
        `mask_from` when given: (1, D, F), e.g. the mono mixdown, shared by all B rows."""
        masks = self.net(latent if mask_from is None else mask_from)
        return masks * latent.unsqueeze(1)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Training pass: mixture (B, 1, T) -> estimates (B, S, T)."""
        b, _, t = mixture.shape
        z = self.separate_latent(self.codec.encode(mixture))
        return self.codec.decode(z.flatten(0, 1), t).reshape(b, -1, t)

    @torch.inference_mode()
    def separate_speakers(self, audio) -> torch.Tensor:
        """audio (T,) or (C, T) at `sample_rate` -> (S, C, T). Masks come from the mono mixdown
        and apply to every channel, so speaker order is the same in all channels; long inputs go
        through crossfaded windows whose speaker order is aligned on the overlaps. Each window's
        speakers go through `config.postfilter` (`postfilter.apply_postfilter`)."""
        wav = as_channels(audio)
        window = int(self.config.window_seconds * self.sample_rate)
        overlap = int(self.config.overlap_seconds * self.sample_rate)

        def run(chunk: torch.Tensor) -> torch.Tensor:  # (C, w) -> (S, C, w)
            c, w = chunk.shape
            z = self.codec.encode(chunk.unsqueeze(1))  # (C, D, F)
            mono = z if c == 1 else self.codec.encode(chunk.mean(0, keepdim=True)[None])
            est = self.separate_latent(z, mono)  # (C, S, D, F)
            wav = self.codec.decode(est.flatten(0, 1), w).reshape(c, -1, w).transpose(0, 1)
            return apply_postfilter(chunk, wav, self.config.postfilter)

        aligned = PermutationAligner(run, wav.shape[-1], window, overlap)
        return overlap_add(wav, window, overlap, aligned)


# ------------------------------------------------------------------------------------ Sepformer
@dataclass(frozen=True)
class SepformerConfig:
    """SpeechBrain's WSJ0-2mix Sepformer (hparams/sepformer.yaml)."""

    filters: int = 256
    kernel_size: int = 16
    stride: int = 8
    blocks: int = 2  # dual-path blocks, each = intra Transformer + inter Transformer
    layers: int = 8  # per intra / inter Transformer
    dim: int = 256
    heads: int = 8
    ffn_dim: int = 1024
    chunk: int = 250  # intra-chunk length in encoder frames; chunks overlap by half
    n_speakers: int = 2


def to_chunks(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, N, L) -> (B, N, S, K) half-overlapping chunks of K=size covering every frame twice."""
    hop = size // 2
    rest = (-(x.shape[-1] + 2 * hop - size)) % hop
    return F.pad(x, (hop, hop + rest)).unfold(-1, size, hop)


def from_chunks(chunks: torch.Tensor, length: int) -> torch.Tensor:
    """Overlap-add (B, N, S, K) chunks back to (B, N, length)."""
    b, n, s, k = chunks.shape
    hop = k // 2
    cols = chunks.permute(0, 1, 3, 2).reshape(b, n * k, s)
    y = F.fold(cols, (1, (s - 1) * hop + k), (1, k), stride=(1, hop))
    return y.reshape(b, n, -1)[..., hop : hop + length]


class DualPathBlock(nn.Module):
    """Intra-chunk then inter-chunk Transformer (pre-LN, positions added), each residual."""

    def __init__(self, c: SepformerConfig):
        super().__init__()
        self.intra = Transformer(c.dim, c.layers, c.heads, c.ffn_dim, 0.0, norm_first=True)
        self.inter = Transformer(c.dim, c.layers, c.heads, c.ffn_dim, 0.0, norm_first=True)
        self.norm_intra, self.norm_inter = nn.GroupNorm(1, c.dim), nn.GroupNorm(1, c.dim)

    def _path(self, x: torch.Tensor, net: nn.Module, norm: nn.Module) -> torch.Tensor:
        """Run `net` along the last axis of x (B, N, S, K)."""
        b, n, s, k = x.shape
        h = x.permute(0, 2, 3, 1).reshape(b * s, k, n)
        h = net(h + sinusoidal_positions(k, n, h.device))
        return x + norm(h.reshape(b, s, k, n).permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._path(x, self.intra, self.norm_intra)
        return self._path(x.transpose(2, 3), self.inter, self.norm_inter).transpose(2, 3)


class SepformerCost(nn.Module):
    """Sepformer's structure, for MAC counting only: wav (B, 1, T) -> estimates (B, S, T)."""

    def __init__(self, c: SepformerConfig = SepformerConfig()):
        super().__init__()
        self.config = c
        self.encoder = nn.Conv1d(1, c.filters, c.kernel_size, c.stride, bias=False)
        self.norm = nn.GroupNorm(1, c.filters)
        self.inp = nn.Conv1d(c.filters, c.dim, 1, bias=False)
        self.blocks = nn.Sequential(*(DualPathBlock(c) for _ in range(c.blocks)))
        self.split = nn.Sequential(nn.PReLU(), nn.Conv2d(c.dim, c.dim * c.n_speakers, 1))
        self.value = nn.Sequential(nn.Conv1d(c.dim, c.dim, 1), nn.Tanh())
        self.gate = nn.Sequential(nn.Conv1d(c.dim, c.dim, 1), nn.Sigmoid())
        self.out = nn.Conv1d(c.dim, c.filters, 1, bias=False)
        self.decoder = nn.ConvTranspose1d(c.filters, 1, c.kernel_size, c.stride, bias=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c, (b, _, t) = self.config, wav.shape
        w = F.relu(self.encoder(wav))  # (B, filters, L)
        x = self.blocks(to_chunks(self.inp(self.norm(w)), c.chunk))  # (B, dim, S, K)
        x = self.split(x)  # (B, dim * spk, S, K)
        x = from_chunks(x.reshape(b * c.n_speakers, c.dim, *x.shape[2:]), w.shape[-1])
        masks = F.relu(self.out(self.value(x) * self.gate(x)))  # (B * spk, filters, L)
        est = self.decoder(masks * w.repeat_interleave(c.n_speakers, 0))
        return F.pad(est, (0, max(0, t - est.shape[-1])))[..., :t].reshape(b, c.n_speakers, t)
