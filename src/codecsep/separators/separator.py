"""`Separator`: codec + text encoder + masker, the object users load and call.

    sep = Separator.load()                    # the shipped default (Mica codec + MiniLM)
    out = sep.separate(wav, ["birdsong"])  # wav (T,) or (C, T) at sep.sample_rate
    out["target"], out["residual"]            # (P, C, T) each: one row per prompt
    codes_out = sep.separate_codes(codes, ["birdsong"])["target"]   # codes in -> codes out

One masker pass gives the target and the residual (mixture - target), so removal costs the same
as extraction. Long inputs go through overlapping windows joined by crossfades.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import config_from_dict, save_checkpoint
from ..codecs import ASSETS, load_codec
from ..errors import CodecSepError
from ..text.anchors import PromptAnchors
from .base import LatentSpaceCheckpoint, TextQueriedSeparator, check_prompts, parse_members
from .chunking import overlap_add, shift_offsets, shifted_mean
from .masker import COMBINES, MaskerConfig, MaskMean, build_maskers, combine_masks
from .postfilter import PostFilter, PostNet, apply_postfilter, postfilter_macs

__all__ = ["DEFAULT_SEPARATOR", "Separator", "SeparatorConfig", "check_members", "check_prompts",
           "save_built"]

DEFAULT_SEPARATOR = ASSETS / "codecsep-default"


@dataclass(frozen=True)
class SeparatorConfig:
    codec: str = "mica"
    text_encoder: str = "minilm"
    masker: MaskerConfig = field(default_factory=MaskerConfig)
    window_seconds: float = 10.0
    overlap_seconds: float = 1.0
    # code streams: windows of this many seconds of frames (0: as waveforms, `window_seconds`);
    # longer windows suit code-stream maskers with local time attention (`time_context`)
    code_window_seconds: float = 0.0
    anchors: PromptAnchors = field(default_factory=PromptAnchors)  # prompt anchoring (off)
    # waveform input: average over `shifts` copies offset by fractions of one codec hop (as
    # Demucs's shifts): the frame grid falls elsewhere each time; costs `shifts` passes
    shifts: int = 1
    # more maskers whose masks are averaged with `masker`'s (`MaskMean`; each costs its own MACs);
    # `scripts/combine_maskers.py` builds such a checkpoint from trained ones
    ensemble: tuple[MaskerConfig, ...] = field(default=(), metadata={"of": MaskerConfig})
    # of an ensemble, the members (1-based: `masker` is 1) waveforms run (empty: all), and those
    # code streams run (empty: as waveforms): a cheaper code path for edge devices, or a masker
    # trained for coded latents
    members: tuple[int, ...] = ()
    code_members: tuple[int, ...] = ()
    # of an ensemble, how the members' masks become one, bin by bin: "mean" | "median"
    combine: str = "mean"
    # waveform input: re-split each window's mixture by the estimates' STFT magnitudes
    # (`postfilter.PostFilter`; n_fft 0: off); code streams are untouched. With `postfilter.net`,
    # a learned refinement (`postfilter.PostNet`, trained by `codecsep train postnet` on the
    # waveform members) whose weights are stored with the maskers' under "postnet."
    postfilter: PostFilter = field(default_factory=PostFilter)

    @classmethod
    def from_dict(cls, d: dict) -> SeparatorConfig:
        """The config a checkpoint's config.json holds (nested dicts included)."""
        return config_from_dict(cls, d)


