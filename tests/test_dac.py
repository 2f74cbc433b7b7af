"""DAC backend: official configurations, both checkpoint layouts, shapes and codes files.

Everything runs on a tiny random DAC (hop 6 with an odd stride, like the 16 kHz model's 5).
"""

import pytest
import torch

pytest.importorskip("transformers")

from codecsep.codecs.base import CodesFile  # noqa: E402
from codecsep.codecs.dac import (  # noqa: E402
    VARIANTS,
    CodecLoadError,
    DACCodec,
    descript_to_transformers,
    fold_weight_norm,
)
from codecsep.errors import CodecSepError, CodesFileError  # noqa: E402

TINY = dict(
    encoder_hidden_size=4,
    downsampling_ratios=[2, 3],
    decoder_hidden_size=16,
    n_codebooks=4,
    codebook_size=32,
    codebook_dim=4,
)


def tiny_codec(seed: int = 0) -> DACCodec:
    torch.manual_seed(seed)
    return DACCodec.from_config("16k", **TINY)


@pytest.fixture
def codec():
    return tiny_codec()


@pytest.fixture
def wav():
    torch.manual_seed(1)
    return 0.5 * torch.randn(2, 1, 67)  # 67 is not a multiple of the hop (6)


def run(codec: DACCodec, wav: torch.Tensor):
    with torch.no_grad():
        latent = codec.encode(wav)
        codes = codec.quantize(latent)
        out = codec.decode(codec.dequantize(codes), wav.shape[-1])
    return latent, codes, out


def assert_same_outputs(a: DACCodec, b: DACCodec, wav: torch.Tensor):
    for x, y in zip(run(a, wav), run(b, wav)):
        assert torch.equal(x, y)


# --- official configurations ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, hop, n_codebooks, sample_rate, kbps",
    [("16k", 320, 12, 16000, 6.0), ("24k", 320, 32, 24000, 24.0), ("44k", 512, 9, 44100, 7.75)],
)
def test_official_variants(name, hop, n_codebooks, sample_rate, kbps):
    from transformers import DacConfig, DacModel

    with torch.device("meta"):  # structure only, no 74 M-parameter allocation
        codec = DACCodec(DacModel(DacConfig(**VARIANTS[name].config_kwargs())))
    assert codec.codec_id == f"dac-{name}"
    assert (codec.hop_length, codec.latent_dim, codec.codebook_size) == (hop, 1024, 1024)
    assert (codec.n_codebooks, codec.sample_rate) == (n_codebooks, sample_rate)
    assert codec.bitrate() / 1000 == pytest.approx(kbps, abs=0.01)


def test_variant_names_and_overrides_are_checked():
    assert tiny_codec().codec_id == "dac-custom"
    with pytest.raises(CodecSepError, match="unknown DAC variant"):
        DACCodec.from_config("32k")
    with pytest.raises(CodecSepError, match="unknown DAC config field"):
        DACCodec.from_config("16k", encoder_dim=4)


# --- the codec contract -----------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 5, 6, 37, 61, 100])
def test_shapes_round_trip_with_odd_lengths(codec, length):
    wav = torch.randn(3, 1, length)
    frames = -(-length // codec.hop_length)
    latent, codes, out = run(codec, wav)
    assert latent.shape == (3, codec.latent_dim, frames) == codec.dequantize(codes).shape
    assert codes.shape == (3, codec.n_codebooks, frames) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < codec.codebook_size
    assert out.shape == (3, 1, length)
    assert codec.decode(latent).shape == (3, 1, frames * codec.hop_length)


def test_matches_transformers_dac_pipeline(codec, wav):
    padded = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % codec.hop_length))
    with torch.no_grad():
        ref = codec.model.encode(padded)
        latent = codec.encode(wav)
        codes = codec.quantize(latent)
        assert torch.equal(latent, codec.model.encoder(padded))
        assert torch.equal(codes, ref.audio_codes)
        assert torch.allclose(codec.dequantize(codes), ref.quantized_representation, atol=1e-5)
        decoded = codec.model.decode(ref.quantized_representation).audio_values
        n = decoded.shape[-1]  # shorter than F * hop: the odd stride drops a sample
        assert n < latent.shape[-1] * codec.hop_length
        assert torch.allclose(codec.decode(ref.quantized_representation)[:, 0, :n], decoded)


