"""Recipes: Codecformer and CodeSep on two-speaker mixtures drawn from the corpus speech clips.

Mixtures come from `data.mixtures.TwoSpeaker` through `MixtureStream` (deterministic, resumable,
SIR uniform in +-5 dB). Speakers are the manifest's `extra["speaker"]` (the corpus' `source_id`
is one original recording, so two "source ids" can be one voice); TTS voices (`extra["tts"]`, or
ids starting with "tts") only ever serve as extra training speakers, never in valid/test.

`evaluate_speech(model, eval_set)` scores any model with `separate_speakers(audio) -> (2, C, T)`
(Codecformer, CodeSep, or the FCTS/FSTC baselines wrapped with `functools.partial`) with
permutation-resolved SI-SDR(i), ViSQOL (speech mode) and, when installed, STOI and PESQ (wb).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.manifest import Clip, read_manifest
from ..data.mixtures import (
    SAMPLE_RATE,
    MixtureStream,
    TwoSpeaker,
    TwoSpeakerConfig,
    collate_mixtures,
)
from ..errors import CodecSepError, MissingDependencyError
from ..losses import neg_si_sdr, pit_neg_si_sdr
from ..separators.codecformer import Codecformer, CodecformerConfig, codec_reference
from ..separators.codesep import CodeSep, CodeSepConfig
from .loop import LoopConfig, Trainer, export_meta


@dataclass(frozen=True)
class SpeechRecipe:
    batch_size: int = 8
    seconds: float = 2.0
    # Corpus speech clips average 2.4 s: in 4 s padded mixtures the speakers overlap in only 12%
    # of frames (oracle MDCT ratio mask: 38 dB SI-SDRi); 2 s looped: 70% (14.6 dB), Libri2Mix-like.
    short_clips: str = "loop"
    sir_db_range: tuple[float, float] = (-5.0, 5.0)
    augment: bool = True
    tts: bool = True  # TTS voices as extra training speakers
    codec_sisdr: str = "off"  # Codecformer reference: "off" | "latent" | "codes" (codec_reference)
    codec_sisdr_quantizers: int | None = None  # codebooks for "codes" (None: all)
    sisdr_floor: float = -30.0  # clamp of the per-item loss (the paper's threshold of -30 dB)
    workers: int = 0  # DataLoader workers rendering mixtures
    seed: int = 0


def is_tts(clip: Clip) -> bool:
    return bool(clip.extra.get("tts")) or clip.source_id.startswith("tts")


def speech_clips(manifest, split: str, tts: bool = True) -> list[Clip]:
    """Speech clips of `split` with `source_id` set to the speaker; TTS voices kept only in the
    train split and only if `tts`."""
    keep_tts = tts and split == "train"
    clips = [c for c in read_manifest(manifest, split=split) if c.category == "speech"]
    return [dataclasses.replace(c, source_id=str(c.extra.get("speaker", c.source_id)))
            for c in clips if keep_tts or not is_tts(c)]


def speech_protocol(clips: list[Clip], recipe: SpeechRecipe, augment: bool | None = None):
    cfg = TwoSpeakerConfig(duration_s=recipe.seconds, sir_db_range=recipe.sir_db_range,
                           short_clips=recipe.short_clips,
                           augment=recipe.augment if augment is None else augment)
    return TwoSpeaker(clips, cfg)


def speech_batches(protocol, recipe: SpeechRecipe, start):
    """Infinite (mixture (B, 1, T), sources (B, 2, T)) batches. `start()` gives the number of
    items already consumed; it is called at the first `next`, i.e. after the Trainer resumed."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    stream = MixtureStream(protocol, seed=recipe.seed, start=start(), rank=rank, world_size=world)
    loader = torch.utils.data.DataLoader(stream, batch_size=recipe.batch_size,
                                         collate_fn=collate_mixtures, num_workers=recipe.workers)
    for batch in loader:
        yield batch["mixture"], batch["sources"]


