"""The AudioSep-style peer: a FiLM-conditioned ResUNet on the STFT magnitude.

AudioSep (Liu et al., "Separate anything you describe", https://arxiv.org/abs/2308.05037) runs
ResUNet30 on a 32 kHz STFT (window 2048, hop 320). Facts carried over from its public code:
- magnitude -> BatchNorm over frequency bins -> 1x1 conv -> 6 encoder blocks (widths 32, 64, 128,
  256, 384, 384; 2x2 average pooling, the last block pools frequency only) -> a 384-wide centre
  block -> 6 decoder blocks (transposed conv with kernel = stride, skip concat) -> 1x1 conv to 3
  maps per channel: a sigmoid magnitude mask and a phase rotation (tanh real/imag, normalised);
  the output spectrum is |X| * mask at phase(X) + phase(M), inverted with the iSTFT;
- every residual block is BN -> + beta -> LeakyReLU(0.01) -> 3x3 conv (no bias), twice, with a
  1x1 shortcut when widths change; beta (additive FiLM) is a Linear of the text embedding per
  BatchNorm (per block, as AudioSep does), here zero-initialised so the conditioning starts as
  the identity;
- time frames are zero-padded to a multiple of the time pooling, the last frequency bin dropped.
Not carried over: AudioSep's unused FiLM for the decoder's second BatchNorm, its torchlibrosa
DFT-as-convolution STFT (we use FFTs; see `PUBLISHED_COST_NOTE`) and its L1 loss (the compact
config trains with exactly CodecSep's mixtures, prompts and loss: `codecsep.train.resunet`).

    sep = ResUNetSeparator.load("runs/resunet/checkpoint")
    out = sep.separate(wav, ["dog barking"])      # {"target", "residual"}: (P, C, T) each
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CodecSepError
from ..nn.film import FiLM
from .base import TextQueriedSeparator

PUBLISHED_COST_NOTE = (
    "AudioSep's 30.45 GMACs/s is the count for a 1-s input (101 STFT frames zero-padded to 128 "
    "for the 2^5 time pooling) including torchlibrosa's DFT-as-convolution STFT/iSTFT (~1.27 "
    "GMACs/s); its 39 M parameters include those frozen DFT matrices (~12.6 M). We run FFTs, "
    "which FlopCounterMode does not count, and report the network alone."
)


@dataclass(frozen=True)
class ResUNetConfig:
    sample_rate: int = 16000
    n_fft: int = 1024  # 64 ms window at 16 kHz, as AudioSep's 2048 at 32 kHz
    hop_length: int = 320  # 20 ms: the codec's frame rate (AudioSep: 10 ms)
    # encoder block widths (centre = widths[-1]); the compact default has about the parameters
    # of CodecSep's default masker (4.6 M vs 5.3 M) at ~0.45 GMACs/s
    widths: tuple[int, ...] = (8, 16, 32, 64, 128, 192)
    strides: tuple[tuple[int, int], ...] = ((2, 2),) * 5 + ((1, 2),)  # (time, freq) pooling
    cond_dim: int = 384
    text_encoder: str = "minilm"
    momentum: float = 0.01
    window_seconds: float = 10.0
    overlap_seconds: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "strides", tuple(tuple(int(v) for v in s) for s in self.strides))
        if len(self.widths) != len(self.strides) or not self.widths:
            raise CodecSepError("ResUNetConfig: widths and strides need one entry per encoder block")
        if (self.n_fft // 2) % self.freq_ratio:
            raise CodecSepError(f"ResUNetConfig: n_fft/2 = {self.n_fft // 2} is not divisible by "
                                f"the frequency pooling {self.freq_ratio}")

    @property
    def time_ratio(self) -> int:
        return math.prod(s[0] for s in self.strides)

    @property
    def freq_ratio(self) -> int:
        return math.prod(s[1] for s in self.strides)


RESUNET30_PUBLISHED = ResUNetConfig(sample_rate=32000, n_fft=2048, hop_length=320,
                                    widths=(32, 64, 128, 256, 384, 384), cond_dim=512,
                                    text_encoder="clap")
RESUNET_COMPACT = ResUNetConfig()
CONFIGS = {"resunet30": RESUNET30_PUBLISHED, "compact": RESUNET_COMPACT}


class FiLM2d(FiLM):
    """Additive FiLM on (B, C, T, F) maps: x + beta(cond), beta zero at init (identity)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__(cond_dim, channels, scale=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, F), cond (B, E) -> (B, C, T, F)."""
        return x + self.proj(cond)[:, :, None, None]


class ResBlock(nn.Module):
    """(B, C_in, T, F) -> (B, C_out, T, F): [BN + beta -> LeakyReLU -> 3x3 conv] x 2 + shortcut."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, momentum: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in, momentum=momentum), nn.BatchNorm2d(c_out, momentum=momentum)
        self.film1, self.film2 = FiLM2d(cond_dim, c_in), FiLM2d(cond_dim, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.film1(self.bn1(x), cond), 0.01))
        h = self.conv2(F.leaky_relu(self.film2(self.bn2(h), cond), 0.01))
        return self.shortcut(x) + h


