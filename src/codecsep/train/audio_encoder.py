"""Recipe: align an audio encoder with the frozen text space (symmetric InfoNCE, CLIP/CLAP-style).

Each batch holds one random crop of a random clip for each of B *distinct* labels (no false
negatives), paired with the frozen text embedding of a random caption of its label inside a
random template (the separator's `PromptTable`, embedded once). Only the audio side learns.
The network's input (mel-band levels of the MDCT) is computed once for the whole train split
(`LevelBank`), so a step costs only the small network: this recipe runs at low priority next
to the main training. Augmentation: random crops, a random spectral tilt and SpecAugment masks.
Every checkpoint reports retrieval on the valid split in its meta; the end of the run reports
text -> audio retrieval on the test split (queries: each label's text; gallery: test clips).

    train_audio_encoder("data/corpus/manifest.jsonl", "runs/audio-encoder",
                        export_dir="src/codecsep/assets/audio-encoder")
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..text.audio_encoder import AudioEncoder, AudioEncoderConfig, clip_retrieval
from .loop import LoopConfig, Trainer, export_meta
from .separator import PromptTable, _rank

SILENCE_DB = -100.0  # band level of digital silence (10 log10 of the 1e-10 floor)


@dataclass(frozen=True)
class AudioEncoderRecipe:
    batch_size: int = 32  # distinct labels per batch (at most the number of labels)
    seconds: float = 2.0  # crop length
    tilt_db: float = 6.0  # random spectral tilt, +-dB from the lowest to the highest band
    spec_augment: bool = True  # mask a run of bands and a run of frames
    max_clips_per_label: int = 0  # a random subset of the train split per label (0 = all)
    max_clip_seconds: float = 30.0  # levels are precomputed for this much of each clip
    eval_seconds: float = 5.0  # clips are cut to this for the valid and test reports
    p_mix: float = 0.0  # share of rows with a clip of another label added under the captioned one
    mix_snr_db: tuple[float, float] = (0.0, 20.0)  # how far below the captioned clip it sits
    seed: int = 0


AUDIO_ENCODER_LOOP = LoopConfig(steps=3000, lr=1e-3, warmup=100, log_every=25, ckpt_every=250)


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for (B, B) audio x text logits whose matches are on the diagonal."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class LevelBank:
    """The encoder's input (band levels in dB, float16) of every clip of a ClipBank, once."""

    @torch.inference_mode()
    def __init__(self, bank: ClipBank, encoder: AudioEncoder, max_seconds: float = 30.0):
        self.bank, n = bank, int(max_seconds * encoder.config.sample_rate)
        self.levels = [encoder.band_levels(encoder.mdct(torch.from_numpy(a[:n] / 32768.0).float()
                                                        [None, None]))[0].half().numpy()
                       for a in tqdm(bank.audio, desc="band levels", unit="clip", leave=False)]

    def crop(self, index: int, frames: int, rng: np.random.Generator, tries: int = 4):
        """(K, frames) float32: a random crop (louder crops preferred), short clips padded."""
        lv = self.levels[index]
        if lv.shape[1] <= frames:
            out = np.full((lv.shape[0], frames), SILENCE_DB, dtype=np.float32)
            start = rng.integers(0, frames - lv.shape[1] + 1)
            out[:, start:start + lv.shape[1]] = lv
            return out
        best, loudest = None, -np.inf
        for _ in range(tries):
            s = rng.integers(0, lv.shape[1] - frames + 1)
            seg = lv[:, s:s + frames].astype(np.float32)
            if seg.max() > loudest:
                best, loudest = seg, seg.max()
            if loudest > lv.max() - 30:
                break
        return best