def test_fewer_quantizers_give_a_valid_prefix_of_the_codes(codec, wav):
    latent = codec.encode(wav)
    full = codec.quantize(latent)
    for n in (1, 2, 3):
        codes = codec.quantize(latent, n_quantizers=n)
        assert torch.equal(codes, full[:, :n])  # residual VQ: the first n stages do not change
        assert codec.decode(codec.dequantize(codes), wav.shape[-1]).shape == wav.shape
    for bad in (0, codec.n_codebooks + 1):
        with pytest.raises(ValueError, match="n_quantizers"):
            codec.quantize(latent, bad)


def test_bad_inputs_are_refused(codec):
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        codec.encode(torch.randn(1, 2, 60))
    with pytest.raises(ValueError, match="codes must lie"):
        codec.dequantize(torch.full((1, 2, 3), codec.codebook_size))
    with pytest.raises(ValueError, match="length"):
        codec.decode(torch.randn(1, codec.latent_dim, 2), length=13)


# --- descript <-> transformers weights --------------------------------------------------------
def test_descript_names_follow_the_official_layout(codec):
    state = codec.descript_checkpoint()["state_dict"]
    expected_shapes = {
        "encoder.block.0.weight_g": (4, 1, 1),  # first conv
        "encoder.block.1.block.0.block.1.weight_v": (4, 4, 7),  # block 1, residual unit 1, conv k7
        "encoder.block.1.block.4.weight_v": (8, 4, 4),  # block 1, strided conv (2 * stride)
        "encoder.block.2.block.2.block.3.weight_v": (8, 8, 1),  # block 2, residual unit 3, conv k1
        "encoder.block.3.alpha": (1, 16, 1),  # final Snake after n = 2 blocks
        "encoder.block.4.weight_v": (16, 16, 3),  # final conv
        "decoder.model.0.weight_v": (16, 16, 7),
        "decoder.model.1.block.0.alpha": (1, 16, 1),
        "decoder.model.1.block.1.weight_g": (16, 1, 1),  # transposed conv: norm over dim 0 (input)
        "decoder.model.1.block.1.weight_v": (16, 8, 6),  # decoder strides reversed: 3 first
        "decoder.model.2.block.1.weight_v": (8, 4, 4),
        "decoder.model.1.block.2.block.0.alpha": (1, 8, 1),  # block.2 is residual unit 1
        "decoder.model.3.alpha": (1, 4, 1),
        "decoder.model.4.weight_v": (1, 4, 7),
        "quantizer.quantizers.0.in_proj.weight_g": (4, 1, 1),
        "quantizer.quantizers.3.out_proj.weight_v": (16, 4, 1),
        "quantizer.quantizers.3.codebook.weight": (32, 4),
    }
    for name, shape in expected_shapes.items():
        assert tuple(state[name].shape) == shape, name
    model_keys = codec.model.state_dict()
    n_convs = sum(k.endswith(".weight") and "codebook" not in k for k in model_keys)
    assert len(state) == len(model_keys) + n_convs  # each conv weight became weight_g + weight_v


@pytest.mark.parametrize("make", [torch.nn.Conv1d, torch.nn.ConvTranspose1d])
def test_weight_norm_fold_matches_torch(make):
    torch.manual_seed(0)
    layer = torch.nn.utils.parametrizations.weight_norm(make(6, 5, kernel_size=4, stride=2))
    g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(torch.rand_like(g))  # magnitudes unrelated to ||v||
    assert torch.allclose(fold_weight_norm(g, v), layer.weight, rtol=1e-6, atol=1e-7)
    state, unused = descript_to_transformers(
        {f"m.{k}": t for k, t in layer.state_dict().items()}, {"m": "conv"}
    )
    assert not unused and torch.allclose(state["conv.weight"], layer.weight, rtol=1e-6, atol=1e-7)


def descript_file(codec: DACCodec, path, edit=None):
    checkpoint = codec.descript_checkpoint()
    for key in [k for k in checkpoint["state_dict"] if k.endswith("weight_v")]:
        # rescale each direction by a power of two: the fold must undo it, exactly
        scale = 2.0 ** torch.randint(-3, 4, (checkpoint["state_dict"][key].shape[0], 1, 1))
        checkpoint["state_dict"][key] = checkpoint["state_dict"][key] * scale
    if edit:
        edit(checkpoint["state_dict"])
    torch.save(checkpoint, path)
    return path


