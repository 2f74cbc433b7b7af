"""The CodecSep masker: a FiLM-conditioned Transformer over codec latent frames.

latent (B, D, F) + text embedding (B, E) -> mask (B, D, F). Input 1x1 (or k-wide) conv D->d,
sinusoidal positions, `depth` Transformer layers with FiLM after each norm, 1x1 conv d->D,
FiLM, Snake, 1x1 conv, then a bounded (sigmoid) or unbounded (linear) mask.
Optionally (`band_width` > 0) a `BandRefiner` then models the frequency axis: per frame, a small
FiLM Transformer over bands of `band_width` bins adds a correction to the mask logits. Its output
layer starts at zero, so a masker grown from a checkpoint without it starts as that checkpoint.
The paper's configuration (DAC-16k: D=1024, d=256, 16 layers) and our compact default (Mica:
D=320) are two configs of this one class: see `PAPER_DAC16K` and `MaskerConfig()`.
`trunk="bandsplit"` selects `BandSplitMasker` instead (`build_masker`): one token per band and frame,
attention over time and across bands, the same interface.
`time_context` > 0 limits attention over time to nearby frames (either trunk), so the cost per
second stops growing with the window.
`MaskMean` combines the masks of several maskers (e.g. one of each trunk: they err on different
items) by their mean or per-bin median (`combine_masks`); `build_maskers` gives one masker, or their
`MaskMean` when given more than one config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.film import FiLM
from ..nn.snake import Snake
from ..nn.transformer import FiLMTransformer, FiLMTransformerLayer, sinusoidal_positions


@dataclass(frozen=True)
class MaskerConfig:
    latent_dim: int = 320
    dim: int = 256
    depth: int = 6
    heads: int = 8
    ffn_dim: int = 768
    cond_dim: int = 384
    cond_hidden: int = 128  # text embedding -> shared hidden conditioning -> every FiLM
    dropout: float = 0.1
    norm_first: bool = True
    input_kernel: int = 3  # frames seen by the input conv
    features: str = "logmag"  # "logmag" (MDCT latents) | "linear" (DAC latents, as the paper)
    mask: str = "sigmoid"  # "sigmoid" (bounded in [0, 1]) | "unbounded" (as the public code)
    # frequency-axis refinement (0 = off): bins per band, and the band Transformer's size
    band_width: int = 0
    band_dim: int = 48
    band_depth: int = 2
    band_heads: int = 4
    band_ffn_dim: int = 96
    band_context: int = 16  # per band, dims taken from the time Transformer's frame state
    # the trunk: "time" (one token per frame, attention over time) or "bandsplit" (one token per
    # band of `split` per frame; `depth` blocks of attention over time within each band, then
    # across the bands of each frame; `dim`, `heads`, `ffn_dim` size those layers)
    trunk: str = "time"
    split: str = "16x20"  # bandsplit: band widths low to high, "WIDTHxCOUNT,...", summing to latent_dim
    mask_hidden: int = 128  # bandsplit: hidden width of each band's mask MLP
    # attention over time: 0 = every frame sees every frame of the window (cost grows with the
    # window); N > 0 = each frame sees the frames within N of it (`local_attention`: cost per
    # frame fixed, so a long code stream runs in one long window)
    time_context: int = 0
    # in training, time positions start at a random frame in [0, position_jitter] rather than
    # 0, so a masker with local attention learns not to rely on where a window starts and can
    # run on windows up to position_jitter frames longer than its training crops
    position_jitter: int = 0
    # > 0: the position dimensions whose sinusoid is slower than this many frames hold their
    # frame-0 value; the others cycle within a training crop, so no window start or length is
    # out of what the masker saw (0: all dimensions vary, as before session 17)
    position_wavelength: int = 0

    def __post_init__(self):
        if self.trunk not in ("time", "bandsplit"):
            raise ValueError(f"trunk must be 'time' or 'bandsplit', not {self.trunk!r}")
        if self.band_width and self.latent_dim % self.band_width:
            raise ValueError(f"band_width {self.band_width} must divide latent_dim {self.latent_dim}")
        if self.trunk == "bandsplit" and sum(split_widths(self.split)) != self.latent_dim:
            raise ValueError(f"split {self.split!r} covers {sum(split_widths(self.split))} bins, "
                             f"not latent_dim {self.latent_dim}")
        if self.trunk == "bandsplit" and (self.band_width or self.features != "logmag"):
            raise ValueError("the bandsplit trunk models bands itself: it takes MDCT latents "
                             "(features 'logmag') and no band refiner")


def split_widths(spec: str) -> list[int]:
    """"8x10,16x5,32x5" -> ten bands of 8 bins, five of 16, five of 32 (low to high)."""
    try:
        pairs = [part.split("x") for part in spec.replace(" ", "").split(",")]
        widths = [int(w) for w, n in pairs for _ in range(int(n))]
    except ValueError:
        raise ValueError(f"split {spec!r} is not 'WIDTHxCOUNT,...' (e.g. '8x10,16x5,32x5')") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"split {spec!r} has no bands or an empty band")
    return widths


PAPER_DAC16K = MaskerConfig(latent_dim=1024, dim=256, depth=16, heads=8, ffn_dim=1024,
                            cond_dim=512, cond_hidden=0, norm_first=False, input_kernel=1, features="linear",
                            mask="unbounded")


def to_mask(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Mask logits -> the mask: bounded in [0, 1] ("sigmoid") or the logits themselves."""
    return torch.sigmoid(logits) if kind == "sigmoid" else logits


