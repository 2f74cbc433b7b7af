"""The codec contract every backend follows, and the versioned codes file.

Shapes: waveform (B, 1, T) float at `sample_rate`; latent (B, D, F) with F = ceil(T / hop_length);
codes (B, N, F) int64 with N <= n_codebooks (fewer codebooks = lower bitrate).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CodecSepError, CodesFileError


class Codec(nn.Module):
    """Abstract codec. Subclasses set the attributes and implement the four transforms."""

    codec_id: str = "abstract"
    sample_rate: int
    hop_length: int
    latent_dim: int
    n_codebooks: int
    codebook_size: int

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) waveform -> (B, D, F) continuous latent."""
        raise NotImplementedError

    def decode(self, latent: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """(B, D, F) latent -> (B, 1, T) waveform, cut to `length` samples when given."""
        raise NotImplementedError

    def quantize(self, latent: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """(B, D, F) latent -> (B, N, F) integer codes using the first `n_quantizers` codebooks."""
        raise NotImplementedError

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N, F) codes -> (B, D, F) latent (any N <= n_codebooks)."""
        raise NotImplementedError

    def bitrate(self, n_quantizers: int | None = None) -> float:
        """Bits per second carried by `n_quantizers` codebooks."""
        n = n_quantizers or self.n_codebooks
        return n * np.log2(self.codebook_size) * self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // self.hop_length)

    def latent_space_id(self) -> str:
        """Names the continuous latent space: separators trained in it work with any codec
        that reports the same id (for learned encoders, the weights themselves)."""
        return f"{self.codec_id}:{self.weights_hash()}"

    def weights_hash(self) -> str:
        """Short content hash of the weights: stored in codes files, checked when reading them."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Codes file: MAGIC | u32 header length | JSON header | payload.
# Format 2 (written): the B*N*F codes (row-major) packed at `bits` bits each, most significant bit
# first, the last byte zero-padded, so a file is as small as the bitrate says (10-bit codes: 8 kbps
# of 16 codebooks at 50 frames/s is 1,000 bytes a second, plus the header). Format 1 (still read):
# int16 little-endian per code.
# ---------------------------------------------------------------------------------------------
MAGIC = b"CSEPCODE"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER_KEYS = ("format_version", "shape", "payload_sha256", "codec_id", "weights_hash",
               "sample_rate", "length", "n_quantizers")


def is_codes_file(path) -> bool:
    """Whether `path` starts with the codes-file magic bytes (False if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def pack_codes(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers < 2**bits -> `bits` bits each, MSB first, packed into bytes."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((values.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8)).tobytes()


def unpack_codes(payload: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: the first `count` values (int64)."""
    flat = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * bits]
    return flat.reshape(count, bits).astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def check_codebooks(codec: "Codec", n: int, what: str = "--n-quantizers") -> int:
    """n, if the codec has that many codebooks (1 <= n <= its count); a one-line error if not."""
    if not 1 <= n <= codec.n_codebooks:
        raise CodecSepError(f"{what} {n}: codec {codec.codec_id} has {codec.n_codebooks} "
                            f"codebooks (choose 1 to {codec.n_codebooks})")
    return n


def encode_to_codes(codec: "Codec", wav: torch.Tensor, n_quantizers: int,
                    weights_hash: str | None = None) -> "CodesFile":
    """(C, T) waveform at the codec's rate -> a CodesFile of its first `n_quantizers` codebooks,
    one stream per channel (`weights_hash`: the codec's, when the caller already has it)."""
    codes = codec.quantize(codec.encode(wav[:, None]), n_quantizers)  # (C, N, F)
    return CodesFile(codes, codec.codec_id, weights_hash or codec.weights_hash(), codec.sample_rate,
                     wav.shape[-1], codes.shape[1])


def decode_codes(codec: "Codec", codes: torch.Tensor, length: int) -> torch.Tensor:
    """(C, N, F) codes -> (C, length) waveform."""
    return codec.decode(codec.dequantize(codes), length)[:, 0]