def test_descript_layout_loads_identically(codec, wav, tmp_path):
    loaded = DACCodec.load(descript_file(codec, tmp_path / "weights_16khz.pth"))
    assert loaded.codec_id == codec.codec_id and loaded.weights_hash() == codec.weights_hash()
    assert_same_outputs(codec, loaded, wav)


def test_transformers_layout_loads_identically(codec, wav, tmp_path):
    loaded = DACCodec.load(codec.save_pretrained(tmp_path / "dac"))
    assert loaded.codec_id == codec.codec_id and loaded.weights_hash() == codec.weights_hash()
    assert_same_outputs(codec, loaded, wav)


def test_load_codec_checks_the_named_release(codec, tmp_path):
    from codecsep.codecs import load_codec

    path = codec.save_pretrained(tmp_path / "dac")  # a tiny, custom configuration
    assert load_codec(f"dac:{path}").weights_hash() == codec.weights_hash()
    with pytest.raises(CodecSepError, match="holds dac-custom weights, not dac-16k"):
        load_codec(f"dac-16k:{path}")
    with pytest.raises(CodecSepError, match="unknown DAC variant"):
        load_codec(f"dac-99k:{path}")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("encoder.block.4.bias"), "missing 1: encoder.block.4.bias"),
        (
            lambda sd: sd.pop("decoder.model.1.block.1.weight_g"),
            "decoder.model.1.block.1.weight_v .its weight-norm pair is absent",
        ),
        (lambda sd: sd.update({"encoder.block.9.alpha": torch.ones(1)}), "unexpected 1: encoder"),
        (lambda sd: sd.update({"quantizer.quantizers.0.codebook.weight": torch.ones(2)}), "fit"),
    ],
)
def test_descript_key_mismatch_is_refused(codec, tmp_path, edit, message):
    path = descript_file(codec, tmp_path / "weights.pth", edit)
    with pytest.raises(CodecLoadError, match=message) as error:
        DACCodec.load(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("encoder.conv2.bias"), "missing 1: encoder.conv2.bias"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(2)}), "unexpected 1: extra.weight"),
        (lambda sd: sd.update({"encoder.conv2.bias": torch.zeros(3)}), "reshaped 1: encoder.conv2"),
    ],
)
def test_transformers_key_mismatch_is_refused(codec, tmp_path, edit, message):
    from safetensors.torch import load_file, save_file

    path = codec.save_pretrained(tmp_path / "dac")
    state = load_file(path / "model.safetensors")
    edit(state)
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CodecLoadError, match=message) as error:
        DACCodec.load(path)
    assert "\n" not in str(error.value)


def test_unreadable_paths_give_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save({"model": {}}, tmp_path / "other.pth")
    cases = {
        tmp_path / "absent.pth": "no such DAC checkpoint",
        tmp_path / "empty": "unknown DAC checkpoint layout",
        tmp_path / "notes.txt": "unknown DAC checkpoint layout",
        tmp_path / "other.pth": "unknown DAC checkpoint layout",
    }
    for path, message in cases.items():
        with pytest.raises(CodecLoadError, match=message) as error:
            DACCodec.load(path)
        assert "\n" not in str(error.value)


# --- codes files ------------------------------------------------------------------------------
def test_codes_file_round_trip_checks_the_codec(codec, wav, tmp_path):
    codes = codec.quantize(codec.encode(wav), n_quantizers=3)
    CodesFile(
        codes=codes,
        codec_id=codec.codec_id,
        weights_hash=codec.weights_hash(),
        sample_rate=codec.sample_rate,
        length=wav.shape[-1],
        n_quantizers=3,
    ).save(tmp_path / "mix.csep")
    loaded = CodesFile.load(tmp_path / "mix.csep")
    loaded.check_codec(codec)
    assert torch.equal(loaded.codes, codes)
    out = codec.decode(codec.dequantize(loaded.codes), loaded.length)
    assert out.shape == wav.shape
    with pytest.raises(CodesFileError, match="weights"):
        loaded.check_codec(tiny_codec(seed=1))
