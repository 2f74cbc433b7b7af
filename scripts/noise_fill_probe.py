"""Probe: does noise filling raise Mica's ViSQOL at 6 kbps? (Session 3: it does not.)

    python scripts/noise_fill_probe.py --manifest runs/manifest_v1.jsonl --codec mica

The synthesis net's MSE-trained output is the conditional mean of each power-compressed MDCT
coefficient; where the bitstream cannot carry a coefficient's sign the mean shrinks toward 0 and
the decode sounds muffled. Noise filling adds what is missing as noise: a 1x1-conv head on the
synthesis features (everything else frozen) learns a per-coefficient log-scale by Gaussian
likelihood of the residual (`--steps` Adam steps, random 1-16 codebooks), then the decode
`mean + gain * scale * noise` is scored (ViSQOL speech mode and SI-SDR) at 12 codebooks (6 kbps)
on the first `--n` test clips per category of `codecsep bench codec`'s fixed selection, for each
gain (0 = the shipped decoder). Writes --out as JSON.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from codecsep.codecs import load_codec
from codecsep.codecs.evaluate import CodecBenchConfig, _visqol, select_clips
from codecsep.codecs.mica import compress, decompress
from codecsep.data.bank import ClipBank
from codecsep.data.manifest import read_manifest
from codecsep.metrics import si_sdr

GAINS = (0.0, 0.5, 0.7, 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--codec", default="mica")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--quantizers", type=int, default=12)
    ap.add_argument("--out", default="results/codec_bench/noise_fill_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    codec = load_codec(args.codec).float()
    codec.requires_grad_(False)
    syn, p = codec.synthesis, codec.config.compress_power
    head = torch.nn.Conv1d(syn.out.in_channels, codec.latent_dim, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(head.bias, -3.0)

    def decode_parts(latent, n):
        """MDCT latent -> (conditional mean of the compressed coefficients, synthesis features)
        at n codebooks."""
        h = codec.analysis(compress(latent, p))
        f = syn.features(codec.quantizer(h, n)["latent"])
        return syn.out(f), f

    bank = ClipBank(read_manifest(args.manifest, split="train"), codec.sample_rate)
    rng, opt = np.random.default_rng(0), torch.optim.Adam(head.parameters(), 3e-3)
    for step in range(args.steps):
        z = codec.encode(bank.random_batch(12, codec.sample_rate, rng))
        mean, f = decode_parts(z, int(rng.integers(1, codec.n_codebooks + 1)))
        log_scale = head(f)
        nll = (log_scale + 0.5 * (compress(z, p) - mean).pow(2) * torch.exp(-2 * log_scale)).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: Gaussian NLL {nll.item():.3f}", flush=True)

    cfg = CodecBenchConfig(manifest=args.manifest, n_per_category=args.n)
    chosen, _ = select_clips(cfg, codec.sample_rate)
    noise = torch.Generator().manual_seed(0)
    result = {"quantizers": args.quantizers, "kbps": codec.bitrate(args.quantizers) / 1000,
              "steps": args.steps, "n_per_category": args.n, "scores": {}}
    with torch.no_grad():
        for cat, items in chosen.items():
            scores = {g: {"visqol": [], "si_sdr": []} for g in GAINS}
            for _, wav in items:
                x = wav.reshape(1, 1, -1)
                mean, f = decode_parts(codec.encode(x), args.quantizers)
                scale = head(f).exp()
                for g in GAINS:
                    c = mean + g * scale * torch.randn(mean.shape, generator=noise)
                    y = codec.decode(decompress(c, p), x.shape[-1])[0, 0]
                    scores[g]["visqol"].append(_visqol(y, wav, codec.sample_rate))
                    scores[g]["si_sdr"].append(float(si_sdr(y, wav)))
            result["scores"][cat] = {str(g): {k: round(float(np.nanmean(v)), 3)
                                              for k, v in s.items()} for g, s in scores.items()}
            print(cat, result["scores"][cat], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
