"""Recipe: train the hierarchical separator on the CodecSep recipe's mixtures and loss.

Composition over `codecsep.train.separator`: the same clip bank, prompt table and on-the-fly
mixtures (`separator_batches`), and the same SI-SDR step (`make_step_fn`), called through an
adapter that also feeds the clean target's embedding (teacher forcing with probability
`p_true_embedding`) and collects stage 1's prediction; stage 1's loss (HSM-TSS eq. 7: cosine +
L1 to the clean target's embedding) is added with weight `w_global`. Both stages train jointly;
the audio encoder and the codec stay frozen.

    train_hierarchical("data/corpus/manifest.jsonl", "runs/hier", loop=LoopConfig(steps=20000))
    compare_separators({"single": sep, "two-stage": hier}, eval_dir="data/eval")  # SI-SDRi
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codecs import load_codec
from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..errors import CodecSepError
from ..separators.hierarchical import HierarchicalConfig, HierarchicalSeparator
from ..text.audio_encoder import AudioEncoder
from .loop import LoopConfig, Trainer, export_meta
from .separator import (
    PromptTable,
    SeparatorRecipe,
    _rank,
    make_step_fn,
    separator_batches,
    warm_start,
)


@dataclass(frozen=True)
class HierarchicalRecipe(SeparatorRecipe):
    audio_encoder: str = ""  # aligned audio encoder checkpoint dir ("" = the shipped one)
    p_true_embedding: float = 0.5  # stage 2 sees the clean target's embedding this often
    w_global: float = 1.0  # weight of stage 1's loss


def global_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HSM-TSS's stage-1 loss: (1 - cosine) + L1, both (B, E) -> scalar."""
    cos = F.cosine_similarity(predicted, target, dim=-1)
    return (1 - cos).mean() + F.l1_loss(predicted, target)


def make_hierarchical_step_fn(recipe: HierarchicalRecipe, codec, audio: AudioEncoder):
    """The separator step (SI-SDR of target and residual) + stage 1's loss."""
    base = make_step_fn(recipe, codec)

    def step(model, batch):
        target = batch[1]
        with torch.no_grad():
            true_emb = audio.embed_wav(target)
        seen = {}

        def two_stage(m, c, bf16=False):  # what `base` calls as model(mix, cond, bf16=...)
            est_t, est_r, seen["predicted"] = model(m, c, bf16=bf16, target_embedding=true_emb,
                                                    p_true=recipe.p_true_embedding,
                                                    return_embedding=True)
            return est_t, est_r

        out = base(two_stage, batch)
        lg = global_loss(seen["predicted"], true_emb)
        out["loss"] = out["loss"] + recipe.w_global * lg
        out["global_loss"] = lg
        out["global_cos"] = F.cosine_similarity(seen["predicted"], true_emb, dim=-1).mean()
        return out

    return step


def train_hierarchical(manifest: str, out_dir: str,
                       config: HierarchicalConfig = HierarchicalConfig(),
                       recipe: HierarchicalRecipe = HierarchicalRecipe(),
                       loop: LoopConfig = LoopConfig(), export_dir: str | None = None,
                       text_encoder=None, codec=None, audio_encoder=None) -> Path:
    """Train on the manifest's train split; returns the exported checkpoint directory.
    The audio encoder's config (config.audio) is taken from its checkpoint."""
    from ..text.base import get_text_encoder

    command = " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(out_dir)
    audio = audio_encoder or AudioEncoder.load(recipe.audio_encoder or None)
    config = replace(config, audio=audio.config)
    codec = codec or load_codec(config.codec)
    encoder = text_encoder or get_text_encoder(config.text_encoder)
    bank = ClipBank(read_manifest(manifest, split="train"), codec.sample_rate)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, encoder)
    print(f"hierarchical training on {len(bank)} clips, {len(bank.labels)} classes, "
          f"{len(prompts.index)} prompts", file=sys.stderr)
    sep = HierarchicalSeparator(config, codec=codec, text_encoder=encoder, audio_encoder=audio)
    sep.codec.requires_grad_(False)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"

    def export(model, step):
        model.save(export_to, meta=export_meta(
            out, step, command, recipe=asdict(recipe), loop=asdict(loop), manifest=str(manifest),
            audio_encoder_sha256=getattr(audio, "meta", {}).get("sha256")))

    trainer = None
    batches = separator_batches(bank, prompts, recipe, codec.sample_rate,
                                recipe.seed + 1000 * _rank(), lambda: trainer.step)
    params = [p for p in sep.masker.parameters() if p.requires_grad]
    trainer = Trainer(sep, batches, make_hierarchical_step_fn(recipe, codec, sep.masker.audio),
                      export, out, loop, params=params)
    if trainer.step == 0 and recipe.init_from:
        warm_start(trainer, sep, recipe.init_from, load=lambda kind, state:
                   load_into_hierarchical(sep, kind, state))
    trainer.run()
    return export_to


