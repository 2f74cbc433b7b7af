"""`codecsep bench deploy`: what deployment costs in quality and speed — ONNX and streaming.

    codecsep bench deploy                                   # shipped model, 20 two_source mixtures
    codecsep bench deploy --model runs/sep/export --n 50 --out results/deploy --overwrite

1. Exports the separator to ONNX (a temporary folder, see `codecsep.export`) and measures its
   parity with PyTorch: SI-SDR of the ONNX Runtime target against the PyTorch target on the first
   `--n` mixtures of the fixed evaluation set (min and mean over the scored items; the SI-SDR
   metric caps at 100 dB), plus both models' SI-SDRi against the references.
2. Times both on ONE thread: real-time factor (processing time / audio time, median of
   `--repeats` runs after a warm-up) of waveform separation of `--seconds` of noise, one prompt.
3. Streams the same mixtures block by block (`StreamingSeparator`; 200 ms blocks with 2 s of
   context, and 100 ms with 1 s; `--lookahead-ms` lets the masker see that much more audio to
   the right of what it emits, at that much more latency): algorithmic latency, SI-SDR of the
   streamed target against the offline one, SI-SDRi offline and streamed, and the real-time
   factor of streaming on one thread.

Targets are the protocol's targets (`codecsep eval`'s), with label prompts. Writes
`deploy.json` and `deploy.md` into `--out` (default results/deploy); `codecsep report` puts the
table in the README.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .errors import CodecSepError, positive_float, positive_int

OUT_FILES = ("deploy.json", "deploy.md")
STREAMING = ((0.2, 2.0), (0.1, 1.0))  # (block, context) seconds


@dataclass(frozen=True)
class DeployConfig:
    model: str | None = None  # separator checkpoint dir; None: the shipped default
    protocol: str = "two_source"
    n: int = 20
    eval_dir: str = "data/eval"
    manifest: str = "data/corpus/manifest.jsonl"  # writes the eval set if it does not exist
    seconds: float = 10.0
    repeats: int = 5
    streaming: tuple[tuple[float, float], ...] = STREAMING
    lookahead_ms: float = 0.0  # streaming lookahead, rounded up to whole hops

    def __post_init__(self):
        from .evaluate import PROTOCOL_TARGETS

        if self.protocol not in PROTOCOL_TARGETS:
            raise CodecSepError(f"unknown protocol {self.protocol!r}: use "
                                f"{', '.join(PROTOCOL_TARGETS)}")
        if self.n < 1 or self.repeats < 1 or self.seconds <= 0:
            raise CodecSepError("--n and --repeats must be >= 1 and --seconds > 0")
        if any(b <= 0 or c < 0 for b, c in self.streaming):
            raise CodecSepError("streaming blocks must be > 0 s and contexts >= 0 s")
        if self.lookahead_ms < 0:
            raise CodecSepError("--lookahead-ms must be >= 0")

    def command(self) -> str:
        """The command line that reproduces this run (non-default flags only)."""
        args, defaults = ["codecsep", "bench", "deploy"], DeployConfig()
        for flag in ("model", "protocol", "n", "eval_dir", "manifest", "seconds", "repeats",
                     "lookahead_ms"):
            value = getattr(self, flag)
            if value != getattr(defaults, flag):
                args += [f"--{flag.replace('_', '-')}", f"{value:g}" if isinstance(value, float)
                         else str(value)]
        return shlex.join(args)


# =============================================================================== measuring
def eval_groups(cfg: DeployConfig) -> tuple[object, dict]:
    """The fixed evaluation set and {mixture index: [EvalItem]} for its first n mixtures."""
    from .evaluate import PromptSource, ensure_eval_set, eval_items

    eval_set = ensure_eval_set(cfg.protocol, cfg.n, cfg.eval_dir, cfg.manifest)
    groups: dict[int, list] = {}
    for it in eval_items(eval_set, cfg.n, cfg.protocol, "label", PromptSource(None)):
        groups.setdefault(it.index, []).append(it)
    return eval_set, groups


def summary(values) -> dict:
    """mean, median, 95% CI, n (as `codecsep eval`) and the minimum of a list of floats."""
    from .evaluate import describe

    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {**describe(arr), "min": float(finite.min()) if len(finite) else None}


def _references(m, items) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixture (P, T), references (P, T)) at 16 kHz for the items of one mixture."""
    ref = torch.from_numpy(m.sources[[it.source_index for it in items]])
    return torch.from_numpy(m.mixture).expand_as(ref), ref


