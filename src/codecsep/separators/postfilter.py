"""The spectral post-filter: the separated waveforms re-split the mixture in a longer STFT.

A latent mask acts on the codec's frames (Mica: the MDCT, 40-ms frames at hop 320), so each
estimate carries the transform's time aliasing and frame-rate noise. The post-filter takes the
decoded target t and residual r = x - t of one window and re-splits the mixture x with their
magnitude ratio on a Hann STFT of `n_fft` (hop n_fft / 4):

    t' = iSTFT(|T|^a / (|T|^a + |R|^a) * X),    r' = x - t'

(for K parts, e.g. speakers, part k gets |P_k|^a / sum_j |P_j|^a), so t' + r' = x still
holds, the bins where both estimates are silent go to the residual, and a silent mixture stays
silent. Power a = 2 is the Wiener ratio of powers; measured on our VALID draws
(`results/experiments/README.md`, session 19), a = 1 to 1.25 gains and a = 2 loses.
No weights, no training; four FFT passes per prompt (`postfilter_macs`).

The learned refinement (`PostFilter.net` > 0, `PostNet`): for an ensemble of maskers, a small
pointwise network adds a per-bin correction d to the ratio's logit,

    t' = iSTFT(sigmoid(a (log|T| - log|R|) + d) X),

from features of each bin and its neighbourhoods: the log-ratio, the mixture's level, and how far
each member's own estimate (its mask alone, decoded) puts the bin from the combined one; where
the members disagree is where the combined mask is least sure. It sees no prompt, and its last
layer starts at zero, so untrained it is the analytic ratio. Trained on the frozen separator
(`codecsep train postnet`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CodecSepError

# the learned refinement's neighbourhoods (bins x frames) over which it averages its features
POOLS = ((3, 3), (9, 3), (3, 9), (27, 1))


@dataclass(frozen=True)
class PostFilter:
    n_fft: int = 0  # 0: off
    power: float = 1.0
    net: int = 0  # width of the learned refinement of the ratio (`PostNet`); 0: none
    pools: tuple = POOLS  # the refinement's neighbourhoods, (bins, frames) each, odd sizes
    # rounds of phase retrieval (MISI) after the re-split; 0: the mixture's phase (2 rounds lost
    # 0.18 dB on VALID, `scripts/misi_probe.py`, session 28)
    misi: int = 0

    def __post_init__(self):
        pools = tuple(tuple(int(n) for n in k) for k in self.pools)  # lists from JSON
        object.__setattr__(self, "pools", pools)
        if not pools or any(len(k) != 2 or min(k) < 1 or not k[0] % 2 or not k[1] % 2
                            for k in pools):
            raise CodecSepError(f"postfilter pools must be (bins, frames) pairs of odd sizes "
                                f">= 1, got {self.pools}")
        if self.n_fft and (self.n_fft < 16 or self.n_fft % 4):
            raise CodecSepError(f"postfilter n_fft must be 0 (off) or a multiple of 4 >= 16, "
                                f"got {self.n_fft}")
        if not self.power > 0:
            raise CodecSepError(f"postfilter power must be > 0, got {self.power}")
        if self.misi < 0:
            raise CodecSepError(f"postfilter misi must be >= 0 rounds, got {self.misi}")
        if self.net < 0 or (self.net and not self.n_fft):
            raise CodecSepError(f"postfilter net must be 0 or a width >= 1 with n_fft set, got "
                                f"{self.net} (n_fft {self.n_fft})")

    @property
    def enabled(self) -> bool:
        return self.n_fft > 0

    @property
    def tag(self) -> str:
        """"postfilter:2048^1.25" (with "+net32" when learned) for inference tags; "" when off."""
        if not self.enabled:
            return ""
        pools = "" if self.pools == POOLS else ":p" + ",".join(f"{b}x{f}" for b, f in self.pools)
        return (f"postfilter:{self.n_fft}^{self.power:g}"
                + (f"+net{self.net}{pools}" if self.net else "")
                + (f"+misi{self.misi}" if self.misi else ""))

    @property
    def analytic(self) -> PostFilter:
        """The same filter without its learned refinement."""
        return PostFilter(self.n_fft, self.power, misi=self.misi)

    @classmethod
    def parse(cls, text) -> PostFilter:
        """ "2048" -> (2048, 1), "2048,1.25" -> (2048, 1.25), "0" -> off; or a dict / PostFilter."""
        if isinstance(text, PostFilter):
            return text
        if isinstance(text, dict):
            return cls(int(text.get("n_fft", 0)), float(text.get("power", 1.0)),
                       int(text.get("net", 0)), tuple(text.get("pools", POOLS)),
                       int(text.get("misi", 0)))
        parts = str(text).split(",")
        try:
            if len(parts) > 2:
                raise ValueError
            return cls(int(parts[0]), float(parts[1]) if len(parts) == 2 else 1.0)
        except ValueError:
            raise CodecSepError(f"postfilter: expected N_FFT or N_FFT,POWER (0: off), "
                                f"got {text!r}") from None


def _stft(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    # constant padding: any input length works (reflection needs more than n_fft / 2 samples)
    return torch.stft(x, n_fft, n_fft // 4, window=window, center=True, pad_mode="constant",
                      return_complex=True)


def apply_postfilter(mixture: torch.Tensor, parts: torch.Tensor, pf: PostFilter,
                     floor: float = 0.0, net: PostNet | None = None,
                     members: torch.Tensor | None = None) -> torch.Tensor:
    """mixture (C, w), parts (K, ..., C, w) that sum to it (target and residual: K = 2; speakers)
    -> the same, re-split: part k gets the STFT ratio |P_k|^a / sum_j |P_j|^a of the mixture, and
    the last part is the mixture minus the others, so the parts still sum to the mixture
    exactly. Unchanged when `pf` is off. `floor` bounds the ratio's denominator from below
    (training passes a small one, so the gradient stays finite where every part is near silent;
    inference keeps the smallest float). With a `net` (`PostNet`; target and residual only),
    `members` (M, ..., C, w) are the ensemble members' own target estimates."""
    if not pf.enabled:
        return parts
    window = torch.hann_window(pf.n_fft, dtype=mixture.dtype, device=mixture.device)
    if net is not None:
        return _refined(mixture, parts, members, pf, net, window)
    k, w = parts.shape[0], parts.shape[-1]
    spec = _stft(parts.reshape(-1, w), pf.n_fft, window)
    mag = spec.reshape(k, -1, *mixture.shape[:-1], *spec.shape[1:]).abs() ** pf.power
    ratio = mag[:-1] / mag.sum(0).clamp_min(max(floor, torch.finfo(mag.dtype).tiny))  # (K-1, R, C, bins, frames)
    return _resplit(mixture, ratio, _stft(mixture, pf.n_fft, window), pf, window, parts.shape)


