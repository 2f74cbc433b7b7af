"""`codecsep bench`: what each separator costs on a CPU — parameters, MACs, speed and memory.

    codecsep bench                       # quick: every cost, timings of the light rows (minutes)
    codecsep bench --heavy               # also time DAC and ResUNet30, memory at 10 min for all
    codecsep bench --models codecsep resunet-compact --out results/bench

Per row: parameters; MACs per second of audio in waveform mode (encode + mask + decode, counted
on a `--cost-seconds` input, 1 s by default as AudioSep counts) and in code-stream mode
(dequantize + mask + quantize), both also counted on the timed length (`--seconds`, 10 s), run
as it runs: through the separator's overlapping windows (attention spans one window, so its cost
grows with the window; the overlaps are paid twice); the real-time factor (processing time /
audio time, median of `--repeats` runs on `--seconds` of audio after a warm-up) with 1 and 2
threads; the peak RSS of a
fresh process separating 10 s and 10 min (our models stream long inputs through windows, so the
10-min figure stays bounded). Timings are also given as speed-ups over the peers timed in the
same run. Weights are random: costs and timings do not depend on them.
Writes `bench.json` and `bench.md` into `--out` (default results/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import __version__
from .errors import CodecSepError, positive_float, positive_int
from .flops import count_macs, count_parameters
from .timing import real_time_factor

PEERS = ("resunet-compact", "resunet30", "codecsep-paper")  # speed-ups are quoted against these


@dataclass
class Bench:
    """A model under test: its module, how to count its MACs and how to run it."""

    module: nn.Module
    sample_rate: int
    costs: Callable[[float], dict]  # seconds -> {"parts": {name: MACs/s}, "waveform", "codes"}
    run: Callable[[torch.Tensor], object]  # waveform (1, T) -> separated output
    codes_of: Callable[[torch.Tensor], torch.Tensor] | None = None  # waveform -> input codes
    run_codes: Callable[[torch.Tensor], object] | None = None
    notes: str = ""


@dataclass(frozen=True)
class Row:
    description: str
    build: Callable[[bool], Bench]  # tiny -> Bench
    heavy: bool = False  # timed and memory-probed only with --heavy


# =============================================================================== builders
def _probe_input(sample_rate: int, seconds: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(1, 1, max(1, round(seconds * sample_rate)), generator=gen)


def _per_second(macs: dict, seconds: float) -> dict:
    return {k: v / seconds for k, v in macs.items()}


def windowed_macs(parts: Callable[[torch.Tensor], dict], x: torch.Tensor, window: int,
                  overlap: int) -> dict:
    """MACs of `parts` (window -> {part: MACs}) summed over the windows `overlap_add` cuts x
    (..., L) into: what a long input costs as it runs (windows overlap; attention spans one)."""
    from .separators.chunking import window_starts

    length, total, seen = x.shape[-1], {}, {}
    for s in window_starts(length, window, overlap):
        n = min(s + window, length) - s
        if n not in seen:
            seen[n] = parts(x[..., s:s + n])
        for k, v in seen[n].items():
            total[k] = total.get(k, 0) + v
    return total


def separator_bench(sep) -> Bench:
    """A CodecSep `Separator` (codec + masker): both modes, parts counted separately, through
    the separator's windows (waveform: `window_samples`, code streams: `window_frames`)."""
    from .separators.api import installed_presence_check

    sep.eval()
    cond = torch.zeros(1, sep.text_dim)
    codec = sep.codec
    check = installed_presence_check()

    def waveform_parts(chunk: torch.Tensor) -> dict:
        z = codec.encode(chunk)
        return {"encode": count_macs(codec.encode, chunk), "masker": count_macs(sep.mask, z, cond),
                "decode": count_macs(codec.decode, z, chunk.shape[-1]),
                "postfilter": sep.postfilter_macs(chunk.shape[-1])}  # FFTs: counted by formula

    def costs(seconds: float) -> dict:
        wav = _probe_input(sep.sample_rate, seconds)
        z = codec.encode(wav)
        codes = codec.quantize(z)
        p = windowed_macs(waveform_parts, wav, *sep.window_samples())
        p["masker (codes)"] = windowed_macs(lambda zc: {"m": count_macs(sep.mask, zc, cond, sep.code_members)},
                                            z, *sep.window_frames())["m"]
        p.update(quantize=count_macs(codec.quantize, z), dequantize=count_macs(codec.dequantize, codes))
        if check is not None:  # mixture, target and residual embedded: one prompt's check
            p["presence check (not in total)"] = 3 * count_macs(check.encoder.embed, wav[0], sep.sample_rate)
        p = _per_second(p, seconds)
        shifts = len(sep.shift_offsets)  # waveform input: one encode/mask/decode per shift
        waveform = shifts * (p["encode"] + p["masker"] + p["decode"]) + p["postfilter"]
        return {"parts": p, "waveform": waveform,
                "codes": p["dequantize"] + p["masker (codes)"] + p["quantize"]}

    # parameters: the codec and the maskers a run uses (of an ensemble, those of `members` and
    # `code_members`)
    return Bench(nn.ModuleList([codec, *sep.maskers]), sep.sample_rate, costs,
                 run=lambda wav: sep.separate(wav, ["x"], cond=cond),
                 codes_of=lambda wav: codec.quantize(codec.encode(wav[None])),
                 run_codes=lambda codes: sep.separate_codes(codes, ["x"], cond=cond),
                 notes=f"waveform MACs count one decode (the residual costs another), "
                       f"{len(sep.shift_offsets)} shifted pass(es) and the post-filter's FFTs "
                       f"({sep.postfilter_in_use.tag or 'off'}); the presence check `separate` runs on text "
                       f"prompts is a part of its own, not in the total (off: --no-presence-check)")


