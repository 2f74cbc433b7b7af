"""`codecsep bench` with tiny random models: the table has its fields, the numbers make sense."""

import json

import pytest
import torch

from codecsep import cli
from codecsep.bench import (
    ROWS,
    BenchConfig,
    add_speedups,
    bench_command,
    memory_in_subprocess,
    run_bench,
)
from codecsep.errors import CodecSepError

QUICK = {"seconds": 0.5, "repeats": 2, "threads": (1,), "memory_seconds": (), "tiny": True}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_bench_rows_have_every_field_and_consistent_costs(tmp_path):
    cfg = BenchConfig(models=("codecsep", "resunet-compact", "mica", "codecsep-paper"), **QUICK)
    result = run_bench(cfg, tmp_path)
    rows = {r["model"]: r for r in result["rows"]}
    for r in rows.values():
        for key in ("params", "macs_waveform", "macs_codes", "macs_parts", "rtf", "rtf_codes",
                    "memory", "speedup", "timed", "description", "sample_rate"):
            assert key in r
        assert r["params"] > 0 and r["macs_waveform"] > 0
    ours = rows["codecsep"]
    parts = ours["macs_parts"]
    assert ours["macs_waveform"] == pytest.approx(parts["encode"] + parts["masker"] + parts["decode"]
                                                  + parts["postfilter"])
    assert ours["macs_codes"] == pytest.approx(parts["dequantize"] + parts["masker"] + parts["quantize"])
    assert rows["resunet-compact"]["macs_codes"] is None  # a spectrogram model has no code path
    # counted again on the timed length (0.5 s here): per second, the convolutional codec costs
    # the same on any length
    mica = rows["mica"]
    assert mica["macs_waveform_timed"] == pytest.approx(mica["macs_waveform"], rel=0.05)
    assert set(ours["rtf"]) == {"1"} and ours["rtf"]["1"] > 0 and ours["rtf_codes"]["1"] > 0
    assert not rows["codecsep-paper"]["timed"] and rows["codecsep-paper"]["rtf"] == {}
    assert ours["speedup"]["resunet-compact"]["1"] == pytest.approx(
        rows["resunet-compact"]["rtf"]["1"] / ours["rtf"]["1"])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["command"] == bench_command(cfg) and saved["machine"]["cpu_count"] >= 1
    md = (tmp_path / "bench.md").read_text()
    assert "| codecsep |" in md and "GMACs/s waveform, 0.5 s" in md and "Reproduce: `codecsep bench" in md


def test_speedups_only_against_peers_timed_in_the_same_run():
    rows = [{"model": "codecsep", "rtf": {"1": 0.01}}, {"model": "resunet-compact", "rtf": {"1": 0.05}},
            {"model": "resunet30", "rtf": {}}]
    add_speedups(rows)
    assert rows[0]["speedup"] == {"resunet-compact": {"1": pytest.approx(5.0)}}
    assert rows[1]["speedup"] == {} and rows[2]["speedup"] == {}


def test_memory_probe_runs_in_a_fresh_process():
    mem = memory_in_subprocess("codecsep", 2.0, tiny=True)
    assert 0 < mem["baseline_mb"] <= mem["peak_mb"] < 4000


def test_bad_config_and_cli(tmp_path, capsys):
    with pytest.raises(CodecSepError, match="unknown bench model"):
        BenchConfig(models=("nope",))
    assert "dac-16k" in ROWS and ROWS["dac-16k"].heavy and not ROWS["codecsep"].heavy
    code = cli.main(["bench", "--models", "mica", "--tiny", "--seconds", "0.2", "--repeats", "1",
                     "--threads", "1", "--memory-seconds", "--out", str(tmp_path)])
    assert code == 0 and "| mica |" in capsys.readouterr().out
    assert (tmp_path / "bench.json").is_file()


def test_two_stage_row_costs_the_single_stage_plus_its_first_stage(tmp_path):
    cfg = BenchConfig(models=("codecsep", "hierarchical"), **{**QUICK, "repeats": 1})
    rows = {r["model"]: r for r in run_bench(cfg, tmp_path)["rows"]}
    one, two = rows["codecsep"], rows["hierarchical"]
    assert two["macs_parts"]["encode"] == one["macs_parts"]["encode"]
    assert two["macs_parts"]["masker"] > one["macs_parts"]["masker"]  # + audio encoder, stage 1
    assert two["params"] > one["params"]


def test_masker_macs_per_second_grow_with_the_input():
    """Why the cost table counts twice: attention over F frames costs F^2, so per second of
    audio a 10 s input costs the masker more than a 1 s one; the convolutional codec does not."""
    bench = ROWS["codecsep"].build(True)
    with torch.inference_mode():
        short, long = bench.costs(1.0)["parts"], bench.costs(10.0)["parts"]
    assert long["masker"] > 1.1 * short["masker"]
    assert long["encode"] == pytest.approx(short["encode"], rel=0.05)


def test_long_inputs_are_counted_through_the_windows_they_run_in():
    """10 s through 4-s windows overlapping by 1 s is three windows (starts 0, 3 and 6 s), on
    waveforms and on code streams alike: the count is what a run computes, not one 10-s pass."""
    from codecsep.bench import TINY_MASKER, _mica, separator_bench
    from codecsep.separators.masker import MaskerConfig
    from codecsep.separators.separator import Separator, SeparatorConfig

    sep = Separator(SeparatorConfig(masker=MaskerConfig(**TINY_MASKER), window_seconds=4.0),
                    codec=_mica(True))
    bench = separator_bench(sep)
    with torch.inference_mode():
        four, ten = bench.costs(4.0)["parts"], bench.costs(10.0)["parts"]
    for part in ("masker", "masker (codes)", "encode"):
        assert ten[part] * 10 == pytest.approx(3 * four[part] * 4, rel=1e-6), part
