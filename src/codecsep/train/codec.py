"""Recipe: train the Mica codec's bitstream path on the corpus train split.

The continuous path is a fixed MDCT (exact reconstruction), so training only teaches the
analysis net, the residual VQ and the synthesis net to carry the MDCT through 1-8 kbps.
Loss: multi-resolution STFT + MSE on power-compressed MDCT coefficients (phase-aware: MDCT
signs carry phase) + a small waveform SI-SDR term + VQ commitment and codebook terms.
"""

from __future__ import annotations

import itertools
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import save_checkpoint
from ..codecs.mica import MicaCodec, MicaConfig, compress
from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..losses import MultiResolutionSTFTLoss, neg_si_sdr
from .loop import LoopConfig, Trainer, export_meta


@dataclass(frozen=True)
class CodecRecipe:
    batch_size: int = 12
    seconds: float = 1.0
    w_stft: float = 1.0
    w_mse: float = 2.0
    w_sisdr: float = 0.02
    w_commit: float = 0.25
    w_codebook: float = 1.0
    revive_every: int = 100
    seed: int = 0


def codec_batches(bank: ClipBank, recipe: CodecRecipe, sample_rate: int, seed: int):
    rng = np.random.default_rng(seed)
    length = int(recipe.seconds * sample_rate)
    while True:
        yield bank.random_batch(recipe.batch_size, length, rng)


def make_step_fn(recipe: CodecRecipe):
    stft = MultiResolutionSTFTLoss()
    counter = itertools.count(1)

    def step(model, wav):
        codec = getattr(model, "module", model)
        # dead codes are restarted before the forward pass, never between forward and backward
        revived = codec.quantizer.revive_dead_codes() if next(counter) % recipe.revive_every == 0 else 0
        z = codec.encode(wav)
        out = model(z)
        wav_hat = codec.decode(out["latent_hat"], wav.shape[-1])
        target_c = compress(z, codec.config.compress_power)
        losses = {
            "stft": stft(wav_hat, wav),
            "mse": F.mse_loss(out["compressed_hat"], target_c) / target_c.pow(2).mean().clamp_min(1e-8),
            "sisdr": neg_si_sdr(wav_hat[:, 0], wav[:, 0]).mean(),
            "commit": out["commit"],
            "codebook": out["codebook"],
        }
        losses["loss"] = (recipe.w_stft * losses["stft"] + recipe.w_mse * losses["mse"]
                          + recipe.w_sisdr * losses["sisdr"] + recipe.w_commit * losses["commit"]
                          + recipe.w_codebook * losses["codebook"])
        losses["revived"] = torch.tensor(float(revived))
        return losses

    return step


def train_codec(manifest: str, out_dir: str, config: MicaConfig = MicaConfig(),
                recipe: CodecRecipe = CodecRecipe(), loop: LoopConfig = LoopConfig(),
                export_dir: str | None = None) -> Path:
    out = Path(out_dir)
    command = " ".join(shlex.quote(a) for a in sys.argv)
    bank = ClipBank(read_manifest(manifest, split="train"), config.sample_rate)
    print(f"codec training on {len(bank)} clips, {len(bank.labels)} classes", file=sys.stderr)
    codec = MicaCodec(config)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"

    def export(model, step):
        save_checkpoint(export_to, "mica", config, model.state_dict(), half=True,
                        meta=export_meta(out, step, command, recipe=asdict(recipe),
                                         loop=asdict(loop), manifest=str(manifest)))

    batches = codec_batches(bank, recipe, config.sample_rate, recipe.seed)
    Trainer(codec, batches, make_step_fn(recipe), export, out, loop).run()
    return export_to
