"""Readers for the non-zip archive formats that hold labelled audio in Debian packages.

- Qt binary resources (`.rcc`, GCompris 3.x keeps every activity's data in one): header `qres`,
  u32 version (1-3), u32 offsets of the tree, data and names sections (all big-endian). Tree
  nodes are 14 bytes (version 1) or 22 (with a u64 timestamp): u32 name offset, u16 flags, then
  for a directory u32 child count + u32 first child, for a file u16 country + u16 language + u32
  data offset. Names: u16 length (UTF-16 units), u32 hash, UTF-16BE text. Data: u32 size, then
  the payload; flag 0x01 = zlib with a u32 uncompressed size first (qCompress), 0x04 = zstd.
- OpenClonk groups (`.ocg`, `.ocd`, `.ocf`: C4Group): a gzip stream whose magic 1f 8b is
  written 1e 8c; inside, a 204-byte header scrambled by XOR 237 and swapping bytes i and i+2 of
  every triple (id `RedWolf Design GrpFolder`, i32 entry count at byte 36), then per entry 316
  bytes: a 260-byte name and i32 packed, child, size, reserved, offset (from the end of the
  entry table). A child group has the same layout, not gzipped again: members of nested groups
  are named `Outer.ocg/Inner.ocg/file.ogg`.
- Transport Tycoon sound banks (`.cat`, OpenTTD's OpenSFX): a table of N little-endian u32
  (offset, size) pairs (the first offset is 8 N; bit 31 of an offset is a format flag), and at
  each offset a u8 name length, the NUL-terminated name (OpenSFX: `"Sheep". Original ...`), then
  a RIFF/WAVE file.
- Seven Kingdoms resource packs (`.res`, 7kaa's `A_WAVE1.RES` / `A_WAVE2.RES`): a little-endian
  u16 count N, then N + 1 index entries of 13 bytes (a NUL-padded 9-byte name, a u32 absolute
  offset); member i runs from its offset to the next entry's (the last entry only marks the end).
  The sound packs' members are RIFF/WAVE files, written as `<NAME>.wav`.

`unpack(archive, dest)` writes the audio members under `dest` (member paths kept for .rcc,
`NN_<title>.wav` for .cat), the `_unz/<archive name>/` layout `debian.extract` uses for zips.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import zlib
from pathlib import Path

from .debian import AUDIO_EXTENSIONS

RCC_COMPRESSED, RCC_DIRECTORY, RCC_ZSTD = 0x01, 0x02, 0x04
C4_HEADER, C4_ENTRY, C4_ID = 204, 316, b"RedWolf Design GrpFolder"


class ArchiveError(ValueError):
    """A file that is not the archive format its name says."""


def _zstd(raw: bytes) -> bytes:
    try:
        return subprocess.run(["zstd", "-d", "-c", "-q"], input=raw, stdout=subprocess.PIPE,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ArchiveError(f"zstd-compressed resource and no working `zstd` command: {e}") from e


def read_rcc(path) -> list[tuple[str, bytes]]:
    """Every file of a Qt .rcc as (resource path, decompressed bytes), in tree order."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"qres" or len(buf) < 20:
        raise ArchiveError(f"{path}: not a Qt resource file (starts {buf[:4]!r})")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    if version not in (1, 2, 3):
        raise ArchiveError(f"{path}: unsupported rcc version {version}")
    node_size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", buf[names + offset:names + offset + 2])
        return buf[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    def payload(flags: int, offset: int) -> bytes:
        (size,) = struct.unpack(">I", buf[data + offset:data + offset + 4])
        raw = buf[data + offset + 4:data + offset + 4 + size]
        if flags & RCC_COMPRESSED:
            out = zlib.decompress(raw[4:])
            if len(out) != struct.unpack(">I", raw[:4])[0]:
                raise ArchiveError(f"{path}: zlib member of the wrong size")
            return out
        return _zstd(bytes(raw)) if flags & RCC_ZSTD else bytes(raw)

    out, stack = [], [(0, "")]
    while stack:
        index, prefix = stack.pop()
        pos = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", buf[pos:pos + 6])
        here = f"{prefix}/{name(name_offset)}" if index else ""
        if flags & RCC_DIRECTORY:
            count, first = struct.unpack(">II", buf[pos + 6:pos + 14])
            stack += [(child, here) for child in range(first, first + count)]
        else:
            (offset,) = struct.unpack(">I", buf[pos + 10:pos + 14])
            out.append((here.lstrip("/"), payload(flags, offset)))
    return out


def _c4_members(raw: bytes, base: int, prefix: str, path) -> list[tuple[str, bytes]]:
    head = bytearray(b ^ 237 for b in raw[base:base + C4_HEADER])
    for i in range(0, len(head) - 2, 3):
        head[i], head[i + 2] = head[i + 2], head[i]
    if not head.startswith(C4_ID):
        raise ArchiveError(f"{path}: not an OpenClonk group at byte {base}")
    (count,) = struct.unpack_from("<i", head, 36)
    table = base + C4_HEADER
    data = table + count * C4_ENTRY
    out = []
    for i in range(count):
        entry = raw[table + i * C4_ENTRY:table + (i + 1) * C4_ENTRY]
        name = entry[:260].split(b"\0", 1)[0].decode("latin-1")
        _, child, size, _, offset = struct.unpack_from("<5i", entry, 260)
        if child:
            out += _c4_members(raw, data + offset, f"{prefix}{name}/", path)
        else:
            out.append((prefix + name, raw[data + offset:data + offset + size]))
    return out


def read_c4group(path) -> list[tuple[str, bytes]]:
    """Every file of an OpenClonk group, nested groups included, as (member path, bytes)."""
    buf = Path(path).read_bytes()
    if buf[:2] not in (b"\x1e\x8c", b"\x1f\x8b"):
        raise ArchiveError(f"{path}: not a packed OpenClonk group (starts {buf[:2]!r})")
    try:
        raw = gzip.decompress(b"\x1f\x8b" + buf[2:])
    except (OSError, EOFError) as e:
        raise ArchiveError(f"{path}: broken OpenClonk group: {e}") from e
    return _c4_members(raw, 0, "", path)


def cat_member_name(index: int, name: str) -> str:
    """`NN_<title>.wav`: the quoted title of an OpenSFX entry name (else the whole name), made
    file-safe; the index keeps repeated titles apart."""
    title = name[1:name.index('"', 1)] if name.startswith('"') and '"' in name[1:] else name
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in title).strip("_")[:60] or "unnamed"
    return f"{index:02d}_{safe if safe.lower().endswith('.wav') else safe + '.wav'}"