def _check_rate(codec) -> None:
    if codec.sample_rate != SAMPLE_RATE:
        raise CodecSepError(f"speech mixtures are {SAMPLE_RATE} Hz; codec {codec.codec_id} "
                            f"runs at {codec.sample_rate} Hz")


def _run(model, make_step, manifest, out_dir, recipe, loop, kind: str, export_dir=None) -> Path:
    """Shared recipe body: data, export, Trainer over the model's `net` parameters."""
    _check_rate(model.codec)
    for p in model.codec.parameters():
        p.requires_grad_(False)
    clips = speech_clips(manifest, "train", recipe.tts)
    protocol = speech_protocol(clips, recipe)
    n_speakers = len({c.source_id for c in clips})
    print(f"{kind} training on {len(clips)} speech clips, {n_speakers} speakers", file=sys.stderr)
    command = " ".join(shlex.quote(a) for a in sys.argv)
    export_to = Path(export_dir) if export_dir else Path(out_dir) / "checkpoint"

    def export(m, step):
        m.save(export_to, meta=export_meta(out_dir, step, command, recipe=asdict(recipe),
                                           loop=asdict(loop), manifest=str(manifest)))

    trainer = None
    batches = speech_batches(protocol, recipe, lambda: trainer.step * recipe.batch_size)
    trainer = Trainer(model, batches, make_step(model), export, out_dir, loop,
                      params=list(model.net.parameters()))
    trainer.run()
    return export_to


# ------------------------------------------------------------------------------------ Codecformer
def codecformer_step(recipe: SpeechRecipe, codec):
    """step_fn: PIT negative SI-SDR against the clean (or codec-passed) sources."""
    def step(model, batch):
        mix, sources = batch
        refs = codec_reference(codec, sources, recipe.codec_sisdr, recipe.codec_sisdr_quantizers)
        loss, _ = pit_neg_si_sdr(model(mix), refs)
        loss = loss.clamp(min=recipe.sisdr_floor)
        mix_sisdr = -neg_si_sdr(mix.expand_as(refs), refs).mean(1)
        return {"loss": loss.mean(), "sisdr": -loss.mean(), "sisdri": (-loss - mix_sisdr).mean()}

    return step


CODECFORMER_LOOP = LoopConfig(lr=1.5e-4, warmup=500)  # the paper's learning rate
CODESEP_LOOP = LoopConfig(lr=3e-4, warmup=500)


def train_codecformer(manifest, out_dir, config: CodecformerConfig | None = None,
                      loop: LoopConfig = CODECFORMER_LOOP, recipe: SpeechRecipe | None = None,
                      codec=None, export_dir=None) -> Path:
    """Train a Codecformer; returns the exported checkpoint directory."""
    recipe = recipe or SpeechRecipe()
    model = Codecformer(config or CodecformerConfig(), codec=codec)
    return _run(model, lambda m: codecformer_step(recipe, m.codec), manifest, out_dir, recipe,
                loop, "codecformer", export_dir)


# ------------------------------------------------------------------------------------ CodeSep
def train_codesep(manifest, out_dir, config: CodeSepConfig | None = None,
                  loop: LoopConfig = CODESEP_LOOP, recipe: SpeechRecipe | None = None,
                  codec=None, export_dir=None) -> Path:
    """Train CodeSep's BTD (PIT cross-entropy on the mixtures) and ATSP (teacher-forced
    cross-entropy on each clean speaker) together; the codec stays frozen."""
    recipe = recipe or SpeechRecipe()
    model = CodeSep(config or CodeSepConfig(), codec=codec)
    return _run(model, lambda m: (lambda net, batch: net(*batch)), manifest, out_dir, recipe,
                loop, "codesep", export_dir)


