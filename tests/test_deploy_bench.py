"""`codecsep bench deploy` with a tiny random separator on a tiny synthetic evaluation set:
every field is there, ONNX matches PyTorch, streaming has its latency, nothing is overwritten."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")

from test_separate_cli import save_tiny_separator

from codecsep import cli
from codecsep.data.manifest import Clip, read_manifest, write_manifest
from codecsep.data.mixtures import make_protocol, write_eval_set
from codecsep.deploy_bench import (
    DeployConfig,
    deploy_table,
    eval_groups,
    load_codecsep,
    register_deploy,
    run_deploy_bench,
    streaming_quality,
)
from codecsep.errors import CodecSepError
from codecsep.report import deploy_section

torch.set_num_threads(1)
SR = 16000
QUICK = {"n": 3, "seconds": 0.5, "repeats": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved tiny separator and a 3-mixture two_source set of 1.5 s (tones, noise, bursts)."""
    root = tmp_path_factory.mktemp("deploy")
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    bursts = np.where((t % 0.5) < 0.2, rng.standard_normal(t.size), 0.0) * 0.2
    sounds = {"piano": 0.2 * np.sin(2 * np.pi * 262 * t), "rain": 0.05 * rng.standard_normal(t.size),
              "dog": bursts, "organ": 0.2 * np.sin(2 * np.pi * 98 * t)}
    clips = []
    for label, wav in sounds.items():
        sf.write(root / f"{label}.wav", wav.astype(np.float32), SR)
        clips.append(Clip(path=f"{label}.wav", label=label, captions=(label,), source="synthetic",
                          source_id=label, split="test", duration=2.0))
    manifest = write_manifest(clips, root / "manifest.jsonl")
    protocol = make_protocol("two_source", read_manifest(manifest), {"duration_s": 1.5})
    write_eval_set(protocol, 3, root / "eval" / "two_source-0", seed=0)
    return {"model": str(save_tiny_separator(root / "model")), "eval_dir": str(root / "eval"),
            "manifest": str(manifest)}


def config(setup, **kw) -> DeployConfig:
    return DeployConfig(model=setup["model"], eval_dir=setup["eval_dir"],
                        manifest=setup["manifest"], **{**QUICK, **kw})