@dataclass(frozen=True)
class CodesFile:
    """Compressed codes plus what is needed to decode them with the right codec."""

    codes: torch.Tensor  # (B, N, F) int64
    codec_id: str
    weights_hash: str
    sample_rate: int
    length: int  # original number of samples
    n_quantizers: int

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        from ..audio import atomic_write_bytes

        codes = self.codes.detach().cpu().to(torch.int64)
        if codes.ndim != 3:
            raise ValueError(f"codes must be (B, N, F), got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() > 32767):
            raise ValueError("codes must lie in [0, 32767]")
        bits = max(1, int(codes.max()).bit_length()) if codes.numel() else 1
        payload = pack_codes(codes.numpy().ravel(), bits)
        header = {
            "format_version": FORMAT_VERSION,
            "bits": bits,
            "codec_id": self.codec_id,
            "weights_hash": self.weights_hash,
            "sample_rate": self.sample_rate,
            "length": self.length,
            "n_quantizers": self.n_quantizers,
            "shape": list(codes.shape),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        }
        head = json.dumps(header, sort_keys=True).encode()
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(struct.pack("<I", len(head)))
        buf.write(head)
        buf.write(payload)
        return atomic_write_bytes(Path(path), buf.getvalue(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CodesFile":
        """Read a codes file; anything truncated, corrupt or of an unknown format is a
        CodesFileError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise CodesFileError(f"{path}: no such codes file")
        data = path.read_bytes()
        if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
            raise CodesFileError(f"{path}: not a CodecSep codes file (bad magic bytes); "
                                 "`codecsep codec encode` makes one from audio")
        (head_len,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
        start = len(MAGIC) + 4
        if start + head_len > len(data):
            raise CodesFileError(f"{path}: truncated codes file (header cut short)")
        try:
            header = json.loads(data[start : start + head_len])
        except ValueError as e:
            raise CodesFileError(f"{path}: corrupt codes file header") from e
        if not isinstance(header, dict):
            raise CodesFileError(f"{path}: corrupt codes file header")
        version = header.get("format_version")
        if version not in READABLE_VERSIONS:
            raise CodesFileError(
                f"{path}: codes file format {version} is not supported "
                f"(this version reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        missing = [k for k in HEADER_KEYS if k not in header]
        if missing:
            raise CodesFileError(f"{path}: corrupt codes file header (no {', '.join(missing)})")
        payload = data[start + head_len :]
        shape = header["shape"]
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CodesFileError(f"{path}: corrupt codes file header (shape {shape!r})")
        count = int(np.prod(shape))
        bits = header.get("bits", 16) if version >= 2 else 16
        if not isinstance(bits, int) or not 1 <= bits <= 16:
            raise CodesFileError(f"{path}: corrupt codes file header (bits {bits!r})")
        expected = packed_size(count, bits) if version >= 2 else count * 2
        if len(payload) != expected:
            raise CodesFileError(
                f"{path}: truncated or padded codes file ({len(payload)} payload bytes, "
                f"expected {expected})"
            )
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise CodesFileError(f"{path}: corrupt codes file (payload checksum mismatch)")
        flat = (unpack_codes(payload, count, bits) if version >= 2
                else np.frombuffer(payload, dtype="<i2").astype(np.int64))
        codes = torch.from_numpy(flat).reshape(shape)
        return cls(
            codes=codes,
            codec_id=header["codec_id"],
            weights_hash=header["weights_hash"],
            sample_rate=header["sample_rate"],
            length=header["length"],
            n_quantizers=header["n_quantizers"],
        )

    def check_codec(self, codec: Codec) -> None:
        """Refuse to decode codes made by another codec or other weights."""
        if self.codec_id != codec.codec_id or self.weights_hash != codec.weights_hash():
            raise CodesFileError(
                f"codes were made by codec {self.codec_id!r} (weights {self.weights_hash}), "
                f"not by {codec.codec_id!r} (weights {codec.weights_hash()})"
            )
        if int(self.codes.max()) >= codec.codebook_size or self.n_quantizers > codec.n_codebooks:
            raise CodesFileError("codes are out of range for this codec")
