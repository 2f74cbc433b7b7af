"""ONNX export: every graph runs on onnxruntime and matches PyTorch (SI-SDR >= 40 dB), with
dynamic lengths, several prompts, several channels and several windows; codes in -> codes out."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx
from helpers import save_tiny_separator

from codecsep import cli
from codecsep.errors import CodecSepError
from codecsep.export import OPSET, OnnxSeparator, export_onnx, measure_rtf
from codecsep.metrics import si_sdr
from codecsep.separators.separator import Separator
from codecsep.separators.streaming import StreamingSeparator, stream_all

torch.set_num_threads(1)
BAKED = ["dog barking", "piano"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_separator(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def separator(model_dir):
    sep = Separator.load(model_dir)
    # short windows so a few seconds of audio go through several crossfaded windows
    sep.config = type(sep.config)(**{**sep.config.__dict__, "window_seconds": 1.0,
                                     "overlap_seconds": 0.25})
    return sep


@pytest.fixture(scope="module")
def exported(separator, tmp_path_factory):
    return export_onnx(separator, tmp_path_factory.mktemp("onnx") / "out", prompts=BAKED)


@pytest.fixture(scope="module")
def onnx_sep(exported):
    return OnnxSeparator(exported, threads=1)


def test_graphs_are_valid_opset17_with_dynamic_axes(exported):
    manifest = json.loads((exported / "onnx.json").read_text())
    assert set(manifest["files"]) == {"encoder", "decoder", "masker", "masker_prompts",
                                      "quantize", "dequantize"}
    assert manifest["prompts"] == BAKED and manifest["window_seconds"] == 1.0
    for name in manifest["files"].values():
        model = onnx.load(exported / name)
        onnx.checker.check_model(model)
        assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
        dims = [d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim]
        assert "frames" in dims or "samples" in dims  # the time axis is symbolic


@pytest.mark.parametrize("length,channels", [(16000, 1), (1234, 2), (5, 1), (3 * 16000 + 77, 2)])
@pytest.mark.parametrize("prompts", [["dog barking"], ["piano", "dog barking"],
                                     ["a cat meowing", "piano"]])  # baked, baked, mixed
def test_onnx_matches_pytorch(separator, onnx_sep, length, channels, prompts):
    x = torch.randn(channels, length, generator=torch.Generator().manual_seed(length)) * 0.1
    ref, out = separator.separate(x, prompts), onnx_sep.separate(x, prompts)
    for key in ("target", "residual"):
        assert out[key].shape == (len(prompts), channels, length)
        assert si_sdr(out[key], ref[key]).min() >= 40


def test_embedding_input_matches_pytorch(separator, onnx_sep):
    x = torch.randn(2 * 16000) * 0.1
    cond = torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    ref, out = separator.separate(x, None, cond=cond), onnx_sep.separate(x, cond=cond)
    assert si_sdr(out["target"], ref["target"]).min() >= 40
    with pytest.raises(CodecSepError, match="64-d"):
        onnx_sep.separate(x, cond=torch.randn(1, 32))


def test_code_streams_match_pytorch(separator, onnx_sep):
    codec = separator.codec
    latent = codec.encode(torch.randn(1, 1, 16000) * 0.1)
    for n in (1, 3, codec.n_codebooks):
        codes = codec.quantize(latent, n)
        assert torch.equal(onnx_sep.quantize(latent, n), codes)
        assert torch.allclose(onnx_sep.dequantize(codes), codec.dequantize(codes), atol=1e-4)
    codes = codec.quantize(latent, 3)
    ref, out = separator.separate_codes(codes, ["piano"]), onnx_sep.separate_codes(codes, ["piano"])
    for key in ("target", "residual"):
        assert out[key].shape == codes.shape
        # the masked latents differ by ~1e-6, so a near-tie in the tiny random codebooks may flip
        # a code (and the later stages of that frame): compare most codes, not all
        assert (out[key] == ref[key]).float().mean() >= 0.95


def test_prompts_only_export_refuses_other_prompts(separator, tmp_path):
    out = export_onnx(separator, tmp_path / "p", prompts=["piano"], embedding_input=False)
    assert "masker" not in json.loads((out / "onnx.json").read_text())["files"]
    sep = OnnxSeparator(out)
    assert sep.separate(torch.randn(800) * 0.1, ["piano"])["target"].shape == (1, 1, 800)
    with pytest.raises(CodecSepError, match="only knows the prompts"):
        sep.separate(torch.randn(800), ["dog barking"])


def test_export_refuses_to_overwrite(separator, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CodecSepError, match="--overwrite"):
        export_onnx(separator, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(CodecSepError, match="not an ONNX export"):
        OnnxSeparator(tmp_path / "out")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(CodecSepError, match="is not a folder"):
        export_onnx(separator, tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "mine"


def test_cli_export_and_rtf(model_dir, tmp_path, capsys):
    code = cli.main(["export", "--format", "onnx", "--model", str(model_dir), "-o",
                     str(tmp_path / "x"), "--prompt", "piano", "--rtf", "--rtf-seconds", "0.5"])
    out = capsys.readouterr().out
    assert code == 0 and "masker_prompts.onnx" in out and "ONNX Runtime" in out
    assert (tmp_path / "x" / "encoder.onnx").is_file()
    r = measure_rtf(Separator.load(model_dir), tmp_path / "x", seconds=0.5, repeats=1)
    assert r["torch_rtf"] > 0 and r["onnx_rtf"] > 0 and r["threads"] == 1


def test_streaming_runs_on_onnx(separator, onnx_sep):
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(3)) * 0.1
    ref = stream_all(StreamingSeparator(separator, ["piano"], 0.1, 0.5), x, 1600)["target"]
    out = stream_all(StreamingSeparator(onnx_sep, ["piano"], 0.1, 0.5), x, 1600)["target"]
    assert out.shape == (1, 1, 16000) and si_sdr(out, ref).min() >= 40


def test_shifted_and_anchored_export_matches_pytorch(separator, tmp_path):
    """Inference settings travel with the export: shifted passes and prompt anchoring."""
    from dataclasses import replace

    from codecsep.text.anchors import AliasGroup, PromptAnchors

    aliases = (AliasGroup(("dog",), ("a puppy yapping", "hound")),)  # travel in the manifest too
    sep = Separator(replace(separator.config, shifts=3,
                            anchors=PromptAnchors(("dog", "violin", "rain"), 0.5, 0.02, aliases)),
                    codec=separator.codec, text_encoder=separator.text_encoder)
    sep.masker.load_state_dict(separator.masker.state_dict())
    sep.eval()
    onnx_sep = OnnxSeparator(export_onnx(sep, tmp_path / "o", prompts=["dog"]), threads=1)
    assert onnx_sep.manifest["shifts"] == 3 and onnx_sep.manifest["anchors"]["weight"] == 0.5
    assert onnx_sep.anchors == sep.anchors
    x = torch.randn(1, 16000 + 321, generator=torch.Generator().manual_seed(1)) * 0.1
    for prompts in (["dog"], ["a puppy yapping"]):  # baked, embedded at run time (anchored)
        ref, out = sep.separate(x, prompts), onnx_sep.separate(x, prompts)
        assert si_sdr(out["target"], ref["target"]).min() >= 40
    plain = separator.separate(x, ["dog"])["target"]
    assert si_sdr(plain, sep.separate(x, ["dog"])["target"]).min() < 60  # the settings act


@pytest.mark.parametrize("time_context", [0, 3])
def test_bandsplit_masker_exports(tmp_path, time_context):
    """The band-split trunk (uneven bands gathered by index, per-band einsums) survives export,
    with local time attention too: one graph for short windows and long code streams alike."""
    from dataclasses import replace

    from helpers import TINY_MASKER

    masker = replace(TINY_MASKER, trunk="bandsplit", split="8x8,32x4,64x2", dim=16, depth=1,
                     ffn_dim=32, dropout=0.0, mask_hidden=16, time_context=time_context)
    sep = Separator.load(save_tiny_separator(tmp_path / "m", masker=masker))
    onnx_sep = OnnxSeparator(export_onnx(sep, tmp_path / "onnx"), threads=1)
    x = torch.randn(1, 7000, generator=torch.Generator().manual_seed(0)) * 0.1
    ref, out = sep.separate(x, ["dog barking"]), onnx_sep.separate(x, ["dog barking"])
    assert si_sdr(out["target"], ref["target"]).min() >= 40
    codes = sep.codec.quantize(sep.codec.encode(torch.randn(1, 1, 30000) * 0.1), 3)  # 94 frames, one window
    prompt = ["dog barking"]
    same = onnx_sep.separate_codes(codes, prompt)["target"] == sep.separate_codes(codes, prompt)["target"]
    assert same.float().mean() > 0.99  # codes: a float hair can flip a rare nearest codeword


def test_band_refined_masker_exports(tmp_path):
    """The frequency-axis refiner (attention over the bands of each frame) survives export."""
    from dataclasses import replace

    from helpers import TINY_MASKER

    masker = replace(TINY_MASKER, band_width=16, band_dim=16, band_heads=2, band_ffn_dim=32)
    sep = Separator.load(save_tiny_separator(tmp_path / "m", masker=masker))
    with torch.no_grad():
        sep.masker.bands.out.weight.normal_()  # a live correction, not the zero init
    onnx_sep = OnnxSeparator(export_onnx(sep, tmp_path / "onnx"), threads=1)
    x = torch.randn(1, 7000, generator=torch.Generator().manual_seed(0)) * 0.1
    ref, out = sep.separate(x, ["dog barking"]), onnx_sep.separate(x, ["dog barking"])
    assert si_sdr(out["target"], ref["target"]).min() >= 40