@pytest.fixture(scope="module")
def result(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, run_deploy_bench(config(setup), out)


@pytest.fixture
def main(monkeypatch):
    """cli.main with `bench deploy` hooked in, as the two lines in bench.py's register() do."""
    build = cli.build_parser

    def with_deploy() -> argparse.ArgumentParser:
        parser = build()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        bench = commands.choices["bench"]
        if not any(isinstance(a, argparse._SubParsersAction) for a in bench._actions):
            register_deploy(bench.add_subparsers(dest="bench_command", metavar="{deploy}"))
        return parser

    monkeypatch.setattr(cli, "build_parser", with_deploy)
    return cli.main


def test_json_has_every_field_and_onnx_matches_pytorch(result):
    out, r = result
    assert json.loads((out / "deploy.json").read_text()) == json.loads(json.dumps(r))
    assert (r["n_mixtures"], r["n_items"], r["protocol"], r["threads"]) == (3, 3, "two_source", 1)
    assert r["model_fingerprint"] and len(r["eval_set_fingerprint"]) == 16
    onnx = r["onnx"]
    assert onnx["graphs"] == ["decoder", "dequantize", "encoder", "masker", "quantize"]
    assert onnx["si_sdr_vs_torch"]["n"] == 3 and onnx["si_sdr_vs_torch"]["min"] >= 40
    assert onnx["si_sdr_vs_torch"]["mean"] >= onnx["si_sdr_vs_torch"]["min"]
    assert onnx["max_abs_diff"] < 1e-3 and onnx["size_mb"] > 0
    # same model, same items: the two runtimes score the same SI-SDRi
    assert onnx["si_sdri_onnx"]["mean"] == pytest.approx(onnx["si_sdri_torch"]["mean"], abs=1e-2)
    assert onnx["rtf"] > 0 and r["torch"]["rtf"] > 0


def test_streaming_has_its_latency_and_offline_matches_the_parity_run(result):
    _, r = result
    assert [(s["block_ms"], s["context_ms"], s["latency_ms"]) for s in r["streaming"]] == [
        (200, 2000, 220), (100, 1000, 120)]  # latency = block + one 20 ms hop
    assert [s["lookahead_ms"] for s in r["streaming"]] == [0, 0]
    for s in r["streaming"]:
        assert s["rtf"] > 0 and s["si_sdr_stream_vs_offline"]["n"] == 3
        assert np.isfinite(s["si_sdr_stream_vs_offline"]["min"])
        # the offline reference inside the streaming run is the PyTorch offline output
        assert s["si_sdri_offline"]["mean"] == pytest.approx(r["onnx"]["si_sdri_torch"]["mean"],
                                                             abs=1e-4)


def test_lookahead_adds_to_the_latency_and_shows_in_the_table(setup, result):
    cfg = config(setup, n=1)
    eval_set, groups = eval_groups(cfg)
    row = streaming_quality(load_codecsep(cfg.model).eval(), eval_set, groups, 0.2, 2.0, 0.03)
    assert (row["lookahead_ms"], row["latency_ms"]) == (40, 260)  # rounded up to two hops
    table = deploy_table({**result[1], "streaming": [{**row, "rtf": 1.0}]})
    assert "streaming 200 ms blocks, 2 s context, 40 ms lookahead | 260 ms |" in table[-1]


def test_markdown_and_readme_section_show_every_row(result):
    out, r = result
    md = (out / "deploy.md").read_text()
    section = "\n".join(deploy_section(r))
    for text in (md, section):
        assert "| PyTorch, offline |" in text and "| ONNX Runtime, offline (opset 17) |" in text
        assert "streaming 200 ms blocks, 2 s context | 220 ms |" in text
        assert "streaming 100 ms blocks, 1 s context | 120 ms |" in text
        assert r["command"] in text
    assert section.startswith("### Deployment (ONNX, streaming)")


def test_refuses_to_overwrite_then_replaces_with_the_flag(setup, result, main, capsys):
    out, _ = result
    before = (out / "deploy.json").read_bytes()
    with pytest.raises(CodecSepError, match="--overwrite"):
        run_deploy_bench(config(setup), out)  # refused before any work
    args = ["bench", "deploy", "--model", setup["model"], "--eval-dir", setup["eval_dir"],
            "--manifest", setup["manifest"], "--n", "1", "--seconds", "0.5", "--repeats", "1",
            "--out", str(out)]
    assert main(args) == 2 and "already holds deploy.json" in capsys.readouterr().err
    assert (out / "deploy.json").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
    r = json.loads((out / "deploy.json").read_text())
    assert r["n_mixtures"] == 1 and "--n 1" in r["command"] and "--repeats 1" in r["command"]
    assert "ONNX Runtime" in capsys.readouterr().out


def test_config_checks_and_reproducing_command(setup):
    assert DeployConfig().command() == "codecsep bench deploy"
    assert DeployConfig(n=50, protocol="dnr").command() == (
        "codecsep bench deploy --protocol dnr --n 50")
    assert DeployConfig(lookahead_ms=40).command() == "codecsep bench deploy --lookahead-ms 40"
    for bad in ({"n": 0}, {"repeats": 0}, {"protocol": "four_source"},
                {"streaming": ((0.0, 1.0),)}, {"lookahead_ms": -20}):
        with pytest.raises(CodecSepError):
            DeployConfig(**bad)
    with pytest.raises(CodecSepError, match="fewer than --n"):
        run_deploy_bench(config(setup, n=10), setup["eval_dir"] + "-nothing")