def _resplit(mixture, ratio, x, pf: PostFilter, window, shape) -> torch.Tensor:
    """Parts of `shape` (K, ..., C, w) from the ratios (K-1, ..., C, bins, frames) of the
    mixture's STFT x: the first K-1 are iSTFT(ratio X), the last the mixture minus them. With
    `pf.misi` > 0, that many rounds of MISI (multiple input spectrogram inversion) first: each
    part keeps the magnitude its ratio gives it and takes the phase of its own time-domain
    estimate, after the estimates' difference from the mixture is shared out equally."""
    w, hop = shape[-1], pf.n_fft // 4

    def istft(spec):
        return torch.istft(spec.reshape(-1, *x.shape[1:]), pf.n_fft, hop, window=window,
                           center=True, length=w).reshape(spec.shape[0], *shape[1:])

    if not pf.misi:
        kept = istft(ratio * x)
    else:
        spec = torch.cat([ratio, (1 - ratio.sum(0)).unsqueeze(0)]) * x
        mag, est = spec.abs(), istft(spec)
        for _ in range(pf.misi):
            est = est + (mixture - est.sum(0)) / len(est)
            spec = _stft(est.reshape(-1, w), pf.n_fft, window).reshape(mag.shape)
            est = istft(mag * spec / spec.abs().clamp_min(torch.finfo(mag.dtype).tiny))
        kept = est[:-1]
    return torch.cat([kept, (mixture - kept.sum(0)).unsqueeze(0)])


LOG_EPS = 1e-6  # log|S| = log(|S| + LOG_EPS) in the learned refinement's logit and features


def _refined(mixture, parts, members, pf: PostFilter, net: PostNet, window) -> torch.Tensor:
    """`apply_postfilter` with the learned correction of the ratio's logit (K = 2)."""
    if parts.shape[0] != 2 or members is None or members.shape[0] != net.n_members:
        raise CodecSepError(f"the learned post-filter takes a target, a residual and "
                            f"{net.n_members} members' targets")
    w = parts.shape[-1]
    spec = _stft(torch.cat([parts, members]).reshape(-1, w), pf.n_fft, window)
    x = _stft(mixture, pf.n_fft, window)  # (C, bins, frames)
    logs = torch.log(spec.abs() + LOG_EPS).reshape(2 + net.n_members, -1, *x.shape)
    log_t, log_r = logs[0], logs[1]  # (R, C, bins, frames): R = the leading dims of a part
    log_m = logs[2:] - torch.log((x - spec.reshape(logs.shape)[2:]).abs() + LOG_EPS)
    log_x = torch.log(x.abs() + LOG_EPS).expand_as(log_t)
    shape = log_t.shape
    d = net(*(v.reshape(-1, *x.shape[1:]) for v in (log_t, log_r, log_x)),
            log_m.reshape(net.n_members, -1, *x.shape[1:]) * pf.power).reshape(shape)
    ratio = torch.sigmoid(pf.power * (log_t - log_r) + d)
    return _resplit(mixture, ratio.unsqueeze(0), x, pf, window, parts.shape)