def onnx_parity(separator, onnx, eval_set, groups: dict) -> dict:
    """SI-SDR of the ONNX target vs the PyTorch target per item; both models' SI-SDRi."""
    from .evaluate import run_model
    from .metrics import si_sdr, si_sdr_improvement

    rows = {"parity": [], "max_abs_diff": [], "si_sdri_torch": [], "si_sdri_onnx": []}
    for index, items in tqdm(groups.items(), desc="onnx parity", unit="mix"):
        m = eval_set[index]
        ours = run_model(separator, m.mixture, m.sources, items)["target"]  # (P, T)
        theirs = run_model(onnx, m.mixture, m.sources, items)["target"]
        mix, ref = _references(m, items)
        rows["parity"] += si_sdr(theirs, ours).tolist()
        rows["max_abs_diff"].append(float((theirs - ours).abs().max()))
        rows["si_sdri_torch"] += si_sdr_improvement(ours, ref, mix).tolist()
        rows["si_sdri_onnx"] += si_sdr_improvement(theirs, ref, mix).tolist()
    return {"si_sdr_vs_torch": summary(rows["parity"]),
            "max_abs_diff": max(rows["max_abs_diff"]),
            "si_sdri_torch": summary(rows["si_sdri_torch"]),
            "si_sdri_onnx": summary(rows["si_sdri_onnx"])}


def streaming_quality(separator, eval_set, groups: dict, block: float, context: float,
                      lookahead: float = 0.0) -> dict:
    """`streaming_vs_offline` on every mixture (values are per mixture, averaged over prompts)."""
    from .audio import resample
    from .evaluate import SAMPLE_RATE
    from .separators.streaming import streaming_vs_offline

    sr, rows = separator.sample_rate, []
    for index, items in tqdm(groups.items(), desc=f"stream {block * 1000:g} ms", unit="mix"):
        m = eval_set[index]
        mix, ref = _references(m, items)
        rows.append(streaming_vs_offline(
            separator, resample(mix[:1], SAMPLE_RATE, sr), [it.prompt for it in items],
            block, context, references=resample(ref, SAMPLE_RATE, sr)[:, None],
            lookahead_seconds=lookahead))
    return {"block_ms": 1000 * block, "context_ms": 1000 * context,
            "lookahead_ms": rows[0]["lookahead_ms"], "latency_ms": rows[0]["latency_ms"],
            **{k: summary([r[k] for r in rows])
               for k in ("si_sdr_stream_vs_offline", "si_sdri_offline", "si_sdri_stream")}}


def real_time_factors(separator, onnx, cfg: DeployConfig) -> dict:
    """Median RTF on one thread of PyTorch, ONNX Runtime and each streaming setting."""
    from .separators.streaming import StreamingSeparator, stream_all
    from .timing import real_time_factor

    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, int(cfg.seconds * separator.sample_rate), generator=gen)
    cond = torch.nn.functional.normalize(
        torch.randn(1, separator.config.masker.cond_dim, generator=gen), dim=-1)

    def stream(block: float, context: float):
        s = StreamingSeparator(separator, None, block, context, cond=cond,
                               lookahead_seconds=cfg.lookahead_ms / 1000)
        return stream_all(s, audio, s.block)

    def rtf(fn) -> float:
        return real_time_factor(fn, cfg.seconds, 1, cfg.repeats)["wall"]

    return {"torch": rtf(lambda: separator.separate(audio, None, cond=cond)),
            "onnx": rtf(lambda: onnx.separate(audio, cond=cond)),
            "streaming": [rtf(lambda b=b, c=c: stream(b, c)) for b, c in cfg.streaming]}


# =============================================================================== the run
def check_out_dir(out_dir, overwrite: bool) -> Path:
    """`out_dir`, refusing (before any work) to replace earlier results without `overwrite`."""
    out = Path(out_dir)
    taken = [name for name in OUT_FILES if (out / name).exists()]
    if taken and not overwrite:
        raise CodecSepError(f"{out} already holds {', '.join(taken)} (pass --overwrite to "
                            "replace them, or another --out)")
    return out