def frame_positions(masker: nn.Module, n: int, dim: int, device) -> torch.Tensor:
    """(n, dim) sinusoidal time positions for `masker` (`config.position_jitter`: in training,
    starting at a random frame; `config.position_wavelength`: the slow dimensions held)."""
    c = masker.config
    jitter = c.position_jitter if masker.training else 0
    start = int(torch.randint(0, jitter + 1, ())) if jitter else 0
    return sinusoidal_positions(n, dim, device, start, max_wavelength=c.position_wavelength)


def latent_features(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Level-normalised log-magnitudes for MDCT latents; the latent itself for DAC's."""
    if kind == "linear":
        return z
    f = torch.log(z.abs() + 1e-5)
    return f - f.mean(dim=(1, 2), keepdim=True)


class BandRefiner(nn.Module):
    """Mask-logit correction along frequency: each frame's D bins cut into D/w bands of w bins.

    A band's token is built from its own features (w), the current mask logits (w), its share of
    the frame state (`band_context`) and a learned band embedding; a FiLM Transformer attends
    across the bands of one frame (harmonics sit in different bands), and a zero-initialised
    linear layer returns w logit corrections per band. No dropout: over B x F x D/w tokens its
    random draws cost more than the rest of the refiner on a CPU.
    """

    def __init__(self, c: MaskerConfig, film_dim: int):
        super().__init__()
        self.width, self.bands = c.band_width, c.latent_dim // c.band_width
        self.context = nn.Linear(c.dim, self.bands * c.band_context)
        self.inp = nn.Linear(2 * c.band_width + c.band_context, c.band_dim)
        self.band_embedding = nn.Parameter(torch.zeros(self.bands, c.band_dim))
        self.transformer = FiLMTransformer(c.band_dim, c.band_depth, c.band_heads, c.band_ffn_dim,
                                           film_dim, dropout=0.0, norm_first=True)
        self.out = nn.Linear(c.band_dim, c.band_width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features, logits, state, cond):
        """features, logits (B, D, F); state (B, F, d); cond (B, E) -> logits (B, D, F)."""
        with torch.autocast(logits.device.type, enabled=False):  # see `_forward`
            return self._forward(features.float(), logits.float(), state.float(), cond.float())

    def _forward(self, features, logits, state, cond):
        """In float32: bfloat16 attention over these many short sequences runs 3x slower on CPU."""
        b, d, f = logits.shape
        per_band = lambda x: x.transpose(1, 2).reshape(b * f, self.bands, self.width)  # noqa: E731
        ctx = self.context(state).reshape(b * f, self.bands, -1)
        tokens = self.inp(torch.cat([per_band(features), per_band(logits), ctx], -1))
        cond = cond.unsqueeze(1).expand(b, f, cond.shape[-1]).reshape(b * f, -1)
        delta = self.out(self.transformer(tokens + self.band_embedding, cond))
        return logits + delta.reshape(b, f, d).transpose(1, 2)


class BandSplitMasker(nn.Module):
    """A band-split, dual-path trunk (as BSRNN / BS-RoFormer, with FiLM in every layer).

    Each frame's D bins are cut into K bands (`split`: finer at low frequencies, where harmonics
    crowd, if asked); each band's log-magnitudes become a d-wide token through that band's own
    linear map, plus a learned band embedding and time positions.
    `depth` blocks follow, each a FiLM Transformer layer over time (within one band) and one
    across the K bands (within one frame), so a frame carries K x d features, not d, and
    harmonics in different bands can find each other. Each band's own MLP returns its w mask
    logits. Same interface as `Masker`: latent (B, D, F), cond (B, E) -> mask (B, D, F).
    """

    def __init__(self, config: MaskerConfig):
        super().__init__()
        c = self.config = config
        film_dim = c.cond_hidden or c.cond_dim
        widths = split_widths(c.split)
        k, w, d, h = len(widths), max(widths), c.dim, c.mask_hidden
        self.n_bands, self.width = k, w
        # bins of each band padded to the widest band with an always-zero bin (index latent_dim);
        # `valid` lists, in bin order, the padded positions that are real bins
        index = torch.full((k, w), c.latent_dim)
        edges = torch.tensor([0] + widths).cumsum(0)
        for i, width in enumerate(widths):
            index[i, :width] = torch.arange(edges[i], edges[i + 1])
        self.register_buffer("index", index.flatten(), persistent=False)
        self.register_buffer("valid", (index.flatten() < c.latent_dim).nonzero().flatten(),
                             persistent=False)
        self.cond = (nn.Sequential(nn.Linear(c.cond_dim, c.cond_hidden), nn.GELU())
                     if c.cond_hidden else nn.Identity())
        self.inp = nn.Parameter(torch.randn(k, w, d) / torch.tensor(widths).float().sqrt()[:, None, None])
        self.inp_bias = nn.Parameter(torch.zeros(k, d))
        self.band_embedding = nn.Parameter(torch.zeros(k, d))
        layer = lambda context: FiLMTransformerLayer(d, c.heads, c.ffn_dim, film_dim, c.dropout,  # noqa: E731
                                                     True, context=context)
        self.time_layers = nn.ModuleList(layer(c.time_context) for _ in range(c.depth))
        self.band_layers = nn.ModuleList(layer(0) for _ in range(c.depth))
        self.norm = nn.LayerNorm(d)
        self.out_film = FiLM(film_dim, d)
        self.hidden = nn.Parameter(torch.randn(k, d, h) / d ** 0.5)
        self.hidden_bias = nn.Parameter(torch.zeros(k, h))
        self.head = nn.Parameter(torch.randn(k, h, w) / h ** 0.5 * 0.1)
        self.head_bias = nn.Parameter(torch.zeros(k, w))

    def forward(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F), cond (B, E) -> mask (B, D, F)."""
        cond = self.cond(cond)
        b, _, f = latent.shape
        k, w = self.n_bands, self.width
        x = latent_features(latent, self.config.features)
        x = torch.cat([x, x.new_zeros(b, 1, f)], 1)[:, self.index].reshape(b, k, w, f)
        h = torch.einsum("bkwf,kwd->bkfd", x, self.inp) + (self.inp_bias + self.band_embedding)[:, None]
        h = h + frame_positions(self, f, h.shape[-1], h.device)  # (B, K, F, d)
        over_time = cond.repeat_interleave(k, 0)
        over_bands = cond.repeat_interleave(f, 0)
        for time_layer, band_layer in zip(self.time_layers, self.band_layers):
            h = time_layer(h.reshape(b * k, f, -1), over_time).reshape(b, k, f, -1)
            h = band_layer(h.transpose(1, 2).reshape(b * f, k, -1), over_bands)
            h = h.reshape(b, f, k, -1).transpose(1, 2)
        h = self.out_film(self.norm(h).reshape(b, k * f, -1), cond).reshape(b, k, f, -1)
        h = torch.nn.functional.gelu(torch.einsum("bkfd,kdh->bkfh", h, self.hidden)
                                     + self.hidden_bias[:, None])
        m = torch.einsum("bkfh,khw->bkwf", h, self.head) + self.head_bias[..., None]
        m = m.reshape(b, k * w, f)[:, self.valid]
        return to_mask(m, self.config.mask)


def build_masker(config: MaskerConfig) -> nn.Module:
    """The masker a config describes: the time trunk (`Masker`) or the band-split one."""
    return BandSplitMasker(config) if config.trunk == "bandsplit" else Masker(config)


def build_maskers(configs: list[MaskerConfig]) -> nn.Module:
    """One config: its masker (state-dict keys as `build_masker`'s); more: their `MaskMean`."""
    if len(configs) == 1:
        return build_masker(configs[0])
    return MaskMean([build_masker(c) for c in configs])


class MaskMean(nn.Module):
    """Several maskers' masks made one, with one interface: latent (B, D, F), cond (B, E).

    Every member sees the same latent and text embedding, so the members must agree on
    `latent_dim` and `cond_dim`; each costs its own MACs. `members` (0-based indices; None: all)
    runs only those, e.g. one for a cheaper path; the output is then exactly that member's.
    `combine`: their mean (the default, hence the name) or their per-bin median.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        first = members[0].config
        for m in members[1:]:
            if (m.config.latent_dim, m.config.cond_dim) != (first.latent_dim, first.cond_dim):
                raise ValueError("maskers to average must share latent_dim and cond_dim, got "
                                 f"{(first.latent_dim, first.cond_dim)} and "
                                 f"{(m.config.latent_dim, m.config.cond_dim)}")
        self.members = nn.ModuleList(members)

    def forward(self, latent: torch.Tensor, cond: torch.Tensor,
                members: Sequence[int] | None = None, combine: str = "mean") -> torch.Tensor:
        return combine_masks(self.member_masks(latent, cond, members), combine)

    def member_masks(self, latent: torch.Tensor, cond: torch.Tensor,
                     members: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Each member's own mask (of `members`, 0-based; None: all), before they are combined."""
        used = self.members if members is None else [self.members[i] for i in members]
        return [m(latent, cond) for m in used]


COMBINES = ("mean", "median")


def combine_masks(masks: list[torch.Tensor], how: str = "mean") -> torch.Tensor:
    """One mask from several, bin by bin: their mean, or their median (one member's outlier
    per bin is ignored when there are three; with one or two, the median is the mean; with four
    or more, torch's median, the lower middle value for an even count). The median of three is
    written with elementwise min and max: exact, and plain ONNX ops."""
    if how not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {how!r}")
    if how == "mean" or len(masks) < 3:
        return sum(masks) / len(masks)
    if len(masks) == 3:
        a, b, c = masks
        return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))
    return torch.stack(masks).median(0).values


