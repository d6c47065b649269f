"""The photo manifest and the readers behind ``sharpen train fetch-photos``; nothing is downloaded."""
import hashlib
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from shared.cli import cli
from trainer.containers import eet_entries, jpeg_streams, lz4_block, rcc_files
from trainer.photos import (FORBIDDEN_PACKAGES, MIN_VALID, SPLIT_DIRS, PhotoError, check_manifest, collect_photos,
                            load_manifest)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_manifest_is_well_formed(manifest):
    check_manifest(manifest)  # unique ids and photos, known splits, no empty split, groups within one split
    splits = {s: [p for p in manifest if p["split"] == s] for s in SPLIT_DIRS}
    assert len(splits["valid"]) >= MIN_VALID and 10 <= len(splits["tune"]) <= 30
    assert not [p for p in manifest if p["package"].startswith(FORBIDDEN_PACKAGES)]
    for p in manifest:
        assert len(p["sha256"]) == len(p["out_sha256"]) == 64 and p["tags"] and p["licence"]
        assert p["source"] == "python" or (p["version"] and not p["path"].startswith("/"))
    held_out = {t for p in splits["valid"] for t in p["tags"]}
    assert {"bokeh", "macro", "night", "sky"} <= held_out


def test_manifest_check_finds_problems(manifest):
    moved = [dict(p) for p in manifest]
    first_train = next(p for p in moved if p["split"] == "train")
    same_group = next(p for p in moved if p["group"] == first_train["group"] and p is not first_train)
    same_group["split"] = "tune"
    with pytest.raises(ValueError, match="straddles"):
        check_manifest(moved)
    with pytest.raises(ValueError, match="reserved"):
        check_manifest(manifest + [dict(manifest[0], id="x", sha256="0" * 64, package="mate-backgrounds")])
    with pytest.raises(ValueError, match="duplicate id"):
        check_manifest(manifest + [dict(manifest[0], sha256="0" * 64)])


def test_python_photos_rebuild_byte_for_byte(tmp_path, manifest):
    out = tmp_path / "photos"
    result = CliRunner().invoke(cli, ["train", "fetch-photos", "--out", str(out), "--no-debian"])
    assert result.exit_code == 0, result.output
    python = [p for p in manifest if p["source"] == "python"]
    assert python
    for p in python:
        png = out / SPLIT_DIRS[p["split"]] / f"{p['id']}.png"
        assert hashlib.sha256(png.read_bytes()).hexdigest() == p["out_sha256"], p["id"]
    assert len(json.loads((out / "manifest.json").read_text())["photos"]) == len(python)
    assert not (tmp_path / ".cache").exists()  # nothing was downloaded
    written = {f: f.stat().st_mtime_ns for f in out.rglob("*.png")}
    collect_photos(out, only=["python"], log=lambda msg: None)  # idempotent: nothing rewritten
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*.png")} == written


def test_a_changed_original_is_refused(tmp_path, manifest):
    photo = dict(next(p for p in manifest if p["source"] == "python"), sha256="0" * 64)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"photos": [photo]}))
    with pytest.raises(PhotoError, match="manifest expects"):
        collect_photos(tmp_path / "out", manifest=path, log=lambda msg: None)


def _rcc(files: dict[str, tuple[bytes, bool]], version: int = 3) -> bytes:
    """A Qt binary resource holding ``files`` ({name: (bytes, zlib?)}) in one directory 'dir'."""
    names, payload, nodes = b"", b"", []

    def name(s):
        nonlocal names
        off = len(names)
        names += struct.pack(">HI", len(s), 0) + s.encode("utf-16-be")
        return off

    def node(name_off, flags, a, b, data_off=None):
        n = struct.pack(">IH", name_off, flags) + (struct.pack(">II", a, b) if data_off is None
                                                   else struct.pack(">HHI", 0, 0, data_off))
        return n + (b"\0" * 8 if version > 1 else b"")

    nodes.append(node(0, 2, 1, 1))                     # root: one child, node 1
    nodes.append(node(name("dir"), 2, len(files), 2))  # dir: children from node 2
    for fname, (data, compress) in files.items():
        blob = struct.pack(">I", len(data)) + zlib.compress(data) if compress else data
        nodes.append(node(name(fname), 1 if compress else 0, 0, 0, data_off=len(payload)))
        payload += struct.pack(">I", len(blob)) + blob
    header = 24 if version >= 3 else 20
    tree = b"".join(nodes)
    head = b"qres" + struct.pack(">IIII", version, header, header + len(tree), header + len(tree) + len(payload))
    return head + (struct.pack(">I", 0) if version >= 3 else b"") + tree + payload + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader(version):
    files = {"a.webp": (b"RIFF plain bytes", False), "b.txt": (b"hello " * 50, True)}
    assert rcc_files(_rcc(files, version)) == {"/dir/a.webp": b"RIFF plain bytes", "/dir/b.txt": b"hello " * 50}
    with pytest.raises(ValueError):
        rcc_files(b"not a resource")


def _jpeg(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def test_eet_reader_and_jpeg_streams():
    jpeg = _jpeg(0)
    text = b"collection data " * 20
    entries = [("edje/images/0", b"\xbe\xef\xfe\xed" + struct.pack(">II", len(jpeg), 0) + jpeg, len(jpeg) + 12, 0),
               ("edje/file", zlib.compress(text), len(text), 1 | (9 << 3)),
               ("edje/lz4", bytes([0x44]) + b"abcd" + b"\x04\x00" + bytes([0x10]) + b"!", 13, 1 | (10 << 3))]
    table_end = 12 + 24 * len(entries)
    names = b"".join(n.encode() + b"\0" for n, *_ in entries)
    data_at = table_end + len(names)
    table, name_at = b"", table_end
    for name, blob, size, flags in entries:
        table += struct.pack(">6I", data_at, len(blob), size, name_at, len(name) + 1, flags)
        data_at += len(blob)
        name_at += len(name) + 1
    eet = struct.pack(">3I", 0x1EE70F42, len(entries), 0) + table + names + b"".join(e[1] for e in entries)
    got = eet_entries(eet)
    assert got["edje/file"] == text and got["edje/lz4"] == b"abcdabcdabcd!"
    assert jpeg_streams(got["edje/images/0"]) == [jpeg]
    assert list(eet_entries(eet, {"edje/file"})) == ["edje/file"]
    assert jpeg_streams(b"junk" + jpeg + b"\0\0" + _jpeg(1)[:-30]) == [jpeg]  # a truncated stream is no stream
    with pytest.raises(ValueError):
        lz4_block(b"\x10a", 5)
