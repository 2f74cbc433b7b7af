"""`codecsep report`: regenerate the README's results section from saved eval and bench files.

    codecsep report                         # rewrite README.md between the results markers
    codecsep report --check                 # exit 1 if the README is out of date (CI)

Everything between `<!-- results:start -->` and `<!-- results:end -->` is replaced; the rest of
the README is left byte for byte. Quality tables (one per task and prompt mode: models x
protocols, mean SI-SDRi / SDRi / ViSQOL / semantic score and the item count) come from every
`results/eval/**/summary.json`; the other sections (training curves, cost, deployment, codec,
two-speaker speech) each from the JSON file that its command writes (`SECTIONS`), left out (or
a placeholder) when it does not exist. Each table is followed by the exact commands that
reproduce it, as recorded by the command that wrote it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import CodecSepError
from .evaluate import CODEC_REFERENCE, item_inputs, same_draw

START, END = "<!-- results:start -->", "<!-- results:end -->"
PROTOCOLS = ("two_source", "three_source", "dnr", "two_speaker")
GROUP_TITLES = {("extract", "label"): "extraction, label prompts",
                ("extract", "caption"): "extraction, caption prompts",
                ("extract", "heldout"): "extraction, held-out paraphrases",
                ("remove", "label"): "removal, label prompts",
                ("remove", "caption"): "removal, caption prompts",
                ("remove", "heldout"): "removal, held-out paraphrases"}
MODEL_ORDER = ("codecsep", "resunet", "mixture", "oracle-mdct-irm", "codec-ceiling")


def load_summaries(eval_root) -> list[dict]:
    """Every test-split summary.json under eval_root (the results are judged on the test split;
    train / valid evaluations are diagnostics); for a repeated evaluation the newest file wins."""
    found: dict[tuple, tuple[float, dict]] = {}
    for path in sorted(Path(eval_root).rglob("summary.json")):
        try:
            s = json.loads(path.read_text())
            key = (s["model"], s["protocol"], s["task"], s["prompt_mode"])
        except (ValueError, KeyError) as e:
            raise CodecSepError(f"{path}: not an evaluation summary ({e})") from e
        if s.get("split", "test") != "test":
            continue
        # newest by the date the evaluation recorded (a fresh clone gives every file one mtime)
        stamp = (str(s.get("date", "")), path.stat().st_mtime)
        run = _read_json(path.with_name("run.json")) or {}
        s = {**s, "eval_set_fingerprint": run.get("eval_set_fingerprint"), "stamp": stamp,
             "folder": path.parent}
        if key not in found or found[key][0] < stamp:
            found[key] = (stamp, s)
    summaries = [s for _, s in found.values()]
    # the set in use per protocol is the one of its newest evaluation; a result on another
    # fingerprint was measured on an earlier draw of that protocol's set
    current: dict[str, tuple[tuple, str]] = {}
    for s in summaries:
        fp = s["eval_set_fingerprint"]
        if fp and s["stamp"] > current.get(s["protocol"], (("", -1.0), ""))[0]:
            current[s["protocol"]] = (s["stamp"], fp)
    # ... unless its items show the same draw, rendered elsewhere (`evaluate.same_draw`): checked
    # against a result of the same task on the current fingerprint (each items.csv read once)
    inputs: dict[Path, dict] = {}

    def items(s: dict) -> dict:
        if s["folder"] not in inputs:
            inputs[s["folder"]] = item_inputs(s["folder"])
        return inputs[s["folder"]]

    for s in summaries:
        fp = s["eval_set_fingerprint"]
        s["earlier_set"] = bool(fp) and current[s["protocol"]][1] != fp
        if s["earlier_set"]:
            ref = next((r for r in summaries if (r["protocol"], r["task"]) == (s["protocol"], s["task"])
                        and r["eval_set_fingerprint"] == current[s["protocol"]][1]), None)
            s["earlier_set"] = ref is None or not same_draw(items(s), items(ref))
    return summaries


def _model_rank(model: str) -> tuple[int, str]:
    kind = model.split()[0].partition(":")[0]  # "codecsep --anchor-weight 0" ranks as codecsep
    return (MODEL_ORDER.index(kind) if kind in MODEL_ORDER else len(MODEL_ORDER), model)


def _num(d: dict | None, digits: int) -> str:
    v = (d or {}).get("mean")
    return "–" if v is None else f"{v:.{digits}f}"


def quality_cell(s: dict | None) -> str:
    if s is None:
        return ""
    m = s["metrics"]
    semantic = f" · sem {_num(m['semantic'], 3)}" if "semantic" in m else ""
    return (f"{_num(m.get('si_sdri'), 2)} / {_num(m.get('sdri'), 2)} / "
            f"{_num(m.get('visqol'), 2)}{semantic} ({s['n_items']}){' †' if s.get('earlier_set') else ''}")


def quality_section(summaries: list[dict], task: str, mode: str) -> list[str]:
    group = [s for s in summaries if (s["task"], s["prompt_mode"]) == (task, mode)]
    if not group:
        return []
    protocols = [p for p in PROTOCOLS if any(s["protocol"] == p for s in group)]
    models = sorted({s["model"] for s in group}, key=_model_rank)
    cell = {(s["model"], s["protocol"]): s for s in group}
    steps = {s["model"]: sorted({str(x["model_step"]) for x in group
                                 if x["model"] == s["model"] and x.get("model_step") is not None})
             for s in group}
    lines = [f"### Separation quality: {GROUP_TITLES.get((task, mode), f'{task}, {mode}')}", "",
             ("Mean SI-SDRi / SDRi in dB / ViSQOL (MOS-LQO), where computed the semantic score "
              "(sem: cosine of the aligned audio encoder's embedding of the output with the "
              "prompt's text embedding), and (the number of scored items), on the fixed "
              "evaluation sets drawn from the corpus test split."), "",
             "| model | " + " | ".join(protocols) + " |", "|---" * (len(protocols) + 1) + "|"]
    for model in models:
        name = f"`{model}`" + (f" (step {', '.join(steps[model])})" if steps[model] else "")
        lines.append(f"| {name} | " + " | ".join(quality_cell(cell.get((model, p)))
                                                 for p in protocols) + " |")
    notes = sorted({s["visqol_note"] for s in group if "visqol" in s["metrics"]})
    if any(s.get("reference", "clean") != "clean" for s in group):
        notes.append(f"`--reference codec` rows score against {CODEC_REFERENCE}, not against the "
                     "clean source")
    if any(s.get("earlier_set") for s in group):
        notes.append("† measured on an earlier draw of that protocol's evaluation set (not comparable "
                     "item by item; see results/experiments/README.md)")
    lines += ["", *(f"{n}." for n in notes)] if notes else []
    return lines + ["", "```bash", *sorted({s["command"] for s in group}), "```", ""]


def cost_section(bench: dict | None) -> list[str]:
    from .bench import cost_table, macs_counted

    if bench is None:
        return ["### Cost on CPU", "", "No benchmark yet: run `codecsep bench`.", ""]
    cfg, m = bench["config"], bench["machine"]
    return ["### Cost on CPU", "",
            (f"Parameters, GMACs per second of audio ({macs_counted(cfg)}), "
             f"real-time factor on {cfg['seconds']:g} s (median of {cfg['repeats']}), peak RSS "
             f"of a fresh process. Machine: {m['cpu_count']} CPUs ({m['processor']}), torch "
             f"{m['torch']}, load average {m['load_average']}."), "",
            *cost_table(bench), "", "```bash", bench["command"], "```", ""]


def deploy_section(deploy: dict | None) -> list[str]:
    """The "Deployment (ONNX, streaming)" table, or nothing before `codecsep bench deploy` ran."""
    from .deploy_bench import deploy_notes, deploy_table

    if deploy is None:
        return []
    return ["### Deployment (ONNX, streaming)", "", *deploy_table(deploy), "",
            deploy_notes(deploy), "", "```bash", deploy["command"], "```", ""]


def codec_section(codec: dict | None) -> list[str]:
    """The Mica codec benchmark (targets, quality per bitrate, usage, cost), when it exists."""
    from .codecs.evaluate import bench_markdown

    if codec is None:
        return []
    body = [("##" + line) if line.startswith("## ") else line
            for line in bench_markdown(codec).splitlines()]  # its sections nest under ours
    return ["### Codec (" + body[0].removeprefix("# Codec benchmark: ") + ")", *body[1:], ""]


def speech_section(speech: dict | None) -> list[str]:
    """Two-speaker separation in codec space (`codecsep speech eval`), when it exists."""
    from .speech_eval import speech_notes, speech_table

    if speech is None:
        return []
    return ["### Two-speaker separation in codec space (Codecformer, CodeSep)", "",
            *speech_table(speech), "", *speech_notes(speech), "", "```bash", speech["command"],
            "```", ""]


def curves_section(curves: dict | None) -> list[str]:
    """Training curves of the separators at equal steps (`codecsep curves`), when they exist."""
    from .curves import curves_markdown

    if curves is None:
        return []
    return ["### Training curves at equal steps", "", *curves_markdown(curves), "", "```bash",
            curves["command"], "```", ""]


# The JSON-backed sections after the quality tables, in README order:
# name -> (default file, the command that writes it, the function that renders it)
SECTIONS = {
    "curves": ("results/training/curves.json", "codecsep curves", curves_section),
    "bench": ("results/bench/bench.json", "codecsep bench", cost_section),
    "deploy": ("results/deploy/deploy.json", "codecsep bench deploy", deploy_section),
    "codec": ("results/codec_bench/codec_bench.json", "codecsep bench codec", codec_section),
    "speech": ("results/speech/speech.json", "codecsep speech eval", speech_section),
}


def results_section(summaries: list[dict], **sections: dict | None) -> str:
    """The README's results: quality tables from eval summaries, then each of SECTIONS from
    its loaded JSON (None or absent: the section's placeholder or nothing)."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise TypeError(f"unknown report sections: {', '.join(sorted(unknown))}")
    lines = [START, ("<!-- generated by `codecsep report` from results/eval/**/summary.json and "
                     + ", ".join(f for f, _, _ in SECTIONS.values()) + ": edit those, not this -->"),
             ""]
    for task, mode in GROUP_TITLES:
        lines += quality_section(summaries, task, mode)
    if not summaries:
        lines += [("No evaluation results yet: run `codecsep eval --model codecsep --protocol "
                   "two_source`."), ""]
    for name, (_, _, render) in SECTIONS.items():
        lines += render(sections.get(name))
    return "\n".join(lines + [END])


def replace_section(text: str, section: str, append: bool = False) -> str:
    """`text` with everything from START to END (markers included) replaced by `section`."""
    start, end = text.find(START), text.find(END)
    if start < 0 and end < 0:
        if not append:
            raise CodecSepError(f"the README has no {START} ... {END} markers: add them where the "
                                "results go, or pass --append")
        return text.rstrip("\n") + "\n\n## Results\n\n" + section + "\n"
    if start < 0 or end < start or text.count(START) != 1 or text.count(END) != 1:
        raise CodecSepError(f"the README needs exactly one {START} followed by one {END}")
    return text[:start] + section + text[end + len(END):]


def _read_json(path) -> dict | None:
    """The JSON file at `path`, or None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise CodecSepError(f"{path}: not valid JSON ({e})") from e


def build_report(readme, eval_root="results/eval", bench_file=SECTIONS["bench"][0],
                 append: bool = False, **files) -> tuple[str, str]:
    """(current README text, regenerated README text). `files`: `<section>_file` paths that
    replace the SECTIONS defaults (e.g. deploy_file="results/deploy/deploy.json")."""
    readme = Path(readme)
    if not readme.is_file():
        raise CodecSepError(f"{readme}: no such README")
    paths = {name: default for name, (default, _, _) in SECTIONS.items()} | {"bench": bench_file}
    for key, path in files.items():
        name = key.removesuffix("_file")
        if not key.endswith("_file") or name not in SECTIONS:
            raise TypeError(f"build_report: unknown argument {key!r}")
        paths[name] = path
    section = results_section(load_summaries(eval_root),
                              **{name: _read_json(path) for name, path in paths.items()})
    old = readme.read_text(encoding="utf-8")
    return old, replace_section(old, section, append)


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="regenerate the README results from eval/bench files",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", default="README.md", help="README to update (default %(default)s)")
    p.add_argument("--eval-root", default="results/eval", help="where `codecsep eval` wrote")
    for name, (default, command, _) in SECTIONS.items():
        p.add_argument(f"--{name}", default=default,
                       help=f"`{command}` output (default %(default)s)")
    p.add_argument("--append", action="store_true", help="add the markers at the end if missing")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if the README is out of date")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .audio import atomic_write_bytes

    old, new = build_report(args.readme, args.eval_root, args.bench, args.append,
                            **{f"{name}_file": getattr(args, name) for name in SECTIONS
                               if name != "bench"})
    if args.check:
        print(f"{args.readme}: {'up to date' if old == new else 'out of date: run codecsep report'}")
        return 0 if old == new else 1
    if old != new:
        atomic_write_bytes(Path(args.readme), new.encode("utf-8"), overwrite=True)
    print(f"{args.readme}: results section {'updated' if old != new else 'already up to date'}")
    return 0
