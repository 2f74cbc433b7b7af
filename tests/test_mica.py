import pytest
import torch

from codecsep.codecs.base import CodesFile
from codecsep.codecs.mdct import MDCT
from codecsep.codecs.mica import MicaCodec, MicaConfig, compress, decompress
from codecsep.errors import CodesFileError

TINY = MicaConfig(channels=16, depth=1, n_codebooks=4, codebook_size=32, codebook_dim=4)


@pytest.mark.parametrize("length", [1, 319, 320, 321, 16000, 12345])
def test_mdct_perfect_reconstruction_any_length(length):
    mdct = MDCT(320)
    x = torch.randn(2, 1, length)
    z = mdct(x)
    assert z.shape == (2, 320, mdct.n_frames(length))
    assert torch.allclose(mdct.inverse(z, length), x, atol=1e-5)


def test_mdct_is_orthonormal_energy_preserving():
    mdct = MDCT(64)
    x = torch.randn(1, 1, 64 * 20)
    assert torch.allclose(mdct(x).pow(2).sum(), x.pow(2).sum(), rtol=1e-4)


def test_compress_roundtrip():
    z = torch.randn(1000) * 10
    assert torch.allclose(decompress(compress(z, 0.5), 0.5), z, atol=1e-4)


def test_mica_protocol_shapes_and_bitrates():
    codec = MicaCodec(TINY).eval()
    x = torch.randn(1, 1, 4321)
    z = codec.encode(x)
    assert z.shape == (1, codec.latent_dim, codec.n_frames(4321))
    for n in (1, 2, 4):
        codes = codec.quantize(z, n)
        assert codes.shape == (1, n, z.shape[-1]) and codes.dtype == torch.int64
        assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
        assert codec.dequantize(codes).shape == z.shape
    assert codec.bitrate(4) == 4 * 5 * 16000 / 320
    assert torch.allclose(codec.decode(z, 4321), x, atol=1e-5)


def test_quantizer_more_codebooks_reduce_error_after_fitting():
    torch.manual_seed(0)
    codec = MicaCodec(TINY)
    z = codec.encode(torch.randn(4, 1, 3200))
    opt = torch.optim.Adam(codec.parameters(), 3e-3)
    for _ in range(60):
        out = codec(z)
        loss = (out["compressed_hat"] - compress(z, 0.5)).pow(2).mean() + out["commit"] + out["codebook"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval()
    with torch.no_grad():
        err = [float((codec.dequantize(codec.quantize(z, n)) - z).pow(2).mean()) for n in (1, 4)]
    assert err[1] < err[0]


def test_codes_file_roundtrip_and_validation(tmp_path):
    codec = MicaCodec(TINY).eval()
    codes = codec.quantize(codec.encode(torch.randn(1, 1, 3000)), 3)
    cf = CodesFile(codes, codec.codec_id, codec.weights_hash(), 16000, 3000, 3)
    path = cf.save(tmp_path / "x.codes")
    back = CodesFile.load(path)
    assert torch.equal(back.codes, codes) and back.length == 3000
    back.check_codec(codec)
    with pytest.raises(Exception, match="exist"):
        cf.save(path)  # never overwritten silently

    data = path.read_bytes()
    (tmp_path / "trunc.codes").write_bytes(data[:-3])
    with pytest.raises(CodesFileError, match="truncated"):
        CodesFile.load(tmp_path / "trunc.codes")
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    (tmp_path / "corrupt.codes").write_bytes(bytes(corrupt))
    with pytest.raises(CodesFileError, match="checksum"):
        CodesFile.load(tmp_path / "corrupt.codes")
    (tmp_path / "foreign.codes").write_bytes(b"RIFF" + data[4:])
    with pytest.raises(CodesFileError, match="not a CodecSep codes file"):
        CodesFile.load(tmp_path / "foreign.codes")
    with pytest.raises(CodesFileError, match="no such"):
        CodesFile.load(tmp_path / "missing.codes")
    other = MicaCodec(TINY)
    with pytest.raises(CodesFileError, match="made by codec"):
        back.check_codec(other)
