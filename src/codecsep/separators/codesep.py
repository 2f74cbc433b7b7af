"""CodeSep: joint two-speaker separation and 1 kbps compression on an RVQ codec's tokens.

Du et al., "CodeSep: Low-bitrate codec-driven speech separation with base-token
disentanglement and auxiliary-token serial prediction" (papers/codesep-*), on our Mica codec.

- Base-token disentanglement (BTD): the mixture's power-compressed MDCT (Mica's latent, 50 Hz;
  default) or, as in the paper, its log-mel (hop 80) through strided convs to the codec frame
  rate -> self-attention ("source-intra") Transformer -> two copies plus
  anti-consistency biases (+delta, -delta) -> cross-attention ("source-inter") blocks where each
  source attends to the other -> one linear head per source -> first-codebook logits. Trained
  with permutation-invariant cross-entropy against each clean speaker's first-codebook tokens.
- Auxiliary-token serial prediction (ATSP): per speaker, sub-predictor n (LSTM + Conformer-lite)
  reads the codec's RVQ reconstruction from codebooks 1..n and predicts codebook n+1 (teacher
  forcing in training, autoregressive over codebooks at inference); both speakers share weights.
- Only the base tokens are stored: 2 speakers x log2(1024) bits x 50 Hz = 1 kbps.

The paper's baselines at matched bitrates with the same codec are here too:
`compress_then_separate` (FCTS) and `separate_then_compress` (FSTC).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpointed, command_line
from ..codecs import ASSETS, CodesFile, load_codec
from ..codecs.mica import compress
from ..errors import CodecSepError, CodesFileError
from ..nn.transformer import SelfAttention, Transformer, sinusoidal_positions
from .base import FrozenCodec, as_channels
from .chunking import overlap_add
from .codecformer import PermutationAligner

DEFAULT_CODESEP = ASSETS / "codesep-default"
N_SPEAKERS = 2


@dataclass(frozen=True)
class CodeSepConfig:
    codec: str = "mica"
    n_codebooks: int = 4  # base + 3 auxiliary codebooks (the paper's N = 4)
    # BTD input: "mdct" = the mixture's power-compressed MDCT (Mica's own latent) or "mel" = the
    # paper's log-mel. Mica's tokens depend on MDCT signs that a mel spectrogram discards: on clean
    # speech a small net learns the base token from the MDCT far faster than from the log-mel
    # (scripts/token_probe.py; results/codesep/token_probe.json).
    features: str = "mdct"
    mdct_power: float = 0.5
    n_mels: int = 80
    mel_hop: int = 80  # mel frames at 200 Hz; 2 stride-2 convs reach Mica's 50 Hz
    mel_fft: int = 512
    dim: int = 256
    intra_layers: int = 4
    inter_layers: int = 4
    heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    bias_std: float = 1.0  # init of the anti-consistency bias vector
    bias_noise: float = 0.1  # random perturbation of the bias in training
    aux_dim: int = 256
    aux_lstm_layers: int = 2
    aux_conformer_blocks: int = 3
    aux_kernel: int = 15
    window_seconds: float = 20.0
    overlap_seconds: float = 2.0


# ------------------------------------------------------------------------------------ mel
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, slaney-normalised."""
    def hz_to_mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    mels = torch.linspace(0.0, float(hz_to_mel(torch.tensor(sample_rate / 2))), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up, down = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0) * (2.0 / (hi - lo))