def resunet_bench(sep) -> Bench:
    from .separators.resunet import PUBLISHED_COST_NOTE

    sep.eval()
    cond = torch.zeros(1, sep.config.cond_dim)

    def costs(seconds: float) -> dict:
        wav = _probe_input(sep.sample_rate, seconds)
        p = _per_second({"network": count_macs(sep.net, wav, cond)}, seconds)
        return {"parts": p, "waveform": p["network"], "codes": None}

    return Bench(sep, sep.sample_rate, costs, run=lambda wav: sep.separate(wav, ["x"], cond=cond),
                 notes=PUBLISHED_COST_NOTE if sep.config.sample_rate == 32000 else
                 "STFT/iSTFT by FFT (not counted)")


def codec_bench(codec, window_seconds: float = 10.0) -> Bench:
    """A codec alone: waveform mode = encode + decode, code-stream mode = quantize + dequantize."""
    from .separators.chunking import overlap_add

    codec.eval()
    sr = codec.sample_rate

    def costs(seconds: float) -> dict:
        wav = _probe_input(sr, seconds)
        z = codec.encode(wav)
        p = _per_second({"encode": count_macs(codec.encode, wav),
                         "decode": count_macs(codec.decode, z, wav.shape[-1]),
                         "quantize": count_macs(codec.quantize, z),
                         "dequantize": count_macs(codec.dequantize, codec.quantize(z))}, seconds)
        return {"parts": p, "waveform": p["encode"] + p["decode"],
                "codes": p["quantize"] + p["dequantize"]}

    def run(wav: torch.Tensor):  # (C, T), in the separators' 10-s windows
        return overlap_add(wav, int(window_seconds * sr), sr,
                           lambda c: codec.decode(codec.encode(c[:, None]), c.shape[-1])[:, 0])

    return Bench(codec, sr, costs, run=run,
                 codes_of=lambda wav: codec.quantize(codec.encode(wav[None])),
                 run_codes=lambda codes: codec.quantize(codec.dequantize(codes), codes.shape[1]),
                 notes="codes mode: dequantize + quantize (transcoding a code stream)")


TINY_MICA = {"channels": 16, "depth": 1, "n_codebooks": 4, "codebook_size": 32, "codebook_dim": 4}
TINY_MASKER = {"dim": 32, "depth": 1, "heads": 2, "ffn_dim": 64, "cond_hidden": 16}
TINY_DAC = {"encoder_hidden_size": 4, "decoder_hidden_size": 16, "n_codebooks": 2,
            "codebook_size": 32}
TINY_RESUNET = {"n_fft": 256, "hop_length": 64, "widths": (4, 8), "strides": ((2, 2), (1, 2)),
                "cond_dim": 16}


def _mica(tiny: bool):
    from .codecs.mica import MicaCodec, MicaConfig

    return MicaCodec(MicaConfig(**TINY_MICA) if tiny else MicaConfig())


def _dac(tiny: bool):
    from .codecs.dac import DACCodec

    return DACCodec.from_config("16k", **(TINY_DAC if tiny else {}))


