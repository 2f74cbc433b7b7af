"""`codecsep speech eval`: Codecformer, CodeSep and the FCTS / FSTC baselines, side by side.

    codecsep speech eval --codecformer runs/codecformer/checkpoint --codesep runs/codesep/checkpoint
    codecsep speech eval --n 10 --no-visqol                  # shipped models (skipped if absent)

On the first `--n` mixtures of the fixed two_speaker evaluation set (the one `codecsep eval`
uses: drawn from the corpus test split, whose speakers never occur in training), one row each:

- `mixture`: the floor, both estimates are the mixture (SI-SDRi = 0 dB);
- `codecformer`: Codecformer on the codec's continuous latent (no bitstream), with its MACs per
  second of audio and those of the Sepformer structure (`SepformerCost`, never trained);
- `codesep`: CodeSep, storing each speaker's base tokens (2 x log2(M) bits x 50 Hz: 1 kbps on
  Mica); `codesep-oracle-base`: the clean speakers' true base tokens through CodeSep's
  auxiliary-token predictor and the codec, i.e. what a perfect base-token separator would give;
- `fcts@R` / `fstc@R`: compress-then-separate and separate-then-compress with the same codec and
  the Codecformer, at CodeSep's bitrate and at every `--kbps`;
- `codec-ceiling@R`: each clean speaker through the codec at R (R/2 per speaker): the limit the
  codec itself sets at that rate.

Metrics per row, means over both speakers of each mixture in their best order: SI-SDR,
SI-SDRi, ViSQOL (speech mode, 16 kHz; `--no-visqol` skips it), STOI and PESQ (wb) when pystoi /
pesq are installed. `speech.json` (rows, per-item scores, the command, the set's id) and
`speech.md` are rewritten after every row, so an interrupted run resumes; a row computed with
other settings, weights or set, or one this run would drop, is only replaced with --overwrite
(which still reuses the rows whose settings, weights and set are unchanged).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import CodecSepError

PROTOCOL = "two_speaker"
DESCRIPTIONS = {
    "mixture": "floor: both estimates are the mixture (SI-SDRi = 0 dB)",
    "codecformer": "Codecformer on the codec's continuous latent (no bitstream)",
    "codesep": "CodeSep: each speaker's base tokens are stored, the auxiliary tokens predicted",
    "codesep-oracle-base": ("the clean speakers' true base tokens through CodeSep's auxiliary-"
                            "token predictor: CodeSep with a perfect base-token separator"),
    "fcts": "compress then separate: the mixture through the codec, then Codecformer",
    "fstc": "separate then compress: Codecformer, then each speaker through the codec",
    "codec-ceiling": "each clean speaker through the codec: the codec's own limit at that rate",
}
SCORES = ("si_sdr", "si_sdri", "visqol", "stoi", "pesq")


# =============================================================================== systems
class MixtureFloor:
    """Both estimates are the mixture itself: (T,) or (C, T) -> (2, C, T)."""

    def separate_speakers(self, audio) -> torch.Tensor:
        from .separators.base import as_channels

        wav = as_channels(audio)
        return torch.stack([wav, wav])


class SpeakerCodecCeiling:
    """Each clean speaker (2, T) through `codec` at k codebooks -> (2, 1, T)."""

    needs_references = True

    def __init__(self, codec, n_quantizers: int):
        self.codec, self.n_quantizers = codec, n_quantizers

    def separate_speakers(self, audio, sources) -> torch.Tensor:
        from .separators.codesep import transcode

        return transcode(self.codec, torch.as_tensor(sources).float(), self.n_quantizers)[:, None]


class OracleBaseTokens:
    """The clean speakers' (2, T) first-codebook tokens decoded by CodeSep -> (2, 1, T)."""

    needs_references = True

    def __init__(self, codesep):
        self.codesep = codesep

    def separate_speakers(self, audio, sources) -> torch.Tensor:
        src = torch.as_tensor(sources).float()
        base = self.codesep.target_codes(src[None])[0, :, :1]  # (2, 1, F)
        return self.codesep.decode(base, src.shape[-1])


