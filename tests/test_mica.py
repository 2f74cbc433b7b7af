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
    import json
    import struct

    from codecsep.codecs.base import MAGIC

    (head_len,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + head_len])
    for key, value in (("codec_id", None), ("shape", [-1, 3])):  # valid JSON, wrong content
        bad = {k: v for k, v in header.items() if k != key}
        if value is not None:
            bad[key] = value
        head = json.dumps(bad).encode()
        (tmp_path / "bad.codes").write_bytes(MAGIC + struct.pack("<I", len(head)) + head
                                             + data[len(MAGIC) + 4 + head_len:])
        with pytest.raises(CodesFileError, match="corrupt codes file header"):
            CodesFile.load(tmp_path / "bad.codes")
    other = MicaCodec(TINY)
    with pytest.raises(CodesFileError, match="made by codec"):
        back.check_codec(other)


def test_codes_files_are_bit_packed_and_format_1_files_still_read(tmp_path):
    """Format 2 stores each code in as many bits as the largest needs (10 for 1024-entry
    codebooks), so the file is the bitrate's size plus a header; format-1 files (int16) load."""
    import hashlib
    import json
    import struct

    from codecsep.codecs.base import MAGIC

    codes = torch.randint(0, 1024, (2, 16, 50))
    codes[0, 0, 0] = 1023  # 10 bits
    path = CodesFile(codes, "toy", "0" * 16, 16000, 16000, 16).save(tmp_path / "x.codes")
    back = CodesFile.load(path)
    assert torch.equal(back.codes, codes)
    head_len = struct.unpack("<I", path.read_bytes()[8:12])[0]
    assert path.stat().st_size - 12 - head_len == 2 * 16 * 50 * 10 // 8  # 2,000 bytes: 8 kbps/channel
    zeros = CodesFile(torch.zeros(1, 2, 3, dtype=torch.int64), "toy", "0" * 16, 16000, 960, 2)
    assert torch.equal(CodesFile.load(zeros.save(tmp_path / "z.codes")).codes, zeros.codes)

    payload = codes.numpy().astype("<i2").tobytes()  # a file written by format 1
    head = json.dumps({"format_version": 1, "codec_id": "toy", "weights_hash": "0" * 16,
                       "sample_rate": 16000, "length": 16000, "n_quantizers": 16,
                       "shape": list(codes.shape),
                       "payload_sha256": hashlib.sha256(payload).hexdigest()}).encode()
    (tmp_path / "v1.codes").write_bytes(MAGIC + struct.pack("<I", len(head)) + head + payload)
    assert torch.equal(CodesFile.load(tmp_path / "v1.codes").codes, codes)