def _codecsep(members: int | str | None = None) -> Callable[[bool], Bench]:
    """The shipped model as it runs (its inference settings, e.g. shifts and the code-stream
    members, count); `members`: only those maskers of its ensemble, on both paths (`--members`)."""

    def build(tiny: bool) -> Bench:
        from .separators.masker import MaskerConfig
        from .separators.separator import Separator, SeparatorConfig

        sep = Separator.load() if not tiny else Separator(
            SeparatorConfig(masker=MaskerConfig(**TINY_MASKER)), codec=_mica(tiny))
        if members is not None:
            sep.members = members
        return separator_bench(sep)

    return build


def _hierarchical(tiny: bool) -> Bench:
    """The two-stage separator: the shipped audio encoder's architecture, stage 1, the masker."""
    from .separators.hierarchical import HierarchicalConfig, HierarchicalSeparator
    from .separators.masker import MaskerConfig
    from .text.audio_encoder import AudioEncoder, AudioEncoderConfig

    audio = AudioEncoder(AudioEncoderConfig(n_bands=16, channels=16, depth=2) if tiny
                         else AudioEncoder.load().config)
    masker = MaskerConfig(**TINY_MASKER, cond_dim=2 * audio.config.embed_dim) if tiny else \
        MaskerConfig(cond_dim=2 * audio.config.embed_dim)
    cfg = HierarchicalConfig(masker=masker, audio=audio.config,
                             **({"stage1_hidden": 32} if tiny else {}))
    return separator_bench(HierarchicalSeparator(cfg, codec=_mica(tiny), audio_encoder=audio))


def _codecsep_paper(tiny: bool) -> Bench:
    from dataclasses import replace

    from .separators.masker import PAPER_DAC16K
    from .separators.separator import Separator, SeparatorConfig

    codec = _dac(tiny)
    small = {"dim": 32, "depth": 1, "heads": 2, "ffn_dim": 64} if tiny else {}
    masker = replace(PAPER_DAC16K, latent_dim=codec.latent_dim, **small)
    return separator_bench(Separator(SeparatorConfig(codec="dac-16k", masker=masker), codec=codec))


def _resunet(config_name: str):
    def build(tiny: bool) -> Bench:
        from dataclasses import replace

        from .separators.resunet import CONFIGS, ResUNetSeparator

        cfg = CONFIGS[config_name]
        return resunet_bench(ResUNetSeparator(replace(cfg, **TINY_RESUNET) if tiny else cfg))

    return build


ROWS: dict[str, Row] = {
    "codecsep": Row("ours: Mica MDCT codec + the per-bin median of three maskers' masks (FiLM "
                    "Transformer over frames; band-split dual-path; band-split with local time "
                    "attention) on waveforms, then the spectral post-filter; code streams run "
                    "the third alone (30-s windows)",
                    _codecsep()),
    "codecsep-members12": Row("ours with --members 1,2: the mean of the first two maskers' masks "
                              "(the default of sessions 12-17, + the post-filter)", _codecsep("1,2")),
    "codecsep-members1": Row("ours with --members 1: Mica + the FiLM Transformer over frames alone "
                             "(the default before session 12)", _codecsep(1)),
    "hierarchical": Row("ours, two-stage: + aligned audio encoder and stage 1 (HSM-TSS-style)",
                        _hierarchical),
    "codecsep-paper": Row("CodecSep paper: DAC-16k + 16-layer masker (PAPER_DAC16K)",
                          _codecsep_paper, heavy=True),
    "resunet30": Row("AudioSep ResUNet30, published config (32 kHz, no CLAP)",
                     _resunet("resunet30"), heavy=True),
    "resunet-compact": Row("our compact ResUNet peer (16 kHz)", _resunet("compact")),
    "mica": Row("Mica codec alone", lambda tiny: codec_bench(_mica(tiny))),
    "dac-16k": Row("DAC-16k codec alone", lambda tiny: codec_bench(_dac(tiny)), heavy=True),
}


# =============================================================================== measuring
def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MB.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec (getrusage's ru_maxrss
    would carry over the high-water mark of the parent that forked the probe).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe_memory(name: str, seconds: float, tiny: bool) -> dict:
    """Run in a fresh process: RSS after building the model and input, and after one run."""
    torch.set_num_threads(1)
    bench = ROWS[name].build(tiny)
    wav = _probe_input(bench.sample_rate, seconds)[0]
    before = peak_rss_mb()
    with torch.inference_mode():
        bench.run(wav)
    return {"baseline_mb": before, "peak_mb": peak_rss_mb()}


