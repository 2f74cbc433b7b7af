"""Recipe: train the AudioSep-style ResUNet peer exactly as CodecSep is trained.

Same clip bank, same on-the-fly mixtures (`separator_batches`), same prompt table, same loss
(`make_step_fn`: negative SI-SDR of target and residual) and the same `Trainer`; only the model
differs, so quality differences come from the architecture, not from the data or the objective.

    train_resunet("data/corpus/manifest.jsonl", "runs/resunet", loop=LoopConfig(steps=20000))
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..errors import CodecSepError
from ..separators.resunet import RESUNET_COMPACT, ResUNetConfig, ResUNetSeparator
from .loop import LoopConfig, Trainer, export_meta
from .separator import PromptTable, SeparatorRecipe, _rank, make_step_fn, separator_batches


def train_resunet(manifest: str, out_dir: str, config: ResUNetConfig = RESUNET_COMPACT,
                  recipe: SeparatorRecipe = SeparatorRecipe(), loop: LoopConfig = LoopConfig(),
                  export_dir: str | None = None, text_encoder=None) -> Path:
    """Train on the manifest's train split; returns the exported checkpoint directory."""
    from ..text.base import get_text_encoder

    if recipe.codec_sisdr:
        raise CodecSepError("the ResUNet has no codec: train it with codec_sisdr=False")
    command = " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(out_dir)
    encoder = text_encoder or get_text_encoder(config.text_encoder)
    bank = ClipBank(read_manifest(manifest, split="train"), config.sample_rate)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, encoder)
    print(f"resunet training on {len(bank)} clips, {len(bank.labels)} classes, "
          f"{len(prompts.index)} prompts", file=sys.stderr)
    model = ResUNetSeparator(config, text_encoder=encoder)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"

    def export(m, step):
        m.save(export_to, meta=export_meta(out, step, command, recipe=asdict(recipe),
                                           loop=asdict(loop), manifest=str(manifest)))

    trainer = None
    batches = separator_batches(bank, prompts, recipe, config.sample_rate,
                                recipe.seed + 1000 * _rank(), lambda: trainer.step)
    trainer = Trainer(model, batches, make_step_fn(recipe, codec=None), export, out, loop)
    trainer.run()
    return export_to
