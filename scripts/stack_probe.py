"""Probe: can a tiny learned combiner of the frozen members' masks beat their median?

    python scripts/stack_probe.py --steps 400 --out results/.../stack-probe.md

The shipped separator takes the bin-wise median of its members' masks. Here the members stay
frozen and a combiner of a few hundred weights learns, bin by bin, how to weigh {median, member
1, 2, 3} from their masks and the mixture latent's level (3x3 context). It starts as the median
(softmax bias on it). It trains on mixtures drawn from the TRAIN split, as the separator's recipe
draws them, with the training loss (negative SI-SDR of the decoded target and residual). Then
both are scored on mixtures drawn the same way from the VALID split's clips (fixed seed). This is
a probe, not the evaluation protocol: no post-filter and no windows. A gain here is a reason to
build the combiner into `MaskMean`; a loss is a reason not to.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from codecsep.data.bank import ClipBank
from codecsep.data.manifest import read_manifest
from codecsep.evaluate import bootstrap_ci
from codecsep.losses import neg_si_sdr
from codecsep.separators.masker import combine_masks
from codecsep.separators.api import get_separator
from codecsep.train.separator import SeparatorRecipe, draw_mixture


class Stacker(nn.Module):
    """Per-bin softmax weights over {median, member 1..K} from the masks and log|z|."""

    def __init__(self, k: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(k + 2, hidden, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(hidden, k + 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        with torch.no_grad():
            self.net[-1].bias.copy_(torch.tensor([6.0] + [0.0] * k))  # ~the median at start

    def forward(self, masks: list[torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        cands = torch.stack([combine_masks(masks, "median"), *masks], 1)  # (B, K+1, D, F)
        level = torch.log1p(latent.abs() * 100)[:, None]
        w = self.net(torch.cat([cands, level], 1)).softmax(1)
        return (w * cands).sum(1)


def batches(bank: ClipBank, sep, n: int, batch: int, seconds: float, seed: int):
    """n batches of (mixture (B,1,T), target (B,1,T), cond (B,E)): the recipe's mixtures, each
    source's label (embedded as the separator hears it) as the prompt."""
    recipe = SeparatorRecipe(batch_size=batch, seconds=seconds, p_augment=0.0)
    rng = np.random.default_rng(seed)
    length = int(seconds * sep.sample_rate)
    for _ in range(n):
        mixes, targets, labels = [], [], []
        while len(mixes) < batch:
            mix, sources, labs = draw_mixture(bank, recipe, length, rng)
            k = int(rng.integers(len(labs)))
            mixes.append(mix), targets.append(sources[k]), labels.append(labs[k])
        with torch.no_grad():
            cond = sep.embed(labels)
        yield (torch.from_numpy(np.stack(mixes))[:, None], torch.from_numpy(np.stack(targets))[:, None],
               cond)


def loss_and_sisdr(sep, stacker, mix, target, cond):
    z = sep.codec.encode(mix)
    with torch.no_grad():
        masks = [m(z, cond) for m in sep.masker.members]
    mask = stacker(masks, z) if stacker is not None else combine_masks(masks, "median")
    est = mask * z
    both = sep.codec.decode(torch.cat([est, z - est]), mix.shape[-1])
    t, r = both.chunk(2)
    lt = neg_si_sdr(t[:, 0], target[:, 0]).clamp(min=-30)
    lr = neg_si_sdr(r[:, 0], (mix - target)[:, 0]).clamp(min=-30)
    return (lt + lr).mean(), -lt.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="separator checkpoint (default: the shipped one)")
    ap.add_argument("--manifest", default="data/corpus/manifest.jsonl")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-batches", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    sep = get_separator(a.model or None)
    sep.eval().requires_grad_(False)
    k = len(sep.masker.members)
    stacker = Stacker(k)
    opt = torch.optim.Adam(stacker.parameters(), lr=a.lr)
    train = ClipBank(read_manifest(a.manifest, split="train"), sep.sample_rate)
    start, log = time.time(), []
    for step, (mix, target, cond) in enumerate(tqdm(batches(train, sep, a.steps, a.batch_size,
                                                            a.seconds, a.seed), total=a.steps,
                                                    desc="stacker", unit="step")):
        loss, _ = loss_and_sisdr(sep, stacker, mix, target, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append(float(loss.detach()))
    valid = ClipBank(read_manifest(a.manifest, split="valid"), sep.sample_rate)
    diffs, med_all = [], []
    with torch.no_grad():
        for mix, target, cond in tqdm(batches(valid, sep, a.eval_batches, a.batch_size, a.seconds,
                                              1000 + a.seed), total=a.eval_batches, desc="valid"):
            _, s_med = loss_and_sisdr(sep, None, mix, target, cond)
            _, s_stk = loss_and_sisdr(sep, stacker, mix, target, cond)
            diffs.append(s_stk - s_med), med_all.append(s_med)
    d, med = torch.cat(diffs).numpy(), torch.cat(med_all).numpy()
    lo, hi = bootstrap_ci(d)
    print(f"# Stacker probe ({k} members, {sum(p.numel() for p in stacker.parameters())} weights, "
          f"{a.steps} steps, {time.time() - start:.0f} s)\n")
    print(f"- training loss, first / last 50 steps: {np.mean(log[:50]):.2f} / {np.mean(log[-50:]):.2f}")
    print(f"- VALID-clip mixtures ({len(d)} items): median SI-SDR {med.mean():.2f} dB; stacker - median "
          f"{d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] dB; "
          f"stacker better on {(d > 0).mean():.0%} of items")


if __name__ == "__main__":
    main()