def export_to_temp(separator, tmp: Path, source) -> tuple[object, dict]:
    """Export to `tmp`/onnx and open it: (OnnxSeparator, facts about the export)."""
    from .export import MANIFEST, OPSET, OnnxSeparator, export_onnx

    t0 = time.perf_counter()
    out = export_onnx(separator, tmp / "onnx", source=source)
    seconds = time.perf_counter() - t0
    files = json.loads((out / MANIFEST).read_text())["files"]
    size = sum((out / f).stat().st_size for f in files.values())
    onnx = OnnxSeparator(out, threads=1, text_encoder=separator.text_encoder)
    return onnx, {"opset": OPSET, "graphs": sorted(files), "size_mb": size / 1e6,
                  "export_seconds": seconds}


def model_info(separator, cfg: DeployConfig) -> dict:
    meta = getattr(separator, "meta", None) or {}
    return {"model": cfg.model or "default", "model_fingerprint": meta.get("sha256"),
            "model_step": meta.get("step"), "sample_rate": separator.sample_rate}


def measure(separator, cfg: DeployConfig) -> dict:
    """Every deployment number for `separator` (see the module docstring)."""
    from .evaluate import eval_set_fingerprint

    eval_set, groups = eval_groups(cfg)
    with tempfile.TemporaryDirectory(prefix="codecsep-deploy-") as tmp:
        onnx, export_facts = export_to_temp(separator, Path(tmp), cfg.model or "default")
        parity = onnx_parity(separator, onnx, eval_set, groups)
        rtf = real_time_factors(separator, onnx, cfg)
    streaming = [{**streaming_quality(separator, eval_set, groups, b, c, cfg.lookahead_ms / 1000),
                  "rtf": r}
                 for (b, c), r in zip(cfg.streaming, rtf["streaming"])]
    return {**model_info(separator, cfg), "protocol": cfg.protocol, "eval_set": str(eval_set.root),
            "eval_set_fingerprint": eval_set_fingerprint(eval_set), "n_mixtures": len(groups),
            "n_items": sum(len(v) for v in groups.values()),
            "onnx": {**export_facts, **parity, "rtf": rtf["onnx"]},
            "torch": {"rtf": rtf["torch"], "window_seconds": separator.config.window_seconds},
            "streaming": streaming}


def load_codecsep(model: str | None):
    """The CodecSep `Separator` at `model` (None: shipped); other kinds have no ONNX export."""
    from .separators.api import get_separator
    from .separators.separator import Separator

    separator = get_separator(model)
    if not isinstance(separator, Separator):
        raise CodecSepError(f"{model or 'the default model'} is a {type(separator).__name__}: "
                            "bench deploy measures CodecSep separators (ONNX export)")
    return separator