class PostNet(nn.Module):
    """Per-bin correction of the post-filter's ratio logit: a pointwise MLP (`width` wide) over
    each bin's log-ratio, mixture level (relative to the item's mean), target level, frequency,
    and the `n_members` members' log-ratios relative to the combined one; the ratios, levels and
    member offsets are also given averaged over the `pools` neighbourhoods (bins x frames). The
    output layer starts at zero (the analytic ratio)."""

    def __init__(self, width: int, n_members: int, power: float, pools=POOLS):
        super().__init__()
        self.n_members, self.power, self.pools = n_members, power, pools
        n_in = 4 + n_members + len(self.pools) * (2 + n_members)
        self.net = nn.Sequential(nn.Conv2d(n_in, width, 1), nn.GELU(), nn.Conv2d(width, width, 1),
                                 nn.GELU(), nn.Conv2d(width, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def pooling_ops(self) -> int:
        """Operations per value and pooled channel of the neighbourhood means (`_box_mean`: six
        per value and pass; one pass per distinct window along the bins, one per window longer
        than a frame along the frames)."""
        passes = len({b for b, _ in self.pools} - {1}) + sum(f > 1 for _, f in self.pools)
        return 6 * passes

    def forward(self, log_t, log_r, log_x, member_logits, fast: bool | None = None):
        """log-magnitudes (N, bins, frames) of target, residual and mixture, and the members'
        ratio logits a (log|T_m| - log|R_m|), (M, N, bins, frames) -> the logit's correction,
        (N, bins, frames). `fast`: neighbourhood means by cumulative sums and the 1x1 layers as
        channels-last products (PyTorch's fastest), else average pooling and 1x1 convolutions
        (ONNX Runtime's fastest); None: fast unless an ONNX export is tracing. They agree to
        float precision (`scripts/postnet_speed.py` times both)."""
        if fast is None:
            fast = not torch.onnx.is_in_onnx_export()
        ref = log_x.mean(dim=(1, 2), keepdim=True)
        ratio = (log_t - log_r)[:, None]
        level = (log_x - ref)[:, None]
        spread = member_logits.transpose(0, 1) - self.power * ratio  # (N, M, bins, frames)
        freq = torch.linspace(-1, 1, log_t.shape[1], dtype=log_t.dtype, device=log_t.device)
        feats = [ratio, level, (log_t - ref)[:, None], freq.view(1, 1, -1, 1).expand_as(ratio),
                 spread]
        feats += _neighbourhood_means(torch.cat([ratio, level, spread], 1), self.pools, fast)
        if not fast:
            return self.net(torch.cat(feats, 1))[:, 0]
        h = torch.cat(feats, 1).permute(0, 2, 3, 1)
        for layer in self.net:
            h = (F.linear(h, layer.weight.flatten(1), layer.bias) if isinstance(layer, nn.Conv2d)
                 else layer(h))
        return h[..., 0]


def _neighbourhood_means(v: torch.Tensor, pools, by_sums: bool) -> list[torch.Tensor]:
    """v (N, C, bins, frames) averaged over each (bins, frames) neighbourhood, edges replicated:
    by cumulative sums (`_box_mean`, shared passes along the bins) or by average pooling. On the
    shipped refinement, one thread, a 4-s window (`scripts/postnet_speed.py`): PyTorch 11 ms by
    sums, 27 ms by pooling; ONNX Runtime 6 ms on the export (pooling; about 1.5x slower traced
    from the sums)."""
    if not by_sums:
        return [F.avg_pool2d(F.pad(v, (f // 2, f // 2, b // 2, b // 2), mode="replicate"), (b, f),
                             stride=1) for b, f in pools]
    along_bins = {b: _box_mean(v, b, 2) for b in {b for b, _ in pools}}
    return [_box_mean(along_bins[b], f, 3) for b, f in pools]


def _box_mean(v: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """The mean over a centred window of odd length k along `dim`, edges replicated (what
    `avg_pool2d` over a replicate-padded input gives), by cumulative sums: a few operations per
    value whatever k. The values are centred first so that the float32 sums stay accurate."""
    h, n = k // 2, v.shape[dim]
    if h == 0:
        return v
    mean = v.mean(dim, keepdim=True)
    v = v - mean
    edge = [h if i == dim else -1 for i in range(v.dim())]
    sums = torch.cumsum(torch.cat([v.narrow(dim, 0, 1).expand(edge), v,
                                   v.narrow(dim, n - 1, 1).expand(edge)], dim), dim)
    sums = torch.cat([torch.zeros_like(sums.narrow(dim, 0, 1)), sums], dim)
    return (sums.narrow(dim, k, n) - sums.narrow(dim, 0, n)) / k + mean


def postfilter_macs(pf: PostFilter, n_samples: int, n_prompts: int = 1) -> int:
    """Multiply-accumulates of `apply_postfilter` on target and residual (FFTs are not seen by
    the FLOP counter): per frame and prompt four real FFTs of n_fft (three forward, one
    inverse) at n_fft log2(n_fft) real MACs each, their windowing, and about ten per bin for the
    ratio and the product."""
    if not pf.enabled:
        return 0
    frames = n_samples // (pf.n_fft // 4) + 1
    per_frame = 4 * (pf.n_fft * math.log2(pf.n_fft) + pf.n_fft) + 10 * (pf.n_fft // 2 + 1)
    return int(n_prompts * frames * per_frame)