class Baseline:
    """FCTS or FSTC (`codesep.compress_then_separate` / `separate_then_compress`) as a model."""

    def __init__(self, solution: str, separator, codec, n_quantizers: int):
        from .separators.codesep import compress_then_separate, separate_then_compress

        self.fn = {"fcts": compress_then_separate, "fstc": separate_then_compress}[solution]
        self.separator, self.codec, self.n_quantizers = separator, codec, n_quantizers

    def separate_speakers(self, audio) -> torch.Tensor:
        return self.fn(audio, self.separator, self.codec, self.n_quantizers)


@dataclass
class System:
    """One row to compute: a `separate_speakers` model and what its scores depend on."""

    name: str
    kind: str
    model: object
    depends: dict  # weight fingerprints that define the scores
    bitrate: float | None = None  # stored bits per second (None: no bitstream)
    streams: int | None = None  # stored code streams: 1 (the mixture, FCTS) or 1 per speaker
    codebooks: int | None = None  # codebooks per stream
    macs_per_s: float | None = None
    extra: dict = field(default_factory=dict)


def kbps_name(kind: str, bitrate: float) -> str:
    return f"{kind}@{bitrate / 1000:g}kbps"


def fingerprint(model) -> str | None:
    """The weights' sha256, plus the post-filter when one runs (it changes the scores)."""
    sha = (getattr(model, "meta", None) or {}).get("sha256")
    pf = getattr(getattr(model, "config", None), "postfilter", None)
    tag = pf.tag if pf is not None else ""
    return f"{sha}+{tag}" if sha and tag else sha


def separator_macs(model, sample_rate: int) -> float:
    """MACs per second of audio of `model.separate_speakers` on 1 s (codec included; the
    post-filter's FFTs, which the counter does not see, by `postfilter_macs`: two speakers are
    a target and a residual)."""
    from .flops import macs_per_second
    from .separators.postfilter import PostFilter, postfilter_macs

    pf = getattr(getattr(model, "config", None), "postfilter", PostFilter())
    return (macs_per_second(model.separate_speakers, torch.zeros(1, sample_rate), 1.0)
            + postfilter_macs(pf, sample_rate))


def sepformer_cost(sample_rate: int) -> dict:
    """Parameters and MACs per second of the Sepformer structure, counted on shapes alone."""
    from .flops import count_parameters, macs_per_second
    from .separators.codecformer import SepformerCost

    with torch.device("meta"):
        sep = SepformerCost().eval()
    wav = torch.empty(1, 1, sample_rate, device="meta")
    return {"params": count_parameters(sep), "macs_per_s": macs_per_second(sep, wav, 1.0)}


def add_costs(systems: list[System], sample_rate: int) -> dict:
    """Set the MACs per second of the Codecformer-based rows (CodeSep's LSTMs would count as 0);
    returns {"sepformer": ..., "codecformer": ...} parameters and MACs per second."""
    from .flops import count_parameters

    cost = {"sepformer": sepformer_cost(sample_rate)}
    for s in systems:
        if s.kind in ("codecformer", "fcts", "fstc"):
            s.macs_per_s = separator_macs(s.model, sample_rate)
        if s.kind == "codecformer":
            s.extra["sepformer_macs_per_s"] = cost["sepformer"]["macs_per_s"]
            cost["codecformer"] = {"params": count_parameters(s.model.net),
                                   "macs_per_s": s.macs_per_s}
    return cost


def rates(codec, codesep, kbps) -> list[float]:
    """CodeSep's bitrate (or what it would be on `codec`) and each of `kbps`, ascending."""
    from .separators.codesep import N_SPEAKERS

    own = codesep.bitrate() if codesep is not None else N_SPEAKERS * codec.bitrate(1)
    return sorted({float(own), *(1000.0 * k for k in kbps)})


