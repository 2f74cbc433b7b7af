"""Session 19: the spectral post-filter on Codecformer's two speakers, on a VALID draw.

    python results/experiments/session19/speech_postfilter.py --seed 1 --n 100 --postfilter 1024 2048

Separates each two-speaker mixture once, applies each post-filter setting (N_FFT or
N_FFT,POWER) to the separated speakers, and prints the mean SI-SDRi (best speaker order) of
each against no post-filter, with the share of mixtures it improves.
"""

import argparse
import itertools
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from codecsep.evaluate import ensure_eval_set
from codecsep.metrics import si_sdr_improvement
from codecsep.separators.codecformer import DEFAULT_CODECFORMER, Codecformer
from codecsep.separators.postfilter import PostFilter, apply_postfilter


def best_order_sdri(est: torch.Tensor, refs: torch.Tensor, mix: torch.Tensor) -> float:
    return max(np.mean([float(si_sdr_improvement(est[p], refs[i], mix)) for i, p in enumerate(perm)])
               for perm in itertools.permutations(range(len(refs))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--postfilter", nargs="+", default=["1024", "2048"])
    ap.add_argument("--manifest", default="runs/manifest_v12.jsonl")
    ap.add_argument("--model", default=str(DEFAULT_CODECFORMER))
    args = ap.parse_args()
    torch.set_num_threads(1)
    eval_set = ensure_eval_set("two_speaker", args.n, "data/eval", args.manifest, seed=args.seed,
                               split="valid")
    model = Codecformer.load(args.model).eval()
    model.config = replace(model.config, postfilter=PostFilter())  # scored here, after the fact
    settings = {text: PostFilter.parse(text) for text in args.postfilter}
    scores = {"off": [], **{t: [] for t in settings}}
    for i in tqdm(range(args.n), desc="two_speaker valid"):
        m = eval_set[i]
        mix, refs = torch.from_numpy(m.mixture), torch.from_numpy(m.sources)
        est = model.separate_speakers(mix[None])  # (S, 1, T)
        scores["off"].append(best_order_sdri(est[:, 0], refs, mix))
        for text, pf in settings.items():
            scores[text].append(best_order_sdri(apply_postfilter(mix[None], est, pf)[:, 0], refs, mix))
    off = np.array(scores["off"])
    for name, values in scores.items():
        d = np.array(values) - off
        print(f"{name:>10}: SI-SDRi {np.mean(values):.2f} dB, vs off {d.mean():+.3f}, "
              f"better on {np.mean(d > 0):.0%} of {len(d)} mixtures")


if __name__ == "__main__":
    main()
