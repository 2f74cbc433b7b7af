"""Where the code-stream path loses: SI-SDRi of the default on the first N two-source TEST mixtures
(label prompts), through each combination of quantized input and quantized output at 12 codebooks
(6 kbps), against the clean target and against the codec's own rendition of the target.

    python results/experiments/session15/codes_diag.py [N] [--members 2]   (from the repo root)
"""
import argparse
import csv
from pathlib import Path

import soundfile as sf
import torch

from codecsep.metrics import si_sdr
from codecsep.separators.separator import Separator

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int, nargs="?", default=40)
ap.add_argument("--members", default="2")
ap.add_argument("--nq", type=int, default=12)
args = ap.parse_args()
torch.set_num_threads(1)
root = Path("data/eval/two_source-0")
rows = [r for r in csv.DictReader(open(root / "metadata.csv")) if r["source_index"] == "0"][: args.n]
sep = Separator.load()
sep.members = args.members
c, nq = sep.codec, args.nq
q = lambda z: c.dequantize(c.quantize(z, nq))  # noqa: E731  through the codes
names = ["waveform path (continuous latent)", "quantized input, continuous output",
         "continuous input, quantized output", "codes in -> codes out",
         "codec ceiling: the target through the codes"]
scores = {k: [] for k in names}
vs_ceiling = {k: [] for k in names[:4]}
with torch.inference_mode():
    for r in rows:
        mix = torch.from_numpy(sf.read(root / r["mixture_path"], dtype="float32")[0])
        ref = torch.from_numpy(sf.read(root / r["source_path"], dtype="float32")[0])
        T, cond = mix.shape[-1], sep.embed([r["prompt"]])
        z = c.encode(mix[None, None])
        base = si_sdr(mix, ref)
        ceiling = c.decode(q(c.encode(ref[None, None])), T)[0, 0]
        est = {}
        for name, zin, quant_out in ((names[0], z, False), (names[1], q(z), False),
                                     (names[2], z, True), (names[3], q(z), True)):
            t = sep.mask_latent(zin, cond, sep.code_members)[:, 0]
            est[name] = c.decode(q(t) if quant_out else t, T)[0, 0]
        est[names[4]] = ceiling
        for k, y in est.items():
            scores[k].append(float(si_sdr(y, ref) - base))
            if k in vs_ceiling:
                vs_ceiling[k].append(float(si_sdr(y, ceiling) - si_sdr(c.decode(q(z), T)[0, 0], ceiling)))
print(f"{len(rows)} two-source TEST mixtures, label prompts, members {args.members}, {nq} codebooks")
print("| path | SI-SDRi vs the clean target | SI-SDRi vs the codec's rendition of the target |")
print("|---|---|---|")
for k in names:
    m = sum(scores[k]) / len(scores[k])
    v = f"{sum(vs_ceiling[k]) / len(vs_ceiling[k]):.2f}" if k in vs_ceiling else "–"
    print(f"| {k} | {m:.2f} | {v} |")