def coded_systems(codec, codecformer, bitrate: float, skipped: dict) -> list[System]:
    """fcts@R, fstc@R (with a Codecformer) and codec-ceiling@R, each at R bits per second."""
    from .separators.codesep import matched_codebooks

    codec_hash = codec.weights_hash()
    out = []
    for kind, solution, streams in (("fcts", "fcts", 1), ("fstc", "fstc", 2),
                                    ("codec-ceiling", "fstc", 2)):
        name, k = kbps_name(kind, bitrate), matched_codebooks(codec, solution, bitrate)
        if k > codec.n_codebooks:
            skipped[name] = f"needs {k} codebooks per stream, the codec has {codec.n_codebooks}"
        elif kind == "codec-ceiling":
            out.append(System(name, kind, SpeakerCodecCeiling(codec, k), {"codec": codec_hash},
                              bitrate, streams, k))
        elif codecformer is None:
            skipped[name] = "needs a Codecformer as its separator"
        else:
            out.append(System(name, kind, Baseline(solution, codecformer, codec, k),
                              {"codec": codec_hash, "codecformer": fingerprint(codecformer)},
                              bitrate, streams, k))
    return out


def plan_systems(codecformer, codesep, codec, kbps, skipped: dict) -> list[System]:
    """Every row this run computes, in table order; rows that cannot run go to `skipped`."""
    systems = [System("mixture", "mixture", MixtureFloor(), {})]
    if codecformer is not None:
        systems.append(System("codecformer", "codecformer", codecformer,
                              {"codecformer": fingerprint(codecformer)}))
    if codesep is not None:
        depends = {"codesep": fingerprint(codesep)}
        n_aux = codesep.config.n_codebooks - 1
        systems += [System("codesep", "codesep", codesep, depends, codesep.bitrate(), 2, 1,
                           extra={"predicted_codebooks": n_aux}),
                    System("codesep-oracle-base", "codesep-oracle-base", OracleBaseTokens(codesep),
                           depends, codesep.bitrate(), 2, 1, extra={"predicted_codebooks": n_aux})]
    for bitrate in rates(codec, codesep, kbps):
        systems += coded_systems(codec, codecformer, bitrate, skipped)
    return systems


def load_or_skip(kind: str, path: str | None, skipped: dict):
    """The checkpoint at `path` (None: the shipped one), or None with a note in `skipped`."""
    from .separators.registry import model_class

    cls = model_class(kind)
    where = Path(path) if path else cls.default_checkpoint
    if not (where / "config.json").is_file():
        skipped[kind] = (f"no checkpoint at {where}: train one (`codecsep train {kind}`) and "
                         f"pass --{kind} DIR")
        print(f"{kind} skipped: {skipped[kind]}", file=sys.stderr)
        return None
    from .evaluate import SAMPLE_RATE

    model = cls.load(where)
    if model.sample_rate != SAMPLE_RATE:
        raise CodecSepError(f"{where}: runs at {model.sample_rate} Hz, the evaluation set at "
                            f"{SAMPLE_RATE} Hz")
    return model


def rows_codec(codecformer, codesep):
    """The codec of the coded rows: CodeSep's (its tokens define the matched bitrate), else the
    Codecformer's if it has an RVQ, else the shipped Mica."""
    from .codecs import load_codec

    if codesep is not None:
        return codesep.codec
    if codecformer is not None and hasattr(getattr(codecformer.codec, "quantizer", None),
                                            "decode"):
        return codecformer.codec
    return load_codec("mica")


# =============================================================================== the run
@dataclass(frozen=True)
class SpeechEvalConfig:
    codecformer: str | None = None  # checkpoint dir (None: the shipped one)
    codesep: str | None = None
    n: int = 50
    kbps: tuple[float, ...] = (2.0, 4.0, 6.0)  # baseline bitrates besides CodeSep's own
    eval_dir: str = "data/eval"
    manifest: str = "data/corpus/manifest.jsonl"
    visqol: bool = True
    out: str = "results/speech"

    def __post_init__(self):
        if self.n < 1:
            raise CodecSepError(f"--n must be >= 1, got {self.n}")
        if any(k <= 0 for k in self.kbps):
            raise CodecSepError(f"--kbps must be positive, got {list(self.kbps)}")

    def command(self) -> str:
        """The command line that reproduces this evaluation."""
        args, defaults = ["codecsep", "speech", "eval"], SpeechEvalConfig()
        for flag in ("codecformer", "codesep"):
            args += [f"--{flag}", getattr(self, flag)] if getattr(self, flag) else []
        args += ["--n", str(self.n)]
        if self.kbps != defaults.kbps:
            args += ["--kbps", *(f"{k:g}" for k in self.kbps)]
        for flag in ("eval_dir", "manifest", "out"):
            if getattr(self, flag) != getattr(defaults, flag):
                args += [f"--{flag.replace('_', '-')}", str(getattr(self, flag))]
        return shlex.join(args + ([] if self.visqol else ["--no-visqol"]))


