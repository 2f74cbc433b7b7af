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
                           summary("codecsep", "two_source", 6.0, task="remove")]):
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
                            results / "bench.json")
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
    again = replace_section(new, section)
    assert again == new  # idempotent


def test_cli_writes_then_reports_up_to_date(results, capsys):
    args = ["report", "--readme", str(results / "README.md"), "--eval-root",
            str(results / "results" / "eval"), "--bench", str(results / "bench.json")]
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
        build_report(readme, results / "nothing", results / "none.json")
    _, new = build_report(readme, results / "nothing", results / "none.json", append=True)
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