def run_deploy_bench(cfg: DeployConfig, out_dir="results/deploy", overwrite: bool = False,
                     separator=None) -> dict:
    """Measure on one thread and write deploy.json + deploy.md (atomically) into `out_dir`."""
    from .audio import atomic_write_bytes
    from .bench import machine_info

    out = check_out_dir(out_dir, overwrite)
    separator = load_codecsep(cfg.model) if separator is None else separator
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = measure(separator.eval(), cfg)
    finally:
        torch.set_num_threads(previous)
    result.update(config=asdict(cfg), rtf_seconds=cfg.seconds, rtf_repeats=cfg.repeats,
                  threads=1, command=cfg.command(), machine=machine_info(),
                  codecsep_version=__version__, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_bytes(out / OUT_FILES[0], json.dumps(result, indent=2).encode(), overwrite)
    atomic_write_bytes(out / OUT_FILES[1], deploy_markdown(result).encode(), overwrite)
    return result


# =============================================================================== tables
def _db(d: dict | None, key: str = "mean") -> str:
    v = (d or {}).get(key)
    return "–" if v is None else f"{v:.2f}"


def deploy_table(result: dict) -> list[str]:
    """Markdown lines: PyTorch, ONNX Runtime and each streaming setting, one row each."""
    on, st = result["onnx"], result["streaming"]
    lines = [("| runtime | algorithmic latency | RTF 1 thr | SI-SDR vs PyTorch offline, mean / "
              "min (dB) | SI-SDRi (dB) |"), "|---|---|---|---|---|",
             (f"| PyTorch, offline | whole input ({result['torch']['window_seconds']:g} s windows) "
              f"| {result['torch']['rtf']:.3g} | reference | {_db(on['si_sdri_torch'])} |"),
             (f"| ONNX Runtime, offline (opset {on['opset']}) | whole input | {on['rtf']:.3g} | "
              f"{_db(on['si_sdr_vs_torch'])} / {_db(on['si_sdr_vs_torch'], 'min')} | "
              f"{_db(on['si_sdri_onnx'])} |")]
    for s in st:
        look = f", {s['lookahead_ms']:g} ms lookahead" if s.get("lookahead_ms") else ""
        lines.append(f"| PyTorch, streaming {s['block_ms']:g} ms blocks, {s['context_ms'] / 1000:g}"
                     f" s context{look} | {s['latency_ms']:g} ms | {s['rtf']:.3g} | "
                     f"{_db(s['si_sdr_stream_vs_offline'])} / "
                     f"{_db(s['si_sdr_stream_vs_offline'], 'min')} | {_db(s['si_sdri_stream'])} |")
    return lines


def deploy_notes(result: dict) -> str:
    """One paragraph: what was measured, on what, with which model."""
    step = f", step {result['model_step']}" if result.get("model_step") is not None else ""
    m = result["machine"]
    return (f"Model `{result['model']}`{step}; {result['n_items']} items ({result['n_mixtures']} "
            f"mixtures) of `{result['eval_set']}`, label prompts. RTF = processing time / audio "
            f"time on {result['rtf_seconds']:g} s, median of {result['rtf_repeats']}, one thread "
            f"(machine: {m['cpu_count']} CPUs, {m['processor']}, load average "
            f"{m['load_average']}). Streaming SI-SDR is per mixture; latency excludes compute. "
            f"Largest ONNX-vs-PyTorch sample difference {result['onnx']['max_abs_diff']:.2g}; "
            f"ONNX graphs {result['onnx']['size_mb']:.1f} MB.")


def deploy_markdown(result: dict) -> str:
    return "\n".join(["# codecsep bench deploy", "", *deploy_table(result), "",
                      deploy_notes(result), "", f"Reproduce: `{result['command']}`", ""])


# =============================================================================== CLI
def register_deploy(sub) -> None:
    """Add `deploy` to `sub` (the `codecsep bench` subcommands)."""
    from .evaluate import PROTOCOL_TARGETS

    p = sub.add_parser("deploy", help="ONNX parity and speed, streaming latency and quality",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="separator checkpoint dir (default: shipped)")
    p.add_argument("--eval-dir", default="data/eval", help="evaluation sets (default %(default)s)")
    p.add_argument("--manifest", default="data/corpus/manifest.jsonl",
                   help="corpus manifest that writes the evaluation set if it is missing")
    p.add_argument("--protocol", default="two_source", choices=tuple(PROTOCOL_TARGETS),
                   help="evaluation protocol (default %(default)s)")
    p.add_argument("--n", type=positive_int, default=20,
                   help="mixtures to score (default %(default)s)")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="audio length for the RTF")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs after a warm-up")
    p.add_argument("--lookahead-ms", type=float, default=0.0,
                   help="streaming lookahead added to the latency (default %(default)s)")
    p.add_argument("--out", default="results/deploy", help="output folder (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace deploy.json / deploy.md")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = DeployConfig(model=args.model, protocol=args.protocol, n=args.n, eval_dir=args.eval_dir,
                       manifest=args.manifest, seconds=args.seconds, repeats=args.repeats,
                       lookahead_ms=args.lookahead_ms)
    result = run_deploy_bench(cfg, args.out, overwrite=args.overwrite)
    print("\n".join(deploy_table(result)))
    print(f"-> {Path(args.out) / OUT_FILES[0]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m codecsep.deploy_bench [flags]` runs `codecsep bench deploy [flags]`."""
    from .cli import main as cli_main

    return cli_main(["bench", "deploy", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