def finite_or_none(value):
    """JSON-safe copy: NaN / inf floats become None (null), containers are walked."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def score_row(system: System, identity: dict, scores: dict) -> dict:
    """The JSON row of one system from `evaluate_speech`'s result."""
    from .evaluate import bootstrap_ci

    items = scores["items"]
    si_sdri = [r["si_sdri"] for r in items if math.isfinite(r["si_sdri"])]
    row = {"name": system.name, "kind": system.kind, "description": DESCRIPTIONS[system.kind],
           "bitrate_bps": system.bitrate, "streams": system.streams,
           "codebooks": system.codebooks, "macs_per_s": system.macs_per_s, **system.extra,
           "n": scores["n"], **{k: scores.get(k) for k in SCORES},
           "si_sdri_ci95": list(bootstrap_ci(np.array(si_sdri))), "identity": identity,
           "items": items}
    return finite_or_none(row)


def previous_rows(path: Path, identities: dict, overwrite: bool) -> dict:
    """Rows of an earlier run at `path` that this run can reuse, by name: those whose identity
    (settings, weights, evaluation set) is this run's. Raises if it holds a row this run would
    replace or drop, unless `overwrite`: then those rows are recomputed or dropped (and a file
    that is not a result is ignored); the rest are still reused, as they would come out the same."""
    if not path.is_file():
        return {}
    try:
        rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
    except (ValueError, KeyError, TypeError) as e:
        if overwrite:
            return {}
        raise CodecSepError(f"{path}: not a `codecsep speech eval` result ({e})") from e
    stale = [name for name, r in rows.items() if r.get("identity") != identities.get(name)]
    if stale and not overwrite:
        names = ", ".join(stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
        raise CodecSepError(f"{path} holds rows computed with other settings, weights or set, or "
                            f"that this run would drop ({names}): pass --overwrite to "
                            "recompute, or another --out")
    return {name: r for name, r in rows.items() if name not in stale}


def write_result(out: Path, result: dict) -> None:
    from .audio import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_or_none(result), indent=2, allow_nan=False)
    atomic_write_bytes(out / "speech.json", text.encode("utf-8"), overwrite=True)
    atomic_write_bytes(out / "speech.md", speech_markdown(result).encode("utf-8"), overwrite=True)


