"""`codecsep report`: the results section is regenerated between its markers, nothing else moves."""

import json

import pytest

from codecsep import cli
from codecsep.errors import CodecSepError
from codecsep.report import END, START, build_report, load_summaries, replace_section

BEFORE = "# CodecSep\n\nIntro text.\n\n## Results\n\n"
AFTER = "\n\n## License\n\nMIT, with a trailing line\n"


def summary(model, protocol, si_sdri, task="extract", mode="label", visqol=None):
    metrics = {"si_sdri": {"mean": si_sdri}, "sdri": {"mean": si_sdri + 0.5},
               "si_sdr": {"mean": 1.0}, "sdr": {"mean": 1.0}}
    if visqol is not None:
        metrics["visqol"] = {"mean": visqol}
    return {"model": model, "protocol": protocol, "task": task, "prompt_mode": mode,
            "n_items": 100, "metrics": metrics, "visqol_note": "ViSQOL on the first 30 of 100 items",
            "command": f"codecsep eval --model {model} --protocol {protocol} --n 100 "
                       f"--prompt-mode {mode} --task {task}"}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results" / "eval"
    trained = summary("codecsep", "three_source", 5.5)
    trained["model_step"] = 4000
    for i, s in enumerate([summary("mixture", "two_source", 0.0), trained,
                           summary("codecsep", "two_source", 7.25, visqol=3.1),
                           summary("oracle-mdct-irm", "three_source", 16.5),
                           summary("codecsep", "two_source", 6.0, task="remove"),
                           {**summary("codecsep", "two_source", 42.0), "split": "train"}]):
        d = root / f"run{i}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(s))
    bench = {"config": {"cost_seconds": 1.0, "seconds": 10.0, "repeats": 5, "threads": [1, 2],
                        "memory_seconds": [10.0]},
             "machine": {"cpu_count": 2, "processor": "x86_64", "torch": "2.13.0",
                         "load_average": [1.0, 1.0, 1.0]},
             "command": "codecsep bench",
             "rows": [{"model": "codecsep", "params": 7.5e6, "macs_waveform": 2.5e8,
                       "macs_codes": 3.4e8, "rtf": {"1": 0.01, "2": 0.008}, "rtf_codes": {},
                       "memory": {"10": {"peak_mb": 290.0}},
                       "speedup": {"resunet-compact": {"1": 7.1}}}]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    readme = tmp_path / "README.md"
    readme.write_text(BEFORE + f"{START}\nold numbers typed by hand\n{END}" + AFTER)
    return tmp_path


def test_markers_replaced_and_the_rest_of_the_readme_untouched(results):
    old, new = build_report(results / "README.md", results / "results" / "eval",
                            results / "bench.json", deploy_file=results / "no-deploy.json",
                            codec_file=results / "no-codec.json")
    assert "old numbers" in old and "old numbers" not in new
    assert new.startswith(BEFORE + START) and new.endswith(END + AFTER)
    section = new[len(BEFORE): -len(AFTER)]
    assert section.count(START) == section.count(END) == 1
    assert "| `codecsep` (step 4000) | 7.25 / 7.75 / 3.10 (100) | 5.50 / 6.00 / – (100) |" in section
    assert "| `mixture` | 0.00 / 0.50 / – (100) |" in section
    assert section.index("`codecsep`") < section.index("`mixture`")  # models, then floors
    assert "removal, label prompts" in section and "| `codecsep` | 6.00 / 6.50 / – (100) |" in section
    assert "codecsep eval --model oracle-mdct-irm --protocol three_source" in section
    assert "| codecsep | 7.50 | 0.25 | 0.34 |" in section and "7.1x vs resunet-compact" in section
    assert "```bash\ncodecsep bench\n```" in section
    assert "Deployment" not in section  # no deploy.json: no table, no placeholder
    again = replace_section(new, section)
    assert again == new  # idempotent


def test_cli_writes_then_reports_up_to_date(results, capsys):
    args = ["report", "--readme", str(results / "README.md"), "--eval-root",
            str(results / "results" / "eval"), "--bench", str(results / "bench.json"),
            "--deploy", str(results / "no-deploy.json")]
    assert cli.main(args + ["--check"]) == 1
    assert cli.main(args) == 0
    assert cli.main(args + ["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    text = (results / "README.md").read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER)


def test_missing_or_broken_markers_are_clear_errors(results):
    readme = results / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(CodecSepError, match="markers"):
        build_report(readme, results / "nothing", results / "none.json",
                     deploy_file=results / "none.json", codec_file=results / "no-codec.json")
    _, new = build_report(readme, results / "nothing", results / "none.json", append=True,
                          deploy_file=results / "none.json", codec_file=results / "no-codec.json")
    assert new.startswith("# no markers\n") and START in new and "No benchmark yet" in new
    with pytest.raises(CodecSepError, match="exactly one"):
        replace_section(f"{END}\n{START}", "x")


def test_newest_summary_wins_for_a_repeated_evaluation(results):
    import os

    d = results / "results" / "eval" / "zz-rerun"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(summary("mixture", "two_source", 0.125)))
    os.utime(d / "summary.json", (2e9, 2e9))
    found = [s for s in load_summaries(results / "results" / "eval") if s["model"] == "mixture"]
    assert len(found) == 1 and found[0]["metrics"]["si_sdri"]["mean"] == 0.125


def deploy_result() -> dict:
    """A `codecsep bench deploy` result with the fields the table reads."""
    def stats(mean, low=None):
        return {"mean": mean, "median": mean, "min": mean if low is None else low, "n": 20}

    stream = [{"block_ms": b, "context_ms": 10 * b, "latency_ms": b + 20, "rtf": 0.1,
               "si_sdr_stream_vs_offline": stats(b / 10, 3.5), "si_sdri_offline": stats(6.0),
               "si_sdri_stream": stats(b / 40)} for b in (200, 100)]
    return {"model": "default", "model_step": 5250, "n_items": 20, "n_mixtures": 20,
            "eval_set": "data/eval/two_source-0", "rtf_seconds": 10.0, "rtf_repeats": 5,
            "machine": {"cpu_count": 2, "processor": "x86_64", "load_average": [1.0, 1.0, 1.0]},
            "torch": {"rtf": 0.0125, "window_seconds": 10.0},
            "onnx": {"opset": 17, "rtf": 0.00875, "max_abs_diff": 2e-6, "size_mb": 31.5,
                     "si_sdr_vs_torch": stats(98.5, 91.25), "si_sdri_torch": stats(6.0),
                     "si_sdri_onnx": stats(6.0)},
            "streaming": stream, "command": "codecsep bench deploy --n 20"}


def test_deploy_table_follows_the_cost_table_when_deploy_json_exists(results):
    (results / "deploy.json").write_text(json.dumps(deploy_result()))
    _, new = build_report(results / "README.md", results / "results" / "eval",
                          results / "bench.json", deploy_file=results / "deploy.json",
                          codec_file=results / "no-codec.json")
    section = new[new.index(START): new.index(END)]
    assert section.index("### Cost on CPU") < section.index("### Deployment (ONNX, streaming)")
    assert "| PyTorch, offline | whole input (10 s windows) | 0.0125 | reference | 6.00 |" in section
    assert "| ONNX Runtime, offline (opset 17) | whole input | 0.00875 | 98.50 / 91.25 | 6.00 |" \
        in section
    assert "| PyTorch, streaming 200 ms blocks, 2 s context | 220 ms | 0.1 | 20.00 / 3.50 | 5.00 |" \
        in section
    assert "streaming 100 ms blocks, 1 s context | 120 ms |" in section
    assert "Model `default`, step 5250" in section
    assert "```bash\ncodecsep bench deploy --n 20\n```" in section
    assert new.startswith(BEFORE) and new.endswith(AFTER)
    (results / "deploy.json").write_text("{broken")
    with pytest.raises(CodecSepError, match="not valid JSON"):
        build_report(results / "README.md", results / "nothing", results / "bench.json",
                     deploy_file=results / "deploy.json",
                          codec_file=results / "no-codec.json")


def test_a_result_on_an_earlier_draw_of_the_evaluation_set_is_marked(results):
    """run.json's eval_set_fingerprint: the newest evaluation of a protocol names the set in use;
    a row measured on another fingerprint gets a dagger and the note, the others do not."""
    import os

    root = results / "results" / "eval"
    for i, (model, fp, t) in enumerate([("resunet:old", "aaaa", 1e9), ("codecsep", "bbbb", 2e9)]):
        d = root / f"fp{i}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(summary(model, "dnr", 3.0 + i)))
        (d / "run.json").write_text(json.dumps({"eval_set_fingerprint": fp}))
        os.utime(d / "summary.json", (t, t))
    _, new = build_report(results / "README.md", root, results / "bench.json",
                          deploy_file=results / "no-deploy.json", codec_file=results / "no-codec.json")
    rows = {line.split("|")[1].strip(): line for line in new.splitlines() if line.startswith("| `")}
    assert rows["`resunet:old`"].rstrip(" |").endswith("(100) †")
    assert "†" not in rows["`codecsep`"] and "earlier draw" in new

    # the same items (labels, mixture input SI-SDRs) on another fingerprint: the same draw,
    # rendered on another machine: no dagger
    from codecsep.evaluate import ItemLog

    for i, x in enumerate([-1.0, -1.003]):
        ItemLog(root / f"fp{i}" / "items.csv").append(
            {"mixture_id": "m0", "source_index": 0, "label": "dog", "si_sdr": 2.0, "si_sdri": 2.0 - x})
    _, new = build_report(results / "README.md", root, results / "bench.json",
                          deploy_file=results / "no-deploy.json", codec_file=results / "no-codec.json")
    assert "†" not in new
