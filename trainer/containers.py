"""Readers for the archive formats some free photographs ship in: Qt resource files and Enlightenment Eet files.

Both are small, pure-Python readers of just what the photo set needs:

* ``rcc_files(data)``: {path: bytes} for every file in a binary Qt resource (``.rcc``, magic ``qres``, versions 1-3);
  entries may be stored plain or zlib-compressed (zstd-compressed entries raise ``ValueError``).
* ``eet_entries(data)``: {name: bytes} for every entry of an Eet archive (``.edj``/``.eet``, magic 0x1ee70f42);
  entries may be stored plain, zlib- or lz4-compressed (lz4 block format, decoded here).
* ``jpeg_streams(data)``: the complete JPEG streams (SOI ... EOI) inside a decoded entry.
"""
from __future__ import annotations

import struct
import zlib

RCC_MAGIC = b"qres"
RCC_COMPRESSED, RCC_DIRECTORY, RCC_ZSTD = 1, 2, 4
EET_MAGIC = 0x1EE70F42


def rcc_files(data: bytes) -> dict[str, bytes]:
    """{'/dir/name.ext': bytes} for every file in a Qt binary resource."""
    if data[:4] != RCC_MAGIC:
        raise ValueError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack_from(">4I", data, 4)
    if version not in (1, 2, 3):
        raise ValueError(f"unsupported Qt resource version {version}")
    node_size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        length = struct.unpack_from(">H", data, names + offset)[0]
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    out: dict[str, bytes] = {}

    def walk(node: int, prefix: str) -> None:
        pos = tree + node * node_size
        name_off, flags = struct.unpack_from(">IH", data, pos)
        path = prefix + "/" + name(name_off) if node else ""
        if flags & RCC_DIRECTORY:
            count, first = struct.unpack_from(">II", data, pos + 6)
            for child in range(first, first + count):
                walk(child, path)
            return
        data_off = struct.unpack_from(">I", data, pos + 10)[0]
        size = struct.unpack_from(">I", data, payload + data_off)[0]
        blob = data[payload + data_off + 4:payload + data_off + 4 + size]
        if flags & RCC_ZSTD:
            raise ValueError(f"{path}: zstd-compressed Qt resource entries are not supported")
        if flags & RCC_COMPRESSED:  # qCompress: 4-byte big-endian length, then a zlib stream
            blob = zlib.decompress(blob[4:])
        out[path] = blob

    walk(0, "")
    return out



def _lz4_length(src: bytes, i: int, n: int) -> tuple[int, int]:
    """An LZ4 length nibble ``n`` extended by the 255-run bytes at ``src[i]``; returns (length, next i)."""
    if n == 15:
        while True:
            b = src[i]
            i += 1
            n += b
            if b != 255:
                break
    return n, i

def lz4_block(src: bytes, size: int) -> bytes:
    """Decode one raw lz4 block whose decoded length is ``size``."""
    out = bytearray()
    i = 0
    while i < len(src):
        token = src[i]
        i += 1
        n, i = _lz4_length(src, i, token >> 4)
        out += src[i:i + n]
        i += n
        if i >= len(src):
            break
        back = src[i] | src[i + 1] << 8
        i += 2
        n, i = _lz4_length(src, i, token & 15)
        n += 4
        start = len(out) - back
        if back == 0 or start < 0:
            raise ValueError("corrupt lz4 block")
        for k in range(n):  # overlapping copies repeat the last bytes, so copy one at a time when needed
            out.append(out[start + k])
    if len(out) != size:
        raise ValueError(f"lz4 block decoded to {len(out)} bytes, {size} expected")
    return bytes(out)


def eet_entries(data: bytes, names=None) -> dict[str, bytes]:
    """{name: decoded bytes} for the entries of an Eet archive (all, or those in ``names``); ciphered and alias
    entries are skipped."""
    magic, count, _dictionary = struct.unpack_from(">3I", data, 0)
    if magic != EET_MAGIC:
        raise ValueError("not an Eet file (magic 0x1ee70f42 expected)")
    out = {}
    for k in range(count):
        offset, size, data_size, name_off, name_size, flags = struct.unpack_from(">6I", data, 12 + 24 * k)
        name = data[name_off:name_off + name_size].split(b"\0")[0].decode()
        if flags & 6 or (names is not None and name not in names):  # 2: ciphered, 4: alias (holds a name)
            continue
        blob = data[offset:offset + size]
        if flags & 1:  # bits 3-10: the compression level; 10 and 11 mean lz4 (block format), the others zlib
            blob = lz4_block(blob, data_size) if (flags >> 3) & 0xFF in (10, 11) else zlib.decompress(blob)
        out[name] = blob
    return out


def jpeg_streams(data: bytes) -> list[bytes]:
    """The complete JPEG streams in ``data``: from each SOI marker to its EOI, walking the segments."""
    found, i = [], data.find(b"\xff\xd8\xff")
    while i >= 0:
        end = _jpeg_end(data, i)
        if end:
            found.append(data[i:end])
        i = data.find(b"\xff\xd8\xff", end or i + 2)
    return found


def _jpeg_end(data: bytes, start: int) -> int | None:
    """Index just past the EOI of the JPEG stream at ``start``, or None if it is not a complete one."""
    i = start + 2
    while i + 2 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xD9:
            return i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        if i + 4 > len(data):
            return None
        length = struct.unpack_from(">H", data, i + 2)[0]
        i += 2 + length
        if marker == 0xDA:  # entropy-coded data: runs to the next marker that is not a stuffed 0 or RST
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= len(data):
                    return None
                if data[i + 1] != 0 and not 0xD0 <= data[i + 1] <= 0xD7:
                    break
                i += 2
    return None