def add_under(levels: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """Band levels (dB) of the sum of two uncorrelated sounds, `other` scaled to sit `snr_db`
    below `levels` in mean power: powers add (what a separated estimate with leakage, or a
    mixture with a louder captioned source, looks like to the encoder)."""
    def mean_db(x):
        return 10 * np.log10(np.mean(10 ** (x / 10)) + 1e-30)

    shift = mean_db(levels) - mean_db(other) - snr_db
    return (10 * np.log10(10 ** (levels / 10) + 10 ** ((other + shift) / 10))).astype(np.float32)


def contrastive_batches(levels: LevelBank, prompts: PromptTable, recipe: AudioEncoderRecipe,
                        frame_rate: float, seed: int):
    """Yields (band levels (B, K, F), text embeddings (B, E)), one distinct label per row; with
    `recipe.p_mix`, some rows also hold a quieter clip of another label (`add_under`)."""
    rng = np.random.default_rng(seed)
    bank, frames = levels.bank, int(recipe.seconds * frame_rate)
    b = min(recipe.batch_size, len(bank.labels))
    while True:
        rows, texts = [], []
        for li in rng.choice(len(bank.labels), size=b, replace=False):
            label = bank.labels[li]
            idx = bank.by_label[label]
            seg = levels.crop(idx[rng.integers(len(idx))], frames, rng)
            if rng.random() < recipe.p_mix:
                others = [k for k in range(len(bank.labels)) if k != li]
                oidx = bank.by_label[bank.labels[others[rng.integers(len(others))]]]
                seg = add_under(seg, levels.crop(oidx[rng.integers(len(oidx))], frames, rng),
                                rng.uniform(*recipe.mix_snr_db))
            tilt = rng.uniform(-recipe.tilt_db, recipe.tilt_db) * np.linspace(-0.5, 0.5, len(seg))
            rows.append(seg + tilt[:, None].astype(np.float32))
            texts.append(prompts.sample(label, rng))
        yield torch.from_numpy(np.stack(rows)), torch.stack(texts)


def make_step_fn(recipe: AudioEncoderRecipe):
    def step(model, batch):
        levels, text = batch
        logits = model(levels, text, spec_augment=recipe.spec_augment)
        top1 = (logits.argmax(1) == torch.arange(len(levels))).float().mean()
        scale = float(getattr(model, "module", model).logit_scale.detach().exp())
        return {"loss": info_nce(logits), "batch_top1": top1, "logit_scale": scale}

    return step


def subsample(clips: list, per_label: int, seed: int) -> list:
    """At most `per_label` random clips of each label (all of them for per_label = 0)."""
    if per_label <= 0:
        return clips
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clips))
    taken: dict[str, int] = {}
    keep = []
    for i in order:
        if taken.get(clips[i].label, 0) < per_label:
            taken[clips[i].label] = taken.get(clips[i].label, 0) + 1
            keep.append(i)
    return [clips[i] for i in sorted(keep)]


def load_split(manifest: str, split: str, sample_rate: int, max_seconds: float):
    """(clips as float32 arrays cut to `max_seconds`, labels) of one split."""
    bank = ClipBank(read_manifest(manifest, split=split), sample_rate)
    n = int(max_seconds * sample_rate)
    return [a[:n].astype(np.float32) / 32768.0 for a in bank.audio], [c.label for c in bank.clips]


def train_audio_encoder(manifest: str, out_dir: str,
                        config: AudioEncoderConfig = AudioEncoderConfig(),
                        recipe: AudioEncoderRecipe = AudioEncoderRecipe(),
                        loop: LoopConfig = AUDIO_ENCODER_LOOP, export_dir: str | None = None,
                        text_encoder=None) -> Path:
    """Train on the manifest's train split; returns the exported checkpoint directory."""
    from ..text.base import get_text_encoder

    command = " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(out_dir)
    encoder = text_encoder or get_text_encoder(config.text_encoder)
    model = AudioEncoder(config, text_encoder=encoder)
    train = subsample(read_manifest(manifest, split="train"), recipe.max_clips_per_label,
                      recipe.seed)
    bank = ClipBank(train, config.sample_rate)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, encoder)
    valid = load_split(manifest, "valid", config.sample_rate, recipe.eval_seconds)
    print(f"audio-encoder training on {len(bank)} clips, {len(bank.labels)} classes, "
          f"{len(prompts.index)} prompts; valid: {len(valid[0])} clips", file=sys.stderr)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"

    def export(m, step):
        m.save(export_to, meta=export_meta(
            out, step, command, recipe=asdict(recipe), loop=asdict(loop), manifest=str(manifest),
            valid_retrieval=clip_retrieval(m, *valid, progress=False)))

    frame_rate = config.sample_rate / config.hop_length
    levels = LevelBank(bank, model, recipe.max_clip_seconds)
    batches = contrastive_batches(levels, prompts, recipe, frame_rate,
                                  recipe.seed + 1000 * _rank())
    Trainer(model, batches, make_step_fn(recipe), export, out, loop).run()
    if _rank() == 0:
        report_test(model.eval(), manifest, out, export_to, recipe.eval_seconds)
    return export_to


def report_test(model: AudioEncoder, manifest: str, out: Path, export_to: Path,
                seconds: float = 5.0) -> dict:
    """Text -> audio retrieval on the test split, into `retrieval_test.json` and the meta."""
    test = clip_retrieval(model, *load_split(manifest, "test", model.config.sample_rate, seconds))
    (out / "retrieval_test.json").write_text(json.dumps(test, indent=2))
    print(f"test retrieval: {json.dumps(test)}", file=sys.stderr)
    meta = {k: v for k, v in AudioEncoder.load(export_to).meta.items() if k != "sha256"}
    model.save(export_to, meta={**meta, "test_retrieval": test})
    return test
