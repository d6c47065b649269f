"""Zip extraction refuses what could escape or explode, and keeps everything else."""
from __future__ import annotations

import pytest

from dashboard.zipsafe import UnsafeArchive, extract_zip, unsafe_name
from tests import zips

LIMITS = dict(first_index=0, max_entries=100, max_total=32 << 20, max_ratio=200)


def extract(tmp_path, data: bytes, **limits):
    src = tmp_path / "in.zip"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return extract_zip(src, out, **{**LIMITS, **limits}), out


@pytest.mark.parametrize("name", ["../a.png", "a/../../b.png", "/etc/passwd", "C:/x.png", "\\\\server\\x.png",
                                  "a\\..\\..\\b.png", ""])
def test_unsafe_names(name):
    assert unsafe_name(name)


@pytest.mark.parametrize("name", ["a.png", "folder/b.png", "reference/a.png", "a..b.png"])
def test_safe_names(name):
    assert not unsafe_name(name)


@pytest.mark.parametrize("make, words, status", [
    (zips.zip_slip, "zip slip", 400), (zips.zip_absolute, "zip slip", 400), (zips.zip_symlink, "symbolic link", 400),
    (zips.zip_nested, "archives inside", 400), (zips.zip_bomb, "decompression bomb", 400)])
def test_refused_archives(tmp_path, make, words, status):
    with pytest.raises(UnsafeArchive, match=words) as info:
        extract(tmp_path, make())
    assert info.value.status == status
    assert not any((tmp_path / "out").iterdir())  # checked before anything is written


def test_total_size_and_entry_count_limits(tmp_path):
    data = zips.zip_bytes({f"{i}.png": bytes(1 << 20) for i in range(4)}, compression=0)
    with pytest.raises(UnsafeArchive, match="MiB allowed") as info:
        extract(tmp_path, data, max_total=3 << 20)
    assert info.value.status == 413
    with pytest.raises(UnsafeArchive, match="more than the 3 allowed"):
        extract(tmp_path, data, max_entries=3)


def test_a_disguised_nested_archive_is_found_by_its_bytes(tmp_path):
    with pytest.raises(UnsafeArchive, match="archives inside"):
        extract(tmp_path, zips.zip_bytes({"photo.png": zips.zip_bytes({"a.png": b"x"})}))


def test_not_a_zip(tmp_path):
    with pytest.raises(UnsafeArchive, match="not a readable zip"):
        extract(tmp_path, b"PK\x03\x04 but nothing else")


def test_ordinary_entries_are_written_under_our_names(tmp_path):
    entries, out = extract(tmp_path, zips.zip_bytes({
        "photos/a.png": b"A", "photos/notes.txt": b"text", "reference/a.png": b"R", "__MACOSX/._a.png": b"junk",
        "photos/.DS_Store": b"junk", "photos/": b""}), first_index=5)
    assert [(e.name, e.path.name, e.reference) for e in entries] == [
        ("photos/a.png", "5.png", False), ("photos/notes.txt", "6.bin", False), ("reference/a.png", "7.png", True)]
    assert (out / "5.png").read_bytes() == b"A" and sorted(p.name for p in out.iterdir()) == ["5.png", "6.bin", "7.png"]