class LogMel(nn.Module):
    """wav (B, T) -> log-mel (B, n_mels, T // hop + 1), frame j centred on sample j * hop."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, pad_mode="constant",
                          return_complex=True)
        return torch.log(self.fbank @ spec.abs().pow(2) + 1e-6)


def mdct_features(codec, wav: torch.Tensor, power: float) -> torch.Tensor:
    """wav (B, 1, T) -> (B, D, F): the codec's power-compressed MDCT latent, scaled to unit RMS
    per item (the mixture's level carries no information about its tokens' identity)."""
    x = compress(codec.encode(wav), power)
    return x / x.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-5)


# ------------------------------------------------------------------------------------ BTD
class AntiConsistencyBias(nn.Module):
    """The ACBG: per-source biases (B, 2, dim) with delta_2 = -delta_1 (anti-consistent: the two
    copies of the mixture feature are pushed apart), a learned vector plus, in training, a
    random perturbation of the same anti-symmetric form."""

    def __init__(self, dim: int, init_std: float, noise_std: float):
        super().__init__()
        self.delta = nn.Parameter(torch.randn(dim) * init_std)
        self.noise_std = noise_std

    def forward(self, batch: int) -> torch.Tensor:
        d = self.delta.expand(batch, -1)
        if self.training and self.noise_std > 0:
            d = d + self.noise_std * torch.randn_like(d)
        return torch.stack([d, -d], dim=1)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) queries, other (B, T', C) keys and values -> (B, T, C)."""
        b, t, c = x.shape
        h = c // self.heads
        q = self.q(x).view(b, t, self.heads, h).transpose(1, 2)
        k, v = self.kv(other).view(b, -1, 2, self.heads, h).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class CrossAttentionLayer(nn.Module):
    """Pre-LN: x + CrossAttn(norm(x), norm(other)), then x + FFN(norm(x))."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn = CrossAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.norm_q, self.norm_kv, self.norm_ffn = (nn.LayerNorm(dim) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm_q(x), self.norm_kv(other)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


def mel_downsampler(n_mels: int, dim: int, n_down: int) -> nn.Sequential:
    """n_down stride-2 convs: (B, n_mels, M) -> (B, dim, ceil(M / 2**n_down))."""
    layers = []
    for i in range(n_down):
        layers += [nn.Conv1d(n_mels if i == 0 else dim, dim, 3, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*layers[:-1])


class BaseTokenDisentangler(nn.Module):
    """mixture features (B, dim, F) -> first-codebook logits (B, 2, F, M)."""

    def __init__(self, c: CodeSepConfig, codebook_size: int):
        super().__init__()
        self.intra = Transformer(c.dim, c.intra_layers, c.heads, c.ffn_dim, c.dropout, True)
        self.bias = AntiConsistencyBias(c.dim, c.bias_std, c.bias_noise)
        self.inter = nn.ModuleList(CrossAttentionLayer(c.dim, c.heads, c.ffn_dim, c.dropout)
                                   for _ in range(c.inter_layers))
        self.norm = nn.LayerNorm(c.dim)
        self.heads = nn.ModuleList(nn.Linear(c.dim, codebook_size) for _ in range(N_SPEAKERS))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, d, f = feats.shape
        z = self.intra(feats.transpose(1, 2) + sinusoidal_positions(f, d, feats.device))
        a, o = (z + delta[:, None] for delta in self.bias(b).unbind(1))
        for layer in self.inter:
            a, o = layer(a, o), layer(o, a)
        return torch.stack([head(self.norm(x)) for head, x in zip(self.heads, (a, o))], dim=1)


# ------------------------------------------------------------------------------------ ATSP
class ConformerLite(nn.Module):
    """Half FFN, self-attention, depthwise-conv module, half FFN, norm (Gulati et al., 2020)."""

    def __init__(self, dim: int, heads: int, kernel: int, dropout: float):
        super().__init__()
        def ffn():
            return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.SiLU(),
                                 nn.Dropout(dropout), nn.Linear(2 * dim, dim))

        self.ffn1, self.ffn2 = ffn(), ffn()
        self.norm_attn, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads, dropout)
        self.norm_conv, self.pw1 = nn.LayerNorm(dim), nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.conv_norm, self.pw2 = nn.GroupNorm(1, dim), nn.Conv1d(dim, dim, 1)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F, C) -> (B, F, C)."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(self.norm_attn(x))
        h = F.glu(self.pw1(self.norm_conv(x).transpose(1, 2)), dim=1)
        x = x + self.pw2(F.silu(self.conv_norm(self.dw(h)))).transpose(1, 2)
        return self.norm_out(x + 0.5 * self.ffn2(x))


class SubPredictor(nn.Module):
    """RVQ reconstruction so far (B, C_q, F) -> logits of the next codebook (B, F, M)."""

    def __init__(self, in_dim: int, c: CodeSepConfig, codebook_size: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, c.aux_dim)
        self.lstm = nn.LSTM(c.aux_dim, c.aux_dim // 2, c.aux_lstm_layers, batch_first=True,
                            bidirectional=True)
        self.blocks = nn.Sequential(*(ConformerLite(c.aux_dim, c.heads, c.aux_kernel, c.dropout)
                                      for _ in range(c.aux_conformer_blocks)))
        self.head = nn.Linear(c.aux_dim, codebook_size)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.inp(q.transpose(1, 2)))
        return self.head(self.blocks(h))


class AuxTokenPredictor(nn.Module):
    """N-1 sub-predictors; `lookup(codes (B, n, F)) -> (B, C_q, F)` is the codec's RVQ sum."""

    def __init__(self, c: CodeSepConfig, in_dim: int, codebook_size: int, lookup):
        super().__init__()
        self.subs = nn.ModuleList(SubPredictor(in_dim, c, codebook_size)
                                  for _ in range(c.n_codebooks - 1))
        self.lookup = lookup

    def teacher_forcing(self, codes: torch.Tensor) -> torch.Tensor:
        """True codes (B, N, F) -> logits (B, N-1, F, M); sub-predictor n reads codes[:, :n]."""
        with torch.no_grad():
            inputs = [self.lookup(codes[:, : n + 1]) for n in range(len(self.subs))]
        return torch.stack([sub(q) for sub, q in zip(self.subs, inputs)], dim=1)

    @torch.no_grad()
    def generate(self, base: torch.Tensor) -> torch.Tensor:
        """base tokens (B, F) -> codes (B, N, F): argmax over each codebook in turn."""
        codes = base[:, None]
        for sub in self.subs:
            codes = torch.cat([codes, sub(self.lookup(codes)).argmax(-1)[:, None]], dim=1)
        return codes