# ------------------------------------------------------------------------------------ evaluation
def _optional_metric(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def speaker_scores(est: torch.Tensor, refs: torch.Tensor, mixture: torch.Tensor) -> dict:
    """est, refs (2, T) and mixture (T,) -> SI-SDR / SI-SDRi per reference speaker, best order;
    also returns the reordered estimates."""
    from ..metrics import si_sdr, si_sdr_improvement

    orders = ([0, 1], [1, 0])
    scores = [float(si_sdr(est[list(o)], refs).mean()) for o in orders]
    est = est[orders[int(np.argmax(scores))]]
    return {"est": est, "si_sdr": si_sdr(est, refs),
            "si_sdri": si_sdr_improvement(est, refs, mixture.expand_as(refs))}


def perceptual_scores(est: np.ndarray, ref: np.ndarray, sample_rate: int, metrics) -> dict:
    """ViSQOL / STOI / PESQ of one speaker; a metric that is unavailable or fails gives NaN."""
    out = {}
    if "visqol" in metrics:
        from ..metrics import visqol

        out["visqol"] = visqol(est, ref, sample_rate, mode="speech")
    if "stoi" in metrics:
        out["stoi"] = float(metrics["stoi"].stoi(ref, est, sample_rate))
    if "pesq" in metrics:
        try:
            out["pesq"] = float(metrics["pesq"].pesq(sample_rate, ref, est, "wb"))
        except Exception:  # noqa: BLE001 - pesq raises bare C errors on silence
            out["pesq"] = math.nan
    return out


def available_metrics(visqol: bool = True, stoi_pesq: bool = True) -> dict:
    metrics = {}
    if visqol:
        try:
            from ..metrics import _visqol_api

            _visqol_api("speech")
            metrics["visqol"] = True
        except MissingDependencyError:
            print("ViSQOL skipped: visqol-python is not installed", file=sys.stderr)
    for name in ("pystoi", "pesq") if stoi_pesq else ():
        mod = _optional_metric(name)
        if mod is None:
            print(f"{name} skipped: not installed (pip install 'codecsep[metrics]')",
                  file=sys.stderr)
        else:
            metrics["stoi" if name == "pystoi" else name] = mod
    return metrics


def separate_for_scoring(model, mixture: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """mixture (T,) -> estimates (2, T); oracles (`needs_references = True`) also get the
    clean sources (2, T) as `sources=`."""
    kw = {"sources": refs} if getattr(model, "needs_references", False) else {}
    with torch.inference_mode():
        return torch.as_tensor(model.separate_speakers(mixture, **kw)).float().mean(1)


def evaluate_speech(model, eval_set, limit: int | None = None, visqol: bool = True,
                    stoi_pesq: bool = True, metrics: dict | None = None,
                    desc: str = "evaluating") -> dict:
    """Mean scores over an evaluation set of two-speaker mixtures (`read_eval_set(...)` or any
    sequence of `Mixture`): {"n", "si_sdr", "si_sdri", "visqol", "stoi", "pesq", "items"}.
    `metrics` (from `available_metrics`) overrides the `visqol` / `stoi_pesq` switches."""
    from tqdm import tqdm

    metrics = available_metrics(visqol, stoi_pesq) if metrics is None else metrics
    items = list(range(len(eval_set)))[:limit]
    rows = []
    for i in tqdm(items, desc=desc, unit="mix"):
        m = eval_set[i]
        mixture, refs = torch.from_numpy(m.mixture), torch.from_numpy(m.sources)
        est = separate_for_scoring(model, mixture, refs)  # (2, T)
        s = speaker_scores(est, refs, mixture)
        for k in range(2):
            row = {"item": i, "speaker": k, "si_sdr": float(s["si_sdr"][k]),
                   "si_sdri": float(s["si_sdri"][k])}
            row.update(perceptual_scores(s["est"][k].numpy(), m.sources[k], m.sample_rate, metrics))
            rows.append(row)
    keys = [k for k in rows[0] if k not in ("item", "speaker")] if rows else []
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    return {"n": len(items), **summary, "items": rows}