def read_cat(path) -> list[tuple[str, bytes]]:
    """Every sample of a .cat sound bank as (cat_member_name, RIFF/WAVE bytes)."""
    buf = Path(path).read_bytes()
    first = struct.unpack("<I", buf[:4])[0] & 0x7FFFFFFF if len(buf) >= 8 else 0
    if first == 0 or first % 8 or first > len(buf):
        raise ArchiveError(f"{path}: not a .cat sound bank (first offset {first})")
    out = []
    for i in range(first // 8):
        offset, size = struct.unpack("<II", buf[8 * i:8 * i + 8])
        offset &= 0x7FFFFFFF
        if size == 0 or offset + size > len(buf):
            raise ArchiveError(f"{path}: entry {i} lies outside the file")
        n = buf[offset]
        name = buf[offset + 1:offset + 1 + n].split(b"\0", 1)[0].decode("latin-1")
        out.append((cat_member_name(i, name), buf[offset + 1 + n:offset + size]))
    return out


def read_res(path) -> list[tuple[str, bytes]]:
    """Every member of a Seven Kingdoms .res pack: (`NAME.wav` for RIFF members, else NAME, bytes)."""
    buf = Path(path).read_bytes()
    n = struct.unpack("<H", buf[:2])[0] if len(buf) >= 2 else 0
    if n == 0 or 2 + 13 * (n + 1) > len(buf):
        raise ArchiveError(f"{path}: not a Seven Kingdoms resource pack ({n} entries)")
    index = [(buf[2 + 13 * i: 11 + 13 * i].split(b"\0", 1)[0].decode("latin-1"),
              struct.unpack("<I", buf[11 + 13 * i: 15 + 13 * i])[0]) for i in range(n + 1)]
    out = []
    for (name, start), (_, end) in zip(index, index[1:]):
        if not 2 + 13 * (n + 1) <= start <= end <= len(buf) or not name:
            raise ArchiveError(f"{path}: entry {name!r} lies outside the file")
        data = buf[start:end]
        out.append((f"{name}.wav" if data[:4] == b"RIFF" else name, data))
    return out


READERS = {".rcc": read_rcc, ".cat": read_cat, ".res": read_res, ".ocg": read_c4group, ".ocd": read_c4group,
           ".ocf": read_c4group}
ARCHIVE_READERS = tuple(READERS)


def unpack(archive, dest, audio_extensions=AUDIO_EXTENSIONS) -> list[Path]:
    """Write `archive`'s audio members under `dest` (paths that would leave it are refused)."""
    archive, dest = Path(archive), Path(dest)
    reader = READERS.get(archive.suffix.lower())
    if reader is None:
        raise ArchiveError(f"{archive}: no reader for {archive.suffix!r} (have {ARCHIVE_READERS})")
    written = []
    for member, data in reader(archive):
        target = (dest / member).resolve()
        if not member.lower().endswith(audio_extensions):
            continue
        if dest.resolve() not in target.parents:
            raise ArchiveError(f"{archive}: member {member!r} would be written outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