def run_speech_eval(cfg: SpeechEvalConfig, overwrite: bool = False) -> dict:
    """Run (or resume) the comparison; returns the result also written to `cfg.out`."""
    from .evaluate import ensure_eval_set, eval_set_dir, eval_set_fingerprint
    from .train.speech import available_metrics, evaluate_speech

    torch.manual_seed(0)
    eval_set = ensure_eval_set(PROTOCOL, cfg.n, cfg.eval_dir, cfg.manifest)
    skipped: dict[str, str] = {}
    codecformer = load_or_skip("codecformer", cfg.codecformer, skipped)
    codesep = load_or_skip("codesep", cfg.codesep, skipped)
    codec = rows_codec(codecformer, codesep).eval()
    systems = plan_systems(codecformer, codesep, codec, cfg.kbps, skipped)
    metrics = available_metrics(visqol=cfg.visqol)
    set_id = {"protocol": PROTOCOL, "path": str(eval_set_dir(cfg.eval_dir, PROTOCOL)),
              "fingerprint": eval_set_fingerprint(eval_set), "size": len(eval_set)}
    base = {"eval_set": set_id["fingerprint"], "n": cfg.n, "metrics": sorted(metrics)}
    identities = {s.name: {**base, "depends": s.depends} for s in systems}
    out = Path(cfg.out)
    rows = previous_rows(out / "speech.json", identities, overwrite)

    cost = add_costs(systems, codec.sample_rate)
    result = {"command": cfg.command(), "n": cfg.n, "eval_set": set_id, "metrics": sorted(metrics),
              "codec": {"id": codec.codec_id, "weights": codec.weights_hash(),
                        "bps_per_codebook": codec.bitrate(1), "n_codebooks": codec.n_codebooks},
              "cost": cost, "skipped": skipped, "complete": False,
              "codecsep_version": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for i, s in enumerate(systems):
        if s.name not in rows:
            scores = evaluate_speech(s.model, eval_set, cfg.n, metrics=metrics,
                                     desc=f"[{i + 1}/{len(systems)}] {s.name}")
            rows[s.name] = score_row(s, identities[s.name], scores)
        result["rows"] = [rows[x.name] for x in systems if x.name in rows]
        write_result(out, result)
    result["complete"] = True
    write_result(out, result)
    return result


# =============================================================================== tables
def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def speech_table(result: dict) -> list[str]:
    """Markdown lines: one row per system (bitrate, streams x codebooks, scores, GMACs/s)."""
    head = ["system", "kbps", "streams x codebooks", "SI-SDR", "SI-SDRi [95% CI]", "ViSQOL",
            "STOI", "PESQ", "GMACs/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        lo, hi = r.get("si_sdri_ci95") or (None, None)
        layout = "–" if r["streams"] is None else f"{r['streams']} x {r['codebooks']}"
        if r.get("predicted_codebooks"):
            layout += f" (+{r['predicted_codebooks']} predicted)"
        kbps = "–" if r["bitrate_bps"] is None else f"{r['bitrate_bps'] / 1000:g}"
        macs = "–" if r["macs_per_s"] is None else f"{r['macs_per_s'] / 1e9:.3g}"
        lines.append(f"| `{r['name']}` | {kbps} | {layout} | {_fmt(r['si_sdr'])} | "
                     f"{_fmt(r['si_sdri'])} [{_fmt(lo)}, {_fmt(hi)}] | {_fmt(r.get('visqol'))} | "
                     f"{_fmt(r.get('stoi'), 3)} | {_fmt(r.get('pesq'))} | {macs} |")
    return lines


def speech_notes(result: dict) -> list[str]:
    """The lines under the table: one paragraph (set, metrics, bitrates, cost), then a legend of
    the systems and the rows that were not run."""
    s, c = result["eval_set"], result["codec"]
    missing = [m for m in ("visqol", "stoi", "pesq") if m not in result["metrics"]]
    text = (f"{result['n']} mixtures of the {s['protocol']} test set `{s['path']}` (fingerprint "
            f"{s['fingerprint']}; its speakers never occur in training). Means over both "
            "speakers of each mixture in their best order; SI-SDR(i) in dB, ViSQOL in speech "
            f"mode at 16 kHz{'; not computed: ' + ', '.join(missing) if missing else ''}. "
            f"Bitrates count stored bits: {c['bps_per_codebook']:g} bps per codebook and stream "
            f"of {c['id']} (weights {c['weights']}, {c['n_codebooks']} codebooks).")
    sep, cf = result["cost"]["sepformer"], result["cost"].get("codecformer")
    if cf:
        text += (f" Codecformer costs {cf['macs_per_s'] / 1e9:.3g} GMACs per second of audio "
                 f"(codec included; network {cf['params'] / 1e6:.2f} M parameters), the "
                 f"Sepformer structure ({sep['params'] / 1e6:.1f} M parameters, on 16 kHz input, "
                 f"never trained) {sep['macs_per_s'] / 1e9:.3g}: "
                 f"{sep['macs_per_s'] / cf['macs_per_s']:.0f}x more. CodeSep's GMACs/s are not "
                 "given: FlopCounterMode does not count its LSTMs.")
    kinds = dict.fromkeys(r["kind"] for r in result["rows"])
    lines = [text, "", *(f"- `{k}`: {DESCRIPTIONS[k]}." for k in kinds)]
    lines += [f"- not run: `{name}`: {why}." for name, why in result["skipped"].items()]
    if not result.get("complete"):
        lines.append("- incomplete: the run stopped before every row was computed.")
    return lines


def speech_markdown(result: dict) -> str:
    lines = ["# Two-speaker separation in codec space", "", *speech_table(result), "",
             *speech_notes(result), "", f"Reproduce: `{result['command']}`", ""]
    return "\n".join(lines)