def load_into_hierarchical(sep: HierarchicalSeparator, kind: str, state: dict) -> None:
    """Start a two-stage separator from a checkpoint: a hierarchical one as it is, or a
    single-stage CodecSep masker whose conditioning inputs widen from [text] to [text ; g] with
    zero weights on g, so the two-stage model starts out computing exactly the single-stage
    mask (stage 1 trains from scratch). This makes single- vs two-stage a matched comparison."""
    if kind == "hierarchical":
        sep.masker.load_state_dict(state, strict=True)
        return
    if kind != "codecsep":
        raise CodecSepError(f"cannot start a hierarchical separator from a {kind!r} checkpoint")
    own = sep.masker.masker.state_dict()
    widened = {}
    for key, value in state.items():
        target = own.get(key)
        if target is not None and target.shape != value.shape:
            if target.ndim != 2 or target.shape[0] != value.shape[0] or target.shape[1] < value.shape[1]:
                raise CodecSepError(f"{key}: {tuple(value.shape)} does not widen to "
                                    f"{tuple(target.shape)}")
            value = torch.cat([value, value.new_zeros(value.shape[0],
                                                      target.shape[1] - value.shape[1])], 1)
        widened[key] = value
    sep.masker.masker.load_state_dict(widened, strict=True)


# =============================================================================== comparison
def compare_separators(models: dict, protocol: str = "two_source", n: int = 100,
                       eval_dir="data/eval", manifest="data/corpus/manifest.jsonl",
                       prompt_mode: str = "label", task: str = "extract") -> dict:
    """Run every model on the same items of one fixed evaluation set (codecsep eval's).

    models: name -> anything with `sample_rate` and `separate(audio, prompts)` (e.g. a
    Separator and a HierarchicalSeparator). Returns name -> {"si_sdri": mean, "median",
    "n", "per_item": list}, plus "items": the scored (mixture id, source, prompt).
    """
    from tqdm import tqdm

    from ..evaluate import (
        PromptSource,
        ensure_eval_set,
        estimate_and_reference,
        eval_items,
        run_model,
        score,
    )

    eval_set = ensure_eval_set(protocol, n, eval_dir, manifest)
    items = eval_items(eval_set, n, protocol, prompt_mode,
                       PromptSource(manifest if prompt_mode != "label" else None))
    scores = {name: [] for name in models}
    for index in tqdm(sorted({it.index for it in items}), desc="compare", unit="mix"):
        m, todo = eval_set[index], [it for it in items if it.index == index]
        for name, model in models.items():
            out = run_model(model, m.mixture, m.sources, todo)
            for p, it in enumerate(todo):
                est, ref = estimate_and_reference(task, out, p, m.mixture,
                                                  m.sources[it.source_index])
                scores[name].append(score(est, ref, torch.from_numpy(m.mixture))["si_sdri"])
    report = {name: {"si_sdri": float(np.nanmean(v)), "median": float(np.nanmedian(v)),
                     "n": len(v), "per_item": v} for name, v in scores.items()}
    report["items"] = [(it.mixture_id, it.source_index, it.prompt) for it in items]
    return report