# ------------------------------------------------------------------------------------ losses
def pit_cross_entropy(logits: torch.Tensor, targets: torch.Tensor):
    """Permutation-invariant CE: logits (B, K, F, M), targets (B, K, F) ->
    (loss per item (B,): mean over sources and frames, best permutation (B, K))."""
    b, k, f, m = logits.shape
    pair = F.cross_entropy(  # [b, i, j] = CE(estimate i, target j)
        logits[:, :, None].expand(b, k, k, f, m).reshape(-1, m),
        targets[:, None].expand(b, k, k, f).reshape(-1), reduction="none",
    ).view(b, k, k, f).mean(-1)
    perms = torch.tensor(list(itertools.permutations(range(k))), device=logits.device)
    costs = pair[:, torch.arange(k, device=logits.device)[None, :], perms].mean(-1)  # (B, P)
    best = costs.argmin(-1)
    return costs.gather(1, best[:, None]).squeeze(1), perms[best]


# ------------------------------------------------------------------------------------ model
class CodeSep(FrozenCodec, Checkpointed, nn.Module):
    """Codec + BTD + ATSP. `encode(audio) -> base tokens (2, 1, F)`, `decode(base, length)
    -> (2, 1, T)`, `separate_speakers(audio) -> (2, 1, T)`; `forward` is the training pass."""

    checkpoint_kind = "codesep"
    config_class = CodeSepConfig
    checkpoint_label = "a CodeSep model"
    default_checkpoint = DEFAULT_CODESEP

    def __init__(self, config: CodeSepConfig = CodeSepConfig(), codec=None):
        super().__init__()
        self.config = c = config
        self.codec = codec if codec is not None else load_codec(config.codec)
        quantizer = getattr(self.codec, "quantizer", None)
        if quantizer is None or not hasattr(quantizer, "decode"):
            raise CodecSepError(f"CodeSep needs an RVQ codec with per-codebook lookup (Mica), "
                                f"not {self.codec.codec_id}")
        if not 2 <= c.n_codebooks <= self.codec.n_codebooks:
            raise CodecSepError(f"n_codebooks must be in [2, {self.codec.n_codebooks}], "
                                f"got {c.n_codebooks}")
        m, lookup_dim = self.codec.codebook_size, quantizer.stages[0].out_proj.out_channels
        self.net = nn.ModuleDict({
            "down": self._front_end(c),
            "btd": BaseTokenDisentangler(c, m),
            "atsp": AuxTokenPredictor(c, lookup_dim, m, quantizer.decode),
        })

    def bitrate(self) -> float:
        """Bits per second of the stored base tokens of both speakers (1 kbps with Mica)."""
        return N_SPEAKERS * self.codec.bitrate(1)

    def _front_end(self, c: CodeSepConfig) -> nn.Module:
        """The layers that bring the mixture's features to (B, dim, F) at the codec frame rate."""
        if c.features == "mdct":
            return nn.Conv1d(self.codec.latent_dim, c.dim, 3, padding=1)
        if c.features != "mel":
            raise CodecSepError(f"features must be 'mdct' or 'mel', got {c.features!r}")
        ratio = self.codec.hop_length // c.mel_hop
        if ratio * c.mel_hop != self.codec.hop_length or ratio & (ratio - 1):
            raise CodecSepError(f"codec hop {self.codec.hop_length} must be mel_hop "
                                f"{c.mel_hop} times a power of two")
        self.mel = LogMel(self.codec.sample_rate, c.mel_fft, c.mel_hop, c.n_mels)
        return mel_downsampler(c.n_mels, c.dim, int(math.log2(ratio)))

    def input_features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) -> (B, C, F'): log-mel, or `mdct_features`."""
        if self.config.features == "mel":
            return self.mel(wav)
        return mdct_features(self.codec, wav[:, None], self.config.mdct_power)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, T) -> (B, dim, F) at the codec frame rate, F = codec.n_frames(T)."""
        h = self.net["down"](self.input_features(wav))
        f = self.codec.n_frames(wav.shape[-1])
        return F.pad(h, (0, max(0, f - h.shape[-1])))[..., :f]

    def target_codes(self, sources: torch.Tensor) -> torch.Tensor:
        """sources (B, K, T) -> each one's codec tokens (B, K, N, F), no gradient."""
        b, k, t = sources.shape
        with torch.no_grad():
            codes = self.codec.quantize(self.codec.encode(sources.reshape(b * k, 1, t)),
                                        self.config.n_codebooks)
        return codes.reshape(b, k, *codes.shape[1:])

    def forward(self, mixture: torch.Tensor, sources: torch.Tensor) -> dict:
        """Training pass: mixture (B, 1, T), sources (B, 2, T) -> dict of scalar losses."""
        codes = self.target_codes(sources)  # (B, 2, N, F)
        logits = self.net["btd"](self.features(mixture[:, 0]))
        base_ce, perm = pit_cross_entropy(logits, codes[:, :, 0])
        aux = self.net["atsp"].teacher_forcing(codes.flatten(0, 1))  # (2B, N-1, F, M)
        aux_target = codes.flatten(0, 1)[:, 1:]
        aux_ce = F.cross_entropy(aux.flatten(0, 2), aux_target.flatten())
        ordered = codes[:, :, 0].gather(1, perm[:, :, None].expand(-1, -1, codes.shape[-1]))
        return {"loss": base_ce.mean() + aux_ce, "base_ce": base_ce.mean(), "aux_ce": aux_ce,
                "base_acc": (logits.argmax(-1) == ordered).float().mean(),
                "aux_acc": (aux.argmax(-1) == aux_target).float().mean()}

    # --------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def encode(self, audio) -> torch.Tensor:
        """audio (T,) or (C, T) (mixed down to mono) -> base tokens (2, 1, F), int64. Long inputs
        go through overlapping windows; speaker order is aligned on the overlaps."""
        wav = as_channels(audio).mean(0, keepdim=True)
        feats = self.features(wav)[0]  # (dim, F)
        rate = self.sample_rate / self.codec.hop_length
        window = int(self.config.window_seconds * rate)
        overlap = int(self.config.overlap_seconds * rate)

        def run(h: torch.Tensor) -> torch.Tensor:  # (dim, w) -> probabilities (2, M, w)
            return self.net["btd"](h[None]).softmax(-1)[0].transpose(1, 2)

        align = PermutationAligner(run, feats.shape[-1], window, overlap)
        return overlap_add(feats, window, overlap, align).argmax(1)[:, None]

    @torch.inference_mode()
    def decode(self, base: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """base tokens (2, 1, F) or (2, F) -> waveforms (2, 1, T): predict the aux tokens,
        dequantize all codebooks, decode."""
        base = base.reshape(base.shape[0], -1)
        codes = self.net["atsp"].generate(base.to(torch.int64))
        return self.codec.decode(self.codec.dequantize(codes), length)

    def separate_speakers(self, audio) -> torch.Tensor:
        """audio (T,) or (C, T) -> (2, 1, T): the mono mixdown through encode then decode."""
        return self.decode(self.encode(audio), as_channels(audio).shape[-1])

    # --------------------------------------------------------------------------- codes files
    def codes_file(self, base: torch.Tensor, length: int) -> CodesFile:
        return CodesFile(codes=base, codec_id=self.codec.codec_id,
                         weights_hash=self.codec.weights_hash(), sample_rate=self.sample_rate,
                         length=length, n_quantizers=1)

    def read_codes(self, path) -> CodesFile:
        """Load and validate a CodeSep codes file: this codec, 2 speakers x 1 codebook x F."""
        cf = CodesFile.load(path)
        cf.check_codec(self.codec)
        shape = tuple(cf.codes.shape)
        if shape[:2] != (N_SPEAKERS, 1) or cf.n_quantizers != 1:
            raise CodesFileError(f"{path}: not a CodeSep speech codes file (codes {shape}, "
                                 f"expected ({N_SPEAKERS}, 1, frames))")
        if shape[2] != self.codec.n_frames(cf.length):
            raise CodesFileError(f"{path}: {shape[2]} frames do not match length {cf.length}")
        return cf

    # --------------------------------------------------------------------------- persistence
    def checkpoint_meta(self) -> dict:
        """Tokens only mean something to the exact codec weights that defined them."""
        return {"codec_id": self.codec.codec_id, "codec_weights": self.codec.weights_hash(),
                "trained_by": command_line()}

    def check_checkpoint(self, path: Path, meta: dict) -> None:
        if meta.get("codec_weights") not in (None, self.codec.weights_hash()):
            raise CodecSepError(f"{path} predicts the tokens of codec weights "
                                f"{meta['codec_weights']}, not {self.codec.weights_hash()}")


# ------------------------------------------------------------------------------------ baselines
def transcode(codec, wav: torch.Tensor, n_quantizers: int) -> torch.Tensor:
    """(C, T) -> (C, T) through k codebooks: encode, quantize, dequantize, decode."""
    with torch.inference_mode():
        z = codec.dequantize(codec.quantize(codec.encode(wav.unsqueeze(1)), n_quantizers))
        return codec.decode(z, wav.shape[-1])[:, 0]


def compress_then_separate(audio, separator, codec, n_quantizers: int) -> torch.Tensor:
    """FCTS: the mixture through the codec at k codebooks, then separated: (2, C, T)."""
    return separator.separate_speakers(transcode(codec, as_channels(audio), n_quantizers))


def separate_then_compress(audio, separator, codec, n_quantizers: int) -> torch.Tensor:
    """FSTC: separated, then each speaker through the codec at k codebooks: (2, C, T)."""
    est = separator.separate_speakers(as_channels(audio))
    return transcode(codec, est.flatten(0, 1), n_quantizers).reshape(est.shape)


def baseline_bitrate(codec, solution: str, n_quantizers: int) -> float:
    """Bits per second stored by FCTS (one stream) or FSTC (one stream per speaker)."""
    streams = {"fcts": 1, "fstc": N_SPEAKERS}[solution]
    return streams * codec.bitrate(n_quantizers)


def matched_codebooks(codec, solution: str, bitrate: float) -> int:
    """Codebooks per stream so that `solution` stores `bitrate` bits/s (1 kbps on Mica: FCTS 2,
    FSTC 1). Raises when the rate is not a whole number of codebooks."""
    k = bitrate / baseline_bitrate(codec, solution, 1)
    if k < 1 or abs(k - round(k)) > 1e-6:
        raise CodecSepError(f"{bitrate} bps is not a whole number of codebooks for {solution}")
    return round(k)
