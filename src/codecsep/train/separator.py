"""Recipe: train the CodecSep masker on mixtures drawn on the fly from the corpus train split.

Each item: a target clip and 1-2 interferers of other classes, relative levels uniform in
+-`loudness_db` (AudioSep's protocol), random speed/EQ/reverb per source, the target prompted
by a random caption of its label inside a random template. The masker sees the mixture latent
and the prompt embedding; the loss is the negative SI-SDR of the decoded target and of the
residual (mixture - target), so extraction and removal are both trained.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..codecs import load_codec
from ..data.augment import augment, change_speed
from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..data.mixtures import loudness_db
from ..errors import CodecSepError
from ..losses import neg_si_sdr
from ..separators.masker import MaskerConfig
from ..separators.postfilter import PostFilter, apply_postfilter
from ..separators.separator import Separator, SeparatorConfig
from ..text.anchors import TRAINED_WEIGHT, training_anchors
from .loop import LoopConfig, Trainer, export_meta

TEMPLATES = ("{}", "{}", "{}", "the sound of {}", "{} sounds", "a recording of {}",
             "isolate the {}", "{} only", "extract {}", "I want to hear {}", "{} noise")


@dataclass(frozen=True)
class SeparatorRecipe:
    batch_size: int = 16
    seconds: float = 2.0
    # > 0: each batch's crop length is drawn uniformly from [seconds_min, seconds] (short contexts,
    # as streaming windows and short inputs present them); 0: every crop is `seconds` long
    seconds_min: float = 0.0
    p_three: float = 0.35  # share of three-source mixtures
    loudness_db: float = 10.0
    p_augment: float = 0.3
    speed_range: float = 0.08  # +-8 % speed change
    p_band_limit: float = 0.0  # share of sources band-limited (data.augment.band_limit)
    p_peaking_eq: float = 0.0  # share of sources through random peaking EQ (data.augment)
    embed_noise: float = 0.01  # std of noise on the prompt embedding
    targets_per_mixture: int = 2  # items per mixture, each with another source as the target
    init_from: str = ""  # a separator checkpoint to continue from when the run dir is new
    w_residual: float = 1.0
    codec_sisdr: bool = False  # reference = decode(encode(clean)) (Codecformer's option)
    # share of items whose mixture latent reaches the masker through the codec's codes
    # (dequantize(quantize(z, n)), n drawn from `coded_quantizers` = "lo,hi"), as code streams
    # present it; the references stay the clean sources
    p_coded: float = 0.0
    coded_quantizers: str = "8,16"
    sisdr_floor: float = -30.0  # clamp of the per-item loss, so near-silent items can't dominate
    bf16: bool = True  # bfloat16 autocast for the masker
    band_lr_mult: float = 1.0  # LR multiplier of the band refiner (grown from zero onto a trained masker)
    # distillation: a separator checkpoint (same codec and text encoder) whose target and residual
    # are a second reference, weighted `w_teacher` against the clean sources' loss
    teacher: str = ""
    w_teacher: float = 0.5
    # the loss is taken after the spectral post-filter "N_FFT[,POWER]" (separators.postfilter;
    # "0": before it), so the masks learn what the inference-time re-split needs
    postfilter: str = "0"
    # other names of each label from WordNet (`text.wordnet`; the database directory, "" = none),
    # drawn in place of a caption for a share `p_alias` of the prompts; a name contained in a
    # held-out paraphrase is left out, so those stay unseen
    wordnet: str = ""
    p_alias: float = 0.3
    # classes that sound alike (`scripts/confusable_classes.py`'s JSON table): for a share
    # `p_confusable` of the mixtures, the other sources are drawn from the first source's
    # neighbours rather than from every class, so confusable pairs meet more often
    confusable: str = ""
    p_confusable: float = 0.0
    seed: int = 0

    def coded_range(self) -> tuple[int, int]:
        """`coded_quantizers` "lo,hi" -> (lo, hi), checked."""
        try:
            lo, hi = (int(v) for v in self.coded_quantizers.split(","))
        except ValueError:
            raise CodecSepError(f"coded_quantizers must be 'lo,hi' codebook counts, got "
                                f"{self.coded_quantizers!r}") from None
        if not 1 <= lo <= hi:
            raise CodecSepError(f"coded_quantizers must satisfy 1 <= lo <= hi, got {lo},{hi}")
        return lo, hi

    def __post_init__(self):
        self.coded_range()
        PostFilter.parse(self.postfilter)
        if not 0 <= self.p_alias <= 1:
            raise CodecSepError(f"p_alias must be in [0, 1], got {self.p_alias:g}")
        for name in ("p_coded", "p_confusable"):
            if not 0 <= getattr(self, name) <= 1:
                raise CodecSepError(f"{name} must be in [0, 1], got {getattr(self, name):g}")
        if self.p_confusable and not self.confusable:
            raise CodecSepError("p_confusable needs a table of confusable classes (--confusable)")
        if not 0 <= self.seconds_min <= self.seconds:
            raise CodecSepError(f"seconds_min must be in [0, seconds={self.seconds:g}], "
                                f"got {self.seconds_min:g}")


def active_rms(x: np.ndarray, gate_db: float = -50.0) -> float:
    """Linear RMS over the active frames (the mixtures module's gated loudness); 0 if silent."""
    level = loudness_db(x, gate_db=gate_db)
    return 0.0 if math.isinf(level) else 10 ** (level / 20)


class PromptTable:
    """Every training prompt of every label, embedded once. With `aliases` (label -> other
    names), a share `p_alias` of a label's prompts is drawn from its names instead of its
    captions (each inside a template too)."""

    def __init__(self, labels_to_captions: dict[str, tuple[str, ...]], encoder, rng_seed=0,
                 aliases: dict[str, list[str]] | None = None, p_alias: float = 0.0):
        def options(phrases):
            return [t.format(c) for c in phrases for t in TEMPLATES]

        self.options = {lab: options(caps) for lab, caps in labels_to_captions.items()}
        self.alias_options = {lab: options(names) for lab, names in (aliases or {}).items()
                              if lab in self.options and names}
        self.p_alias = p_alias
        texts = sorted({p for table in (self.options, self.alias_options)
                        for opts in table.values() for p in opts})
        emb = encoder.embed(texts).float()
        self.index = {t: i for i, t in enumerate(texts)}
        self.embeddings = emb

    def sample(self, label: str, rng: np.random.Generator) -> torch.Tensor:
        opts = self.options[label]
        if label in self.alias_options and rng.random() < self.p_alias:  # no draw without aliases
            opts = self.alias_options[label]
        return self.embeddings[self.index[opts[rng.integers(len(opts))]]]


def training_aliases(directory: str, labels) -> dict[str, list[str]]:
    """label -> its WordNet names (`text.wordnet`) for the labels that have a sense, without any
    name that a held-out paraphrase contains (word for word), so those stay unseen."""
    from ..data.captions import PARAPHRASES_HELDOUT
    from ..text.wordnet import corpus_aliases

    names = corpus_aliases(labels, directory)
    held = [f" {p.lower()} " for ps in PARAPHRASES_HELDOUT.values() for p in ps]
    return {lab: [n for n in ns if not any(f" {n} " in h for h in held)] for lab, ns in names.items()}


def confusable_neighbours(path: str, labels: list[str]) -> list[np.ndarray]:
    """For each of `labels` (a bank's), the indices of its neighbours in the table at `path`
    (`scripts/confusable_classes.py`) that the bank holds."""
    table = json.loads(Path(path).read_text())["neighbours"]
    index = {label: i for i, label in enumerate(labels)}
    missing = [label for label in labels if label not in table]
    if missing:
        raise CodecSepError(f"{path}: no neighbours for {missing[:5]}: make the table from this "
                            f"corpus (scripts/confusable_classes.py)")
    return [np.array([index[o] for o, _ in table[label] if o in index]) for label in labels]


def pick_classes(n_labels: int, k: int, rng: np.random.Generator, neighbours=None,
                 p_confusable: float = 0.0) -> np.ndarray:
    """k distinct class indices: uniformly, or (a share `p_confusable`, given `neighbours`) the
    first uniformly and the rest among its neighbours. Without `p_confusable` the draw is the
    one earlier recipes made, so their mixture streams are unchanged."""
    if p_confusable and rng.random() < p_confusable:
        first = int(rng.integers(n_labels))
        near = neighbours[first]
        if len(near) >= k - 1:
            return np.concatenate([[first], rng.choice(near, size=k - 1, replace=False)])
    return rng.choice(n_labels, size=k, replace=False)


def draw_mixture(bank: ClipBank, recipe: SeparatorRecipe, length: int, rng: np.random.Generator,
                 neighbours=None):
    """(mixture (T,), sources (K, T), labels) as float32; the mixture is the sum of the sources.

    K is 2 or 3 sources of distinct classes (`pick_classes`; `neighbours` from
    `confusable_neighbours` when the recipe draws confusable classes); source levels differ by
    up to +-loudness_db."""
    k = 3 if rng.random() < recipe.p_three else 2
    picks = pick_classes(len(bank.labels), k, rng, neighbours, recipe.p_confusable)
    sources = []
    for j, li in enumerate(picks):
        idx = bank.by_label[bank.labels[li]]
        factor = 1 + rng.uniform(-recipe.speed_range, recipe.speed_range)
        seg = bank.crop(idx[rng.integers(len(idx))], int(length * factor) + 1, rng)
        seg = augment(change_speed(seg, factor)[:length], rng, recipe.p_augment,
                      p_band=recipe.p_band_limit, p_eq=recipe.p_peaking_eq)
        seg = np.pad(seg, (0, length - len(seg)))
        gain_db = 0.0 if j == 0 else rng.uniform(-recipe.loudness_db, recipe.loudness_db)
        sources.append(seg / (active_rms(seg) + 1e-8) * 10 ** (gain_db / 20))
    sources = np.stack(sources)
    scale = 10 ** (rng.uniform(-20, -3) / 20) / (np.abs(sources.sum(0)).max() + 1e-8)
    sources = (sources * scale).astype(np.float32)
    return sources.sum(0), sources, [bank.labels[i] for i in picks]


def batch_length(recipe: SeparatorRecipe, sample_rate: int, rng: np.random.Generator) -> int:
    """Samples per item of the next batch (draws from `rng` only when lengths vary, so fixed-
    length runs keep their mixture stream)."""
    if recipe.seconds_min <= 0:
        return int(recipe.seconds * sample_rate)
    return int(rng.uniform(recipe.seconds_min, recipe.seconds) * sample_rate)


def separator_batches(bank: ClipBank, prompts: PromptTable, recipe: SeparatorRecipe,
                      sample_rate: int, seed: int, start_step=None):
    """Batches of (mixture (B,1,T), target (B,1,T), prompt embedding (B,E)).

    Each mixture appears `targets_per_mixture` times with a different source as the target
    (as AudioSep pairs its segments): the same input must give different outputs for
    different prompts, which is what teaches the masker to listen to the text.
    `start_step` (a callable, read when the first batch is drawn) gives a resumed or
    warm-started run a stream of its own instead of a replay of the first steps' mixtures."""
    step = start_step() if start_step is not None else 0
    rng = np.random.default_rng([seed, step] if step else seed)
    neighbours = (confusable_neighbours(recipe.confusable, bank.labels) if recipe.p_confusable
                  else None)
    while True:
        length = batch_length(recipe, sample_rate, rng)
        mixes, targets, conds = [], [], []
        while len(mixes) < recipe.batch_size:
            mix, sources, labels = draw_mixture(bank, recipe, length, rng, neighbours)
            n = min(recipe.targets_per_mixture, len(labels), recipe.batch_size - len(mixes))
            for k in rng.choice(len(labels), size=n, replace=False):
                mixes.append(mix)
                targets.append(sources[k])
                conds.append(prompts.sample(labels[k], rng))
        cond = torch.stack(conds)
        cond = cond + recipe.embed_noise * torch.randn_like(cond)
        yield (torch.from_numpy(np.stack(mixes))[:, None], torch.from_numpy(np.stack(targets))[:, None],
               cond)


PF_TRAIN_FLOOR = 1e-10  # the post-filter's ratio denominator in training (a finite gradient)


def make_step_fn(recipe: SeparatorRecipe, codec, teacher=None):
    """The training step; with a `teacher` (a Separator), the loss adds `w_teacher` times the
    same loss against the teacher's target and residual."""
    def pair_loss(est_target, est_residual, ref_target, ref_residual):
        lt = neg_si_sdr(est_target[:, 0], ref_target[:, 0]).clamp(min=recipe.sisdr_floor)
        lr = neg_si_sdr(est_residual[:, 0], ref_residual[:, 0]).clamp(min=recipe.sisdr_floor)
        return lt, lr

    lo, hi = recipe.coded_range()
    pf = PostFilter.parse(recipe.postfilter)
    if recipe.p_coded and hi > codec.n_codebooks:
        raise CodecSepError(f"coded_quantizers {lo},{hi}: the codec has {codec.n_codebooks} codebooks")

    def step(model, batch):
        mix, target, cond = batch
        kw = {}
        if recipe.p_coded:  # per item: 0 = the continuous latent, else that many codebooks
            n = torch.randint(lo, hi + 1, (mix.shape[0],))
            kw["through_codes"] = torch.where(torch.rand(mix.shape[0]) < recipe.p_coded, n, 0)
        est_target, est_residual = model(mix, cond, bf16=recipe.bf16, **kw)
        if pf.enabled:  # the items' channels side by side: (2, B, T) -> (B, 1, T) each
            both = apply_postfilter(mix[:, 0], torch.stack([est_target[:, 0], est_residual[:, 0]]),
                                    pf, floor=PF_TRAIN_FLOOR)
            est_target, est_residual = both[:, :, None]
        ref_target, ref_residual = target, mix - target
        if recipe.codec_sisdr:
            with torch.no_grad():
                both = codec.decode(codec.encode(torch.cat([target, mix - target])), mix.shape[-1])
            ref_target, ref_residual = both.chunk(2)
        lt, lr = pair_loss(est_target, est_residual, ref_target, ref_residual)
        mix_sisdr = -neg_si_sdr(mix[:, 0], target[:, 0])
        logs = {"loss": lt.mean() + recipe.w_residual * lr.mean(), "target_sisdr": -lt.mean(),
                "residual_sisdr": -lr.mean(), "target_sisdri": (-lt - mix_sisdr).mean()}
        if teacher is not None:
            with torch.no_grad():  # bfloat16: a 16 x 2 s pass 0.96 -> 0.76 s; 45 dB from float32
                teacher_target, teacher_residual = teacher(mix, cond, bf16=True)
            dt, dr = pair_loss(est_target, est_residual, teacher_target, teacher_residual)
            logs["loss"] = logs["loss"] + recipe.w_teacher * (dt.mean() + recipe.w_residual * dr.mean())
            logs["teacher_sisdr"] = -dt.mean()
        return logs

    return step


def load_teacher(path: str, config: SeparatorConfig, codec, encoder) -> Separator:
    """The distillation teacher, frozen, on the student's codec and text encoder (refused when
    its checkpoint names another codec or text encoder: its masks would not fit the latent or
    the prompt embedding)."""
    teacher = Separator.load(path, codec=codec, text_encoder=encoder)
    for part in ("codec", "text_encoder"):
        if getattr(teacher.config, part) != getattr(config, part):
            raise CodecSepError(f"teacher {path} uses {part} {getattr(teacher.config, part)!r}, the "
                                f"student {getattr(config, part)!r}: distillation needs the same one")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def train_separator(manifest: str, out_dir: str, config: SeparatorConfig = SeparatorConfig(),
                    recipe: SeparatorRecipe = SeparatorRecipe(), loop: LoopConfig = LoopConfig(),
                    export_dir: str | None = None, text_encoder=None, codec=None) -> Path:
    from ..text.base import get_text_encoder

    command = " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(out_dir)
    codec = codec or load_codec(config.codec)
    encoder = text_encoder or get_text_encoder(config.text_encoder)
    bank = ClipBank(read_manifest(manifest, split="train"), codec.sample_rate)
    captions = {c.label: c.captions for c in bank.clips}
    aliases = training_aliases(recipe.wordnet, captions) if recipe.wordnet else None
    prompts = PromptTable(captions, encoder, aliases=aliases, p_alias=recipe.p_alias)
    if not config.anchors.texts:  # the checkpoint carries the captions it was trained on
        a = config.anchors
        config = replace(config, anchors=training_anchors(
            bank.clips, a.weight or TRAINED_WEIGHT, a.temperature))
    print(f"separator training on {len(bank)} clips, {len(bank.labels)} classes, "
          f"{len(prompts.index)} prompts ({sum(len(v) for v in (aliases or {}).values())} aliases)",
          file=sys.stderr)
    sep = Separator(config, codec=codec, text_encoder=encoder)
    for p in sep.codec.parameters():
        p.requires_grad_(False)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"

    def export(model, step):
        model.save(export_to, meta=export_meta(out, step, command, recipe=asdict(recipe),
                                               loop=asdict(loop), manifest=str(manifest)))

    trainer = None
    batches = separator_batches(bank, prompts, recipe, codec.sample_rate,
                                recipe.seed + 1000 * _rank(), lambda: trainer.step)
    teacher = load_teacher(recipe.teacher, config, codec, encoder) if recipe.teacher else None
    trainer = Trainer(sep, batches, make_step_fn(recipe, codec, teacher), export, out, loop,
                      params=masker_param_groups(sep.masker, recipe.band_lr_mult))
    if trainer.step == 0 and recipe.init_from:
        warm_start(trainer, sep, recipe.init_from)
    trainer.run()
    return export_to


def warm_start(trainer: Trainer, sep: Separator, checkpoint: str, load=None) -> None:
    """Continue a shipped checkpoint in a new run directory (the optimizer state, which is not
    shipped, starts afresh): masker weights, step count and training history carry over.
    `load(kind, state)` puts the checkpoint's masker state into `sep` (default: strictly)."""
    from ..checkpoint import load_checkpoint

    kind, _, state, meta = load_checkpoint(checkpoint)
    if load is None:
        load_masker_state(sep.masker, state)
    else:
        load(kind, state)
    trainer.step = int(meta.get("step", 0))
    trainer.history = meta.get("history", []) + trainer.history[-1:]
    trainer.history[-1]["start_step"] = trainer.step
    print(f"warm start from {checkpoint} at step {trainer.step}", file=sys.stderr)


def masker_param_groups(masker, band_lr_mult: float = 1.0) -> list[dict]:
    """The masker's parameters as optimizer groups: the band refiner (if any) in its own group
    with LR multiplier `band_lr_mult`, the rest at the schedule's LR."""
    refiner = getattr(masker, "bands", None)  # only the time trunk can carry one
    if refiner is None:
        return [{"params": list(masker.parameters())}]
    bands = {id(p) for p in refiner.parameters()}
    rest = [p for p in masker.parameters() if id(p) not in bands]
    return [{"params": rest}, {"params": list(refiner.parameters()), "lr_mult": band_lr_mult}]


def load_masker_state(masker, state: dict) -> None:
    """Load a masker checkpoint strictly, except that a masker grown by a band refiner
    (`band_width` > 0) may start from a checkpoint without one: the refiner then starts at its
    zero-output init, so the grown masker begins exactly where the checkpoint was."""
    missing, unexpected = masker.load_state_dict(state, strict=False)
    grown = [k for k in missing if k.startswith("bands.")]
    if unexpected or len(grown) != len(missing):
        raise CodecSepError(f"checkpoint does not fit this masker: missing "
                            f"{sorted(set(missing) - set(grown))[:5]}, unexpected {unexpected[:5]}")
    if grown:
        print(f"band refiner: {len(grown)} tensors start fresh (zero correction)", file=sys.stderr)


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