class Masker(nn.Module):
    def __init__(self, config: MaskerConfig = MaskerConfig()):
        super().__init__()
        c = self.config = config
        film_dim = c.cond_hidden or c.cond_dim
        self.cond = (nn.Sequential(nn.Linear(c.cond_dim, c.cond_hidden), nn.GELU())
                     if c.cond_hidden else nn.Identity())
        self.inp = nn.Conv1d(c.latent_dim, c.dim, c.input_kernel, padding=c.input_kernel // 2)
        self.transformer = FiLMTransformer(c.dim, c.depth, c.heads, c.ffn_dim, film_dim,
                                           c.dropout, c.norm_first, c.time_context)
        self.out = nn.Conv1d(c.dim, c.latent_dim, 1)
        self.out_film = FiLM(film_dim, c.latent_dim)
        self.act = Snake(c.latent_dim)
        self.head = nn.Conv1d(c.latent_dim, c.latent_dim, 1)
        self.bands = BandRefiner(c, film_dim) if c.band_width else None

    def forward(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F), cond (B, E) -> mask (B, D, F)."""
        cond = self.cond(cond)
        x = latent_features(latent, self.config.features)
        h = self.inp(x).transpose(1, 2)  # (B, F, d)
        h = h + frame_positions(self, h.shape[1], h.shape[2], h.device)
        state = self.transformer(h, cond)
        h = self.out_film(self.out(state.transpose(1, 2)).transpose(1, 2), cond).transpose(1, 2)
        m = self.head(self.act(h))
        if self.bands is not None:
            m = self.bands(x, m, state, cond)
        return to_mask(m, self.config.mask)