class EncoderBlock(nn.Module):
    """(B, C_in, T, F) -> pooled (B, C_out, T/st, F/sf) and the skip (B, C_out, T, F)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], cond_dim: int, momentum: float):
        super().__init__()
        self.block = ResBlock(c_in, c_out, cond_dim, momentum)
        self.stride = stride

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        skip = self.block(x, cond)
        return F.avg_pool2d(skip, self.stride), skip


class DecoderBlock(nn.Module):
    """(B, C_in, T, F) + skip (B, C_out, T*st, F*sf) -> (B, C_out, T*st, F*sf)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], cond_dim: int, momentum: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in, momentum=momentum)
        self.film = FiLM2d(cond_dim, c_in)
        self.up = nn.ConvTranspose2d(c_in, c_out, stride, stride=stride, bias=False)
        self.block = ResBlock(2 * c_out, c_out, cond_dim, momentum)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.up(F.leaky_relu(self.film(self.bn(x), cond), 0.01))
        return self.block(torch.cat([x, skip], dim=1), cond)


class ResUNet(nn.Module):
    """Text-conditioned ResUNet: mixture (B, 1, T) + cond (B, E) -> target waveform (B, 1, T)."""

    def __init__(self, config: ResUNetConfig = RESUNET_COMPACT):
        super().__init__()
        c = self.config = config
        w, e, m = c.widths, c.cond_dim, c.momentum
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.bn0 = nn.BatchNorm2d(c.n_fft // 2 + 1, momentum=m)
        self.pre_conv = nn.Conv2d(1, w[0], 1)
        ins = (w[0],) + w[:-1]
        self.encoder = nn.ModuleList(EncoderBlock(i, o, s, e, m) for i, o, s in zip(ins, w, c.strides))
        self.center = ResBlock(w[-1], w[-1], e, m)
        outs = w[::-1]
        self.decoder = nn.ModuleList(DecoderBlock(i, o, s, e, m) for i, o, s
                                     in zip((w[-1],) + outs[:-1], outs, c.strides[::-1]))
        self.after_conv = nn.Conv2d(w[0], 3, 1)

    def spectrogram(self, wav: torch.Tensor):
        """(B, T) -> magnitude, cos, sin of the STFT, each (B, frames, bins)."""
        spec = torch.stft(wav, self.config.n_fft, self.config.hop_length, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True).transpose(1, 2)
        mag = (spec.real**2 + spec.imag**2).clamp_min(1e-10).sqrt()
        return mag, spec.real / mag, spec.imag / mag

    def masks(self, mag: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """|X| (B, frames, bins) + cond (B, E) -> the 3 raw output maps (B, 3, frames, bins)."""
        x = self.bn0(mag[:, None].transpose(1, 3)).transpose(1, 3)  # BN per frequency bin
        frames = x.shape[2]
        x = F.pad(x, (0, 0, 0, -frames % self.config.time_ratio))[..., :-1]
        x = self.pre_conv(x)
        skips = []
        for block in self.encoder:
            x, skip = block(x, cond)
            skips.append(skip)
        x = self.center(x, cond)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip, cond)
        return F.pad(self.after_conv(x), (0, 1))[:, :, :frames]

    def forward(self, mixture: torch.Tensor, cond: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        """mixture (B, 1, T), cond (B, E) -> target (B, 1, T). `bf16` runs the UNet under
        bfloat16 autocast; the STFT, the masking and the iSTFT stay in float32."""
        length = mixture.shape[-1]
        mag, cos_x, sin_x = self.spectrogram(mixture[:, 0])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            maps = self.masks(mag, cond)
        maps = maps.float()
        mask_mag = torch.sigmoid(maps[:, 0])
        real, imag = torch.tanh(maps[:, 1]), torch.tanh(maps[:, 2])
        norm = (real**2 + imag**2).clamp_min(1e-20).sqrt()  # clamp first: finite gradients
        cos_m, sin_m = real / norm, imag / norm
        out_mag = F.relu(mag * mask_mag)
        spec = torch.complex(out_mag * (cos_x * cos_m - sin_x * sin_m),
                             out_mag * (sin_x * cos_m + cos_x * sin_m)).transpose(1, 2)
        wav = torch.istft(spec, self.config.n_fft, self.config.hop_length, window=self.window,
                          center=True, length=length)
        return wav[:, None]


class ResUNetSeparator(TextQueriedSeparator):
    """ResUNet + text encoder behind the same interface as `Separator` (separate/save/load)."""

    checkpoint_kind = "resunet"
    config_class = ResUNetConfig
    checkpoint_label = "a ResUNet separator"
    checkpoint_half = False  # BatchNorm running variances of raw magnitudes overflow float16

    def __init__(self, config: ResUNetConfig = RESUNET_COMPACT, text_encoder=None):
        super().__init__(config, text_encoder=text_encoder)
        self.net = ResUNet(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def text_dim(self) -> int:
        return self.config.cond_dim

    def forward(self, mixture: torch.Tensor, cond: torch.Tensor, bf16: bool = False):
        """Training pass: mixture (B, 1, T), cond (B, E) -> (target, residual), (B, 1, T) each."""
        target = self.net(mixture, cond, bf16=bf16)
        return target, mixture - target

    def separate_window(self, chunk: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(C, w), cond (P, E) -> (2, P, C, w): every (prompt, channel) pair in one batch."""
        p, c = cond.shape[0], chunk.shape[0]
        mix = chunk.unsqueeze(0).expand(p, c, -1).reshape(p * c, 1, -1)
        target = self.net(mix, cond.repeat_interleave(c, dim=0)).reshape(p, c, -1)
        return torch.stack([target, chunk.unsqueeze(0) - target])
