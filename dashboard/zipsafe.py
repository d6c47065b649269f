"""Reading an uploaded .zip without trusting it.

Refused (the whole archive, with the entry named): names that climb out or are absolute (zip slip),
symbolic links, encrypted entries, archives inside the archive, more entries than allowed, and
decompression bombs — a total uncompressed size over the limit, or an entry that inflates more than
``max_ratio`` times. Sizes are checked from the headers first and again while inflating (headers can lie).
Entries are written under names we make (``0.png``, ``1.jpg``…), never under the names inside the zip.
Directory entries, ``__MACOSX/`` and hidden files are skipped; anything else that is not an image goes on
as an image job that fails alone, named.
"""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shared.storage import safe_suffix

ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"}
ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh", b"\xfd7zXZ")
CHUNK = 1 << 20
RATIO_FLOOR = 1 << 20  # entries smaller than 1 MiB uncompressed are never called bombs (text compresses well)


class UnsafeArchive(ValueError):
    """An archive refused as a whole; ``status`` is the HTTP status to answer with (400 or 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Entry:
    name: str           # the entry's name inside the zip (shown to the user, never used as a path)
    path: Path          # where we wrote it
    reference: bool     # inside a folder named reference/ (paired mode's ground truth)


def unsafe_name(name: str) -> bool:
    if not name or "\x00" in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return any(part == ".." for part in re.split(r"[\\/]", name))


def is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return name.endswith("/") or parts[0] == "__MACOSX" or parts[-1].startswith(".")


def in_reference_folder(name: str) -> bool:
    return any(part.lower() in ("reference", "references") for part in PurePosixPath(name).parts[:-1])


def extract_zip(src: Path, dest: Path, *, first_index: int, max_entries: int, max_total: int,
                max_ratio: int) -> list[Entry]:
    """Check every entry of ``src``, then inflate the files into ``dest`` as ``<index><suffix>``."""
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"not a readable zip file ({exc})") from exc
    with zf:
        infos = [i for i in zf.infolist() if not skipped(i.filename)]
        for info in zf.infolist():
            if unsafe_name(info.filename):
                raise UnsafeArchive(f"{info.filename!r}: a path outside the archive (zip slip); refused")
            if is_symlink(info):
                raise UnsafeArchive(f"{info.filename!r}: a symbolic link; refused")
        if len(infos) > max_entries:
            raise UnsafeArchive(f"the zip holds {len(infos)} files, more than the {max_entries} allowed", 413)
        declared = 0
        for info in infos:
            if info.flag_bits & 0x1:
                raise UnsafeArchive(f"{info.filename!r}: encrypted entries are not supported")
            if PurePosixPath(info.filename).suffix.lower() in ARCHIVE_SUFFIXES:
                raise UnsafeArchive(f"{info.filename!r}: archives inside the archive are not accepted")
            declared += info.file_size
            if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(1, info.compress_size):
                raise UnsafeArchive(f"{info.filename!r}: inflates {info.file_size // max(1, info.compress_size)}"
                                    f" times (a decompression bomb?); refused")
        if declared > max_total:
            raise UnsafeArchive(f"the zip inflates to {declared / 2**20:.0f} MiB, more than the "
                                f"{max_total / 2**20:.0f} MiB allowed", 413)
        entries, written = [], 0
        for index, info in enumerate(infos, start=first_index):
            path = dest / f"{index}{safe_suffix(info.filename)}"
            with zf.open(info) as f, open(path, "wb") as out:
                size = 0
                while chunk := f.read(CHUNK):
                    if size == 0 and chunk.startswith(ARCHIVE_MAGIC):
                        raise UnsafeArchive(f"{info.filename!r}: archives inside the archive are not accepted")
                    size += len(chunk)
                    written += len(chunk)
                    if size > info.file_size or written > max_total:  # headers lied
                        raise UnsafeArchive(f"{info.filename!r}: inflates beyond its declared size; refused", 413)
                    out.write(chunk)
            entries.append(Entry(info.filename, path, in_reference_folder(info.filename)))
        return entries
