"""Recipe: train the learned refinement of a separator's post-filter (`postfilter.PostNet`).

The separator's maskers are frozen. Each batch is drawn as the maskers' own (`separator_batches`,
the same mixtures, prompts and augmentation), run through the separator as inference runs it
(anchored prompts, the members' masks combined, decoded), and re-split by the post-filter with
the network's correction; the loss is the negative SI-SDR of the refined target and residual.
The log also keeps the analytic post-filter's SI-SDR on the same items (`gain_db`: how much the
network adds to it), so the run shows what it is worth as it goes.

    codecsep train postnet --manifest M --out runs/postnet --width 32   # on the shipped default
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..checkpoint import command_line, provenance
from ..data.bank import ClipBank
from ..data.manifest import read_manifest
from ..errors import CodecSepError
from ..losses import neg_si_sdr
from ..separators.postfilter import POOLS, PostFilter, apply_postfilter
from ..separators.separator import Separator
from .loop import LoopConfig, Trainer, export_meta
from .separator import PromptTable, SeparatorRecipe, _rank, separator_batches


@dataclass(frozen=True)
class PostNetRecipe:
    # the frozen separator's checkpoint folder ("": the shipped default); it must have a
    # post-filter (n_fft > 0). One whose refinement has this width already is continued.
    separator: str = ""
    width: int = 32  # of the refinement's MLP (`PostNet`)
    # its neighbourhoods, "BINSxFRAMES,..." ("": `postfilter.POOLS`, the shipped refinement's)
    pools: str = ""

    @property
    def pool_sizes(self) -> tuple:
        if not self.pools:
            return POOLS
        try:
            return PostFilter(pools=tuple(tuple(int(n) for n in k.split("x"))
                                          for k in self.pools.split(","))).pools
        except ValueError:
            raise CodecSepError(f"--pools: expected BINSxFRAMES,... (odd sizes), got "
                                f"{self.pools!r}") from None


# SeparatorRecipe fields that shape the maskers' training, not the mixtures: refused here (the
# prompts are the captions' own, as the frozen maskers hear them at inference)
MASKER_ONLY = ("init_from", "teacher", "codec_sisdr", "p_coded", "postfilter", "bf16", "wordnet",
               "band_lr_mult")


def check_recipe(recipe: SeparatorRecipe) -> None:
    changed = [f for f in MASKER_ONLY if getattr(recipe, f) != getattr(SeparatorRecipe(), f)]
    if changed:
        flags = ", ".join("--" + f.replace("_", "-") for f in changed)
        raise CodecSepError(f"train postnet draws mixtures with the separator recipe, but {flags} "
                            "train maskers: leave them out")


def load_refinable(post: PostNetRecipe) -> tuple[Separator, str]:
    """The frozen separator with a `PostNet` of `post.width` and `post.pools` on its post-filter
    (kept if it has that one; a new one, zero at its output, otherwise), and its folder."""
    sep = Separator.load(post.separator or None)
    path = post.separator or str(sep.default_checkpoint)
    pf = sep.config.postfilter
    if not pf.enabled:
        raise CodecSepError(f"{path} has no post-filter to refine (set its postfilter "
                            "with scripts/set_inference.py first)")
    if (pf.net, pf.pools) == (post.width, post.pool_sizes):
        model = sep
    else:
        config = replace(sep.config, postfilter=replace(pf, net=post.width, pools=post.pool_sizes))
        model = Separator(config, codec=sep.codec, text_encoder=sep.text_encoder)
        state = {k: v for k, v in sep.masker.state_dict().items() if not k.startswith("postnet.")}
        missing, unexpected = model.masker.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("postnet.") for k in missing):
            raise CodecSepError(f"{path}: its maskers do not fit their own config")
        model.meta = sep.meta
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("masker.postnet."))
    return model, path


def make_postnet_step(recipe: SeparatorRecipe):
    def step(model, batch):
        mix, target, cond = batch
        model.eval()  # the frozen maskers keep dropout off; the refinement has no train mode
        pf = model.config.postfilter
        with torch.no_grad():
            z = model.codec.encode(mix)
            parts = model.split_latent(z, model.anchor(cond))
            y = model.codec.decode(parts.reshape(-1, *z.shape[1:]), mix.shape[-1])
            y = y.reshape(parts.shape[0], *mix[:, 0].shape)  # (K, B, T): items as channels
            base = apply_postfilter(mix[:, 0], y[:2], pf.analytic)
        out = model.refine(mix[:, 0], y)
        ref = torch.stack([target[:, 0], mix[:, 0] - target[:, 0]])

        def sisdr(est):  # (2, B) per item, clamped as the maskers' loss is
            return -neg_si_sdr(est.flatten(0, 1), ref.flatten(0, 1)).clamp(
                min=recipe.sisdr_floor).view(2, -1)

        s, s0 = sisdr(out), sisdr(base)
        return {"loss": -(s[0].mean() + recipe.w_residual * s[1].mean()),
                "target_sisdr": s[0].mean(), "residual_sisdr": s[1].mean(),
                "gain_db": (s[0] - s0[0]).mean(), "residual_gain_db": (s[1] - s0[1]).mean()}

    return step


def train_postnet(manifest: str, out_dir: str, post: PostNetRecipe = PostNetRecipe(),
                  recipe: SeparatorRecipe = SeparatorRecipe(), loop: LoopConfig = LoopConfig(),
                  export_dir: str | None = None) -> Path:
    """Train on the manifest's train split; returns the exported checkpoint directory (the
    whole separator: its maskers unchanged, the refinement in its post-filter)."""
    check_recipe(recipe)
    command = command_line()
    out = Path(out_dir)
    model, path = load_refinable(post)
    bank = ClipBank(read_manifest(manifest, split="train"), model.sample_rate)
    prompts = PromptTable({c.label: c.captions for c in bank.clips}, model.text_encoder)
    n = sum(p.numel() for p in model.masker.postnet.parameters())
    print(f"post-filter refinement ({n} weights) on {path}'s maskers, frozen; "
          f"{len(bank)} clips, {len(bank.labels)} classes", file=sys.stderr)
    export_to = Path(export_dir) if export_dir else out / "checkpoint"
    source = provenance(path, getattr(model, "meta", {}) or {})

    def export(m, step):
        meta = export_meta(out, step, command, recipe=asdict(recipe), post=asdict(post),
                           loop=asdict(loop), manifest=str(manifest))
        # "step" stays the maskers' (what results tables report); the refinement's is its own
        meta.update(step=source["step"], postnet_step=step, refined_from=source)
        m.save(export_to, meta=meta)

    trainer = None
    batches = separator_batches(bank, prompts, recipe, model.sample_rate,
                                recipe.seed + 1000 * _rank(), lambda: trainer.step)
    trainer = Trainer(model, batches, make_postnet_step(recipe), export, out, loop,
                      params=list(model.masker.postnet.parameters()))
    trainer.run()
    return export_to