class Separator(LatentSpaceCheckpoint, TextQueriedSeparator):
    """Codec + text encoder + masker; saved as the masker's weights and the config."""

    checkpoint_kind = "codecsep"
    config_class = SeparatorConfig
    checkpoint_label = "a CodecSep separator"
    checkpoint_weights = "masker"
    default_checkpoint = DEFAULT_SEPARATOR

    def __init__(self, config: SeparatorConfig, codec=None, text_encoder=None):
        super().__init__(config, text_encoder=text_encoder)
        self.shifts: int | None = None  # overrides config.shifts when set
        self._members: tuple[int, ...] | None = None  # overrides config.members and code_members
        self._postfilter: PostFilter | None = None  # overrides config.postfilter
        self.codec = codec if codec is not None else load_codec(config.codec)
        try:
            self.masker = build_maskers([config.masker, *config.ensemble])
        except ValueError as e:
            raise CodecSepError(str(e)) from None
        for name in ("members", "code_members"):
            check_members(getattr(config, name) or 1, self.n_maskers, name)
        if config.combine not in COMBINES:
            raise CodecSepError(f"combine must be one of {COMBINES}, got {config.combine!r}")
        if self.codec.latent_dim != config.masker.latent_dim:
            raise CodecSepError(f"masker expects {config.masker.latent_dim}-d latents, codec "
                                f"{self.codec.codec_id} gives {self.codec.latent_dim}")
        pf = config.postfilter
        if pf.net:  # stored with the maskers: a checkpoint keeps one state dict
            self.masker.postnet = PostNet(pf.net, len(self.trained_members), pf.power, pf.pools)

    # ----------------------------------------------------------------------------- plumbing
    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def text_dim(self) -> int:
        return self.config.masker.cond_dim

    def mask_latent(self, latent: torch.Tensor, cond: torch.Tensor,
                    members: tuple[int, ...] | None = None) -> torch.Tensor:
        """latent (B, D, F) and cond (P, E) -> target latents (P, B, D, F); `members`: the
        ensemble's maskers combined (1-based; default: the waveform path's, `self.members`)."""
        z, c = paired(latent, cond)
        return (self.mask(z, c, members) * z).reshape(cond.shape[0], *latent.shape)

    def mask(self, latent: torch.Tensor, cond: torch.Tensor,
             members: tuple[int, ...] | None = None) -> torch.Tensor:
        """The mask of `members` (default `self.members`): latent (B, D, F), cond (B, E)."""
        if not isinstance(self.masker, MaskMean):
            return self.masker(latent, cond)
        members = self.members if members is None else members
        return self.masker(latent, cond, [i - 1 for i in members], self.config.combine)

    def forward(self, mixture: torch.Tensor, cond: torch.Tensor, bf16: bool = False,
                through_codes: torch.Tensor | None = None):
        """Training pass: mixture (B, 1, T), cond (B, E) -> (target, residual), (B, 1, T) each.

        `bf16` runs the masker under bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16);
        the codec transforms and the mask product stay in float32. `through_codes` (B,): per
        item, 0 or the number of codebooks the latent goes through first (as code streams
        arrive: dequantize(quantize(latent, n))).
        """
        z = self.codec.encode(mixture)
        if through_codes is not None:
            z = self.through_codes(z, through_codes)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mask = self.masker(z, cond)
        target = mask.float() * z
        both = self.codec.decode(torch.cat([target, z - target]), mixture.shape[-1])
        return both.chunk(2)

    @torch.no_grad()
    def through_codes(self, latent: torch.Tensor, n_quantizers: torch.Tensor) -> torch.Tensor:
        """latent (B, D, F) -> each item through its `n_quantizers` codebooks (0: unchanged)."""
        out = latent.clone()
        for n in n_quantizers.unique().tolist():
            if n:
                rows = n_quantizers == n
                out[rows] = self.codec.dequantize(self.codec.quantize(latent[rows], n))
        return out

    @property
    def n_maskers(self) -> int:
        """The maskers the checkpoint holds (1 unless its config has an `ensemble`)."""
        return len(self.masker.members) if isinstance(self.masker, MaskMean) else 1

    @property
    def members(self) -> tuple[int, ...]:
        """The maskers (1-based) whose masks waveforms combine: the `members` override, else
        `config.members`, else all."""
        return self._members or self.config.members or tuple(range(1, self.n_maskers + 1))

    @members.setter
    def members(self, value) -> None:
        """Run only these maskers of an ensemble, on waveforms and code streams alike: one
        1-based index (1 is `masker`) or several (a sequence, or text such as "1,2")."""
        self._members = check_members(value, self.n_maskers, "members")

    @property
    def trained_members(self) -> tuple[int, ...]:
        """The maskers waveforms run unless overridden (`config.members`, else all)."""
        return self.config.members or tuple(range(1, self.n_maskers + 1))

    @property
    def code_members(self) -> tuple[int, ...]:
        """The maskers code streams run: the `members` override, else `config.code_members`."""
        return self._members or self.config.code_members or self.members

    @property
    def maskers(self) -> list:
        """The maskers a run uses on waveforms or code streams (of an ensemble, those of
        `members` and `code_members`)."""
        if not isinstance(self.masker, MaskMean):
            return [self.masker]
        return [self.masker.members[i - 1] for i in sorted({*self.members, *self.code_members})]

    # ----------------------------------------------------------------------------- waveforms
    @property
    def shift_offsets(self) -> list[int]:
        """Sample offsets of the shifted passes (`config.shifts`, or the `shifts` override)."""
        n = self.config.shifts if self.shifts is None else self.shifts
        try:
            return shift_offsets(n, self.codec.hop_length)
        except ValueError as e:
            raise CodecSepError(str(e)) from None

    @property
    def postfilter(self) -> PostFilter:
        """The waveform post-filter: the `postfilter` override, else `config.postfilter`."""
        return self.config.postfilter if self._postfilter is None else self._postfilter

    @postfilter.setter
    def postfilter(self, value) -> None:
        """"2048", "2048,1.25", "0" (off), a dict or a `PostFilter`."""
        self._postfilter = PostFilter.parse(value)

    @property
    def refiner(self) -> PostNet | None:
        """The learned refinement of the post-filter when a run uses it: the checkpoint has one,
        the post-filter is not overridden, and waveforms run the members it was trained on
        (else the analytic ratio serves)."""
        net = getattr(self.masker, "postnet", None)
        if net is None or self._postfilter is not None or self.members != self.trained_members:
            return None
        return net

    @property
    def postfilter_in_use(self) -> PostFilter:
        """`postfilter` as this run applies it (without "net" when the refinement is off)."""
        return self.postfilter if self.refiner is not None else self.postfilter.analytic

    def postfilter_macs(self, n_samples: int) -> int:
        """MACs of one window's post-filter for one prompt: the FFTs (by formula) and, with the
        learned refinement, its network and the members' own decodes."""
        pf = self.postfilter_in_use
        macs = postfilter_macs(pf, n_samples)
        if self.refiner is not None:
            from ..flops import count_macs

            m = len(self.members)
            z = self.codec.encode(torch.zeros(1, 1, n_samples))
            bins, frames = pf.n_fft // 2 + 1, n_samples // (pf.n_fft // 4) + 1
            feats = [torch.zeros(1, bins, frames)] * 3 + [torch.zeros(m, 1, bins, frames)]
            macs += (m * count_macs(self.codec.decode, z, n_samples)
                     + count_macs(self.refiner, *feats)
                     + postfilter_macs(pf, n_samples, n_prompts=m) // 2  # the members' STFTs
                     + bins * frames * self.refiner.pooling_ops() * (2 + m))
        return macs

    def inference_tag(self) -> str:
        offsets = self.shift_offsets
        tags = [super().inference_tag()] + ([f"shifts:{len(offsets)}"] if len(offsets) > 1 else [])
        tags += [f"codewindow:{self.config.code_window_seconds:g}"] if self.config.code_window_seconds else []
        if self.members != tuple(range(1, self.n_maskers + 1)):
            tags.append("members:" + ",".join(map(str, self.members)))
        tags += [f"combine:{self.config.combine}"] if self.config.combine != "mean" else []
        tags.append(self.postfilter_in_use.tag)
        return "+".join(t for t in tags if t)

    def separate_window(self, chunk: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(C, w), cond (P, E) -> (2, P, C, w): the mean of one pass per shift offset, through
        the post-filter."""
        parts = shifted_mean(chunk, self.shift_offsets, lambda x: self._separate_frames(x, cond))
        return self.refine(chunk, parts)

    def refine(self, mixture: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """The post-filter on `split_latent`'s parts, decoded: mixture (C, w), parts (K, ..., C, w)
        -> target and residual (2, ..., C, w)."""
        net = self.refiner
        if net is None:
            return apply_postfilter(mixture, parts, self.postfilter_in_use)
        return apply_postfilter(mixture, parts[:2], self.postfilter, net=net, members=parts[2:])

    def split_latent(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Paired latents (N, D, F) and embeddings (N, E) -> (K, N, D, F): the target latent,
        the residual's (mixture - target), then, when the learned post-filter runs
        (`refiner`), each waveform member's own target."""
        if self.refiner is None:
            target = self.mask(latent, cond) * latent
            return torch.stack([target, latent - target])
        masks = (self.masker.member_masks(latent, cond, [i - 1 for i in self.members])
                 if isinstance(self.masker, MaskMean) else [self.masker(latent, cond)])
        target = combine_masks(masks, self.config.combine) * latent
        return torch.stack([target, latent - target, *(m * latent for m in masks)])

    def _separate_frames(self, chunk: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One encode, one masker pass, one decode: (C, w), cond (P, E) -> (K, P, C, w)."""
        z = self.codec.encode(chunk.unsqueeze(1))
        parts = self.split_latent(*paired(z, cond))
        y = self.codec.decode(parts.reshape(-1, *z.shape[1:]), chunk.shape[-1])
        return y.reshape(parts.shape[0], cond.shape[0], *chunk.shape)

    # ----------------------------------------------------------------------------- code streams
    def window_frames(self) -> tuple[int, int]:
        """(window, overlap) in latent frames: how `separate_codes` cuts long code streams. The
        window holds the frames of one waveform window (the codec's frame count of it, e.g. 201
        for 4 s of Mica), so a code stream of a window-long recording is one window, as its
        waveform is; `config.code_window_seconds`, when set, replaces the waveform window."""
        window, overlap = self.window_samples()
        if self.config.code_window_seconds:
            window = int(self.config.code_window_seconds * self.sample_rate)
        return self.codec.n_frames(window), round(overlap / self.codec.hop_length)

    @torch.inference_mode()
    def separate_codes(self, codes: torch.Tensor, prompts, cond: torch.Tensor | None = None) -> dict:
        """codes (N, F) or (1, N, F) -> {"target", "residual"}: codes (P, N, F) each, same codec.
        Of an ensemble, the maskers of `code_members` run."""
        codes = codes if codes.ndim == 3 else codes.unsqueeze(0)
        if codes.shape[0] != 1:
            raise CodecSepError("separate_codes takes one code stream at a time")
        cond = self.embed(prompts) if cond is None else cond
        n_q = codes.shape[1]
        latent = self.codec.dequantize(codes)  # (1, D, F)
        frames, ov = self.window_frames()
        target = overlap_add(latent, frames, ov,
                             lambda z: self.mask_latent(z, cond, self.code_members))[:, 0]
        residual = latent - target
        return {"target": self.codec.quantize(target, n_q),
                "residual": self.codec.quantize(residual, n_q)}


def paired(latent: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """latent (B, D, F) and cond (P, E) -> every prompt with every item, (P * B, D, F) and
    (P * B, E), prompt-major."""
    p, b = cond.shape[0], latent.shape[0]
    z = latent.unsqueeze(0).expand(p, *latent.shape).reshape(p * b, *latent.shape[1:])
    return z, cond.unsqueeze(1).expand(p, b, cond.shape[1]).reshape(p * b, -1)


def check_members(value, n: int, what: str) -> tuple[int, ...]:
    """Indices of an ensemble's `n` maskers (1-based: an int, a sequence, or text such as "1,2")
    -> a sorted tuple; a clear error for anything else."""
    try:
        values = parse_members(value) if isinstance(value, str) else \
            tuple(value) if isinstance(value, (list, tuple)) else (value,)
    except ValueError:
        values = ()  # refused below
    ok = values and len(set(values)) == len(values) and all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= n for i in values)
    if not ok:
        raise CodecSepError(f"{what} must be distinct whole numbers from 1 to {n} (the maskers "
                            f"this checkpoint holds), got {value!r}")
    return tuple(sorted(values))


def save_built(out, build: Callable[[], tuple], overwrite: bool = False) -> Path:
    """Save a separator assembled from trained checkpoints' weights (a mask mean, a pruned
    masker): refused when `out` exists unless `overwrite`, before anything is built; `build()`
    gives (config, state, meta), and the state must load strictly into the config's masker."""
    if Path(out).exists() and not overwrite:
        raise CodecSepError(f"{out} exists: pass --overwrite to replace it")
    config, state, meta = build()
    Separator(config).masker.load_state_dict(state, strict=True)
    return save_checkpoint(out, Separator.checkpoint_kind, config, state, meta=meta,
                           half=Separator.checkpoint_half)