def memory_in_subprocess(name: str, seconds: float, tiny: bool, timeout: float = 3600) -> dict:
    import codecsep

    src = str(Path(codecsep.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "codecsep.bench", "--probe", name, str(seconds)]
    result = subprocess.run(cmd + (["--tiny"] if tiny else []), capture_output=True, text=True,
                            env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise CodecSepError(f"memory probe {name} ({seconds} s) failed: "
                            f"{(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# =============================================================================== the run
@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...] = tuple(ROWS)
    seconds: float = 10.0
    repeats: int = 5
    threads: tuple[int, ...] = (1, 2)
    cost_seconds: float = 1.0
    memory_seconds: tuple[float, ...] = (10.0, 600.0)
    heavy: bool = False
    tiny: bool = False  # tiny random models: checks the pipeline in seconds (tests)

    def __post_init__(self):
        unknown = [m for m in self.models if m not in ROWS]
        if unknown:
            raise CodecSepError(f"unknown bench model(s) {unknown}: choose from {', '.join(ROWS)}")
        if self.repeats < 1 or self.seconds <= 0 or self.cost_seconds <= 0:
            raise CodecSepError("--repeats must be >= 1 and durations > 0")


def bench_row(name: str, cfg: BenchConfig) -> dict:
    spec = ROWS[name]
    bench = spec.build(cfg.tiny)
    with torch.inference_mode():
        costs = bench.costs(cfg.cost_seconds)
        # again on the timed length (10 s), through the windows: attention grows with the window
        window = bench.costs(cfg.seconds) if cfg.seconds != cfg.cost_seconds else costs
    row = {"model": name, "description": spec.description, "sample_rate": bench.sample_rate,
           "params": count_parameters(bench.module), "macs_waveform": costs["waveform"],
           "macs_codes": costs["codes"], "macs_parts": costs["parts"],
           "macs_waveform_timed": window["waveform"], "macs_codes_timed": window["codes"],
           "notes": bench.notes,
           "timed": not spec.heavy or cfg.heavy, "rtf": {}, "rtf_codes": {}, "memory": {}}
    if not row["timed"]:
        return row
    wav = _probe_input(bench.sample_rate, cfg.seconds)[0]  # (1, T)
    codes = bench.codes_of(wav) if bench.codes_of else None
    for t in cfg.threads:
        row["rtf"][str(t)] = real_time_factor(lambda: bench.run(wav), cfg.seconds, t,
                                              cfg.repeats)["wall"]
        if codes is not None:
            row["rtf_codes"][str(t)] = real_time_factor(lambda: bench.run_codes(codes), cfg.seconds,
                                                        t, cfg.repeats)["wall"]
    for seconds in cfg.memory_seconds:
        row["memory"][f"{seconds:g}"] = memory_in_subprocess(name, seconds, cfg.tiny)
    return row


def add_speedups(rows: list[dict]) -> None:
    """row["speedup"][peer][threads] = peer RTF / row RTF, for peers timed in the same run."""
    timed = {r["model"]: r for r in rows if r["rtf"]}
    for r in rows:
        r["speedup"] = {peer: {t: timed[peer]["rtf"][t] / v for t, v in r["rtf"].items()
                               if t in timed[peer]["rtf"] and v > 0}
                        for peer in PEERS if peer in timed and peer != r["model"] and r["rtf"]}


def run_bench(cfg: BenchConfig, out_dir="results/bench") -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in tqdm(cfg.models, desc="bench", unit="model"):
        rows.append(bench_row(name, cfg))
    add_speedups(rows)
    result = {"config": asdict(cfg), "rows": rows, "command": bench_command(cfg),
              "machine": machine_info(), "codecsep_version": __version__,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    (out / "bench.md").write_text(bench_markdown(result))
    return result


def machine_info() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load_average": ([round(v, 2) for v in os.getloadavg()]
                             if hasattr(os, "getloadavg") else None)}


def bench_command(cfg: BenchConfig) -> str:
    args = ["codecsep", "bench"]
    defaults = BenchConfig()
    if cfg.models != defaults.models:
        args += ["--models", *cfg.models]
    for flag in ("seconds", "repeats", "cost_seconds"):
        if getattr(cfg, flag) != getattr(defaults, flag):
            args += [f"--{flag.replace('_', '-')}", f"{getattr(cfg, flag):g}"]
    for flag in ("threads", "memory_seconds"):
        if getattr(cfg, flag) != getattr(defaults, flag):
            args += [f"--{flag.replace('_', '-')}", *(f"{v:g}" for v in getattr(cfg, flag))]
    args += ["--heavy"] if cfg.heavy else []
    args += ["--tiny"] if cfg.tiny else []
    return shlex.join(args)


# =============================================================================== tables
def _g(macs) -> str:
    return "–" if macs is None else f"{macs / 1e9:.3g}"


def _x(d: dict, key: str, digits: int = 3) -> str:
    v = d.get(key)
    return "–" if v is None else f"{v:.{digits}g}"


def macs_counted(config: dict) -> str:
    """How the table's MACs were counted (the bench's own notes and the README say the same)."""
    return (f"counted on {config['cost_seconds']:g} s as AudioSep counts, and on {config['seconds']:g} s, "
            f"through the separators' windows as they run (attention grows with the window)")


def cost_table(result: dict) -> list[str]:
    """Markdown lines: one row per model (params, GMACs/s, RTF, memory, speed-ups)."""
    mem_keys = [f"{s:g}" for s in result["config"]["memory_seconds"]]
    threads = [str(t) for t in result["config"]["threads"]]
    timed_len = f"{result['config']['seconds']:g} s"
    head = (["model", "params (M)", "GMACs/s waveform", "GMACs/s codes",
             f"GMACs/s waveform, {timed_len}", f"GMACs/s codes, {timed_len}"]
            + [f"RTF {t} thr" for t in threads] + [f"RTF codes {t} thr" for t in threads]
            + [f"peak RSS {k} s (MB)" for k in mem_keys] + ["speed-up (1 thr)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        speed = ", ".join(f"{v[threads[0]]:.3g}x vs {p}" for p, v in r.get("speedup", {}).items()
                          if threads[0] in v)
        cells = ([r["model"], f"{r['params'] / 1e6:.2f}", _g(r["macs_waveform"]),
                  _g(r["macs_codes"]), _g(r.get("macs_waveform_timed")),
                  _g(r.get("macs_codes_timed"))] + [_x(r["rtf"], t) for t in threads]
                 + [_x(r["rtf_codes"], t) for t in threads]
                 + [_x({k: v["peak_mb"] for k, v in r["memory"].items()}, k, 4) for k in mem_keys]
                 + [speed or "–"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def bench_markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# codecsep bench", "", *cost_table(result), "",
             (f"MACs per second of audio {macs_counted(result['config'])}; RTF = "
              f"processing time / audio time on {result['config']['seconds']:g} s (median of "
              f"{result['config']['repeats']}); '–' = not measured (heavy rows need --heavy)."),
             (f"Machine: {m['cpu_count']} CPUs, {m['processor']}, torch {m['torch']}, load "
              f"average {m['load_average']} at the end."), ""]
    lines += [f"- {r['model']}: {r['description']}. {r['notes']}" for r in result["rows"]]
    return "\n".join(lines + ["", f"Reproduce: `{result['command']}`", ""])


# =============================================================================== CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="parameters, MACs, speed and memory of each model",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="MODEL",
                   help=f"rows to measure (default all: {', '.join(ROWS)})")
    p.add_argument("--out", default="results/bench", help="output folder (default %(default)s)")
    p.add_argument("--heavy", action="store_true",
                   help="also time and memory-probe the heavy rows (DAC, ResUNet30)")
    p.add_argument("--seconds", type=positive_float, default=10.0,
                   help="audio length for timing (default %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs after a warm-up (default %(default)s)")
    p.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2],
                   help="torch thread counts to time each row on (default 1 2)")
    p.add_argument("--cost-seconds", type=positive_float, default=1.0,
                   help="audio length for MAC counts (default %(default)s)")
    p.add_argument("--memory-seconds", type=float, nargs="*", default=[10.0, 600.0],
                   help="input lengths for the peak-memory probes (none to skip)")
    p.add_argument("--tiny", action="store_true", help="tiny random models (pipeline check)")
    p.set_defaults(func=_run)
    from .codecs.evaluate import register_codec_bench  # `codecsep bench codec`
    from .deploy_bench import register_deploy  # `codecsep bench deploy`

    extra = p.add_subparsers(dest="bench_command", metavar="{codec,deploy}")
    register_codec_bench(extra)
    register_deploy(extra)


def _run(args: argparse.Namespace) -> int:
    cfg = BenchConfig(models=tuple(args.models), seconds=args.seconds, repeats=args.repeats,
                      threads=tuple(args.threads), cost_seconds=args.cost_seconds,
                      memory_seconds=tuple(args.memory_seconds), heavy=args.heavy,
                      tiny=args.tiny)
    result = run_bench(cfg, args.out)
    print("\n".join(cost_table(result)))
    print(f"-> {Path(args.out) / 'bench.json'}")
    return 0


def _probe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m codecsep.bench")
    p.add_argument("--probe", nargs=2, metavar=("MODEL", "SECONDS"), required=True)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(probe_memory(args.probe[0], float(args.probe[1]), args.tiny)))
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))
