"""Files a batch page shows or hands out: originals, display copies, cached thumbnails, the zip of outputs.

Every path comes from the database row of an image (``input_path`` etc., relative to the storage root);
no route reads a path from the request. Thumbnails and display copies are made once and cached under
``<storage>/thumbs/<batch>/``, keyed by the source file's modification time (a retried image gets new ones).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import cv2
import numpy as np

from shared.imageio import read_image, to_model_input
from shared.models import ImageJob
from shared.storage import Storage, atomic_write

KINDS = ("input", "output", "reference")
BROWSER_FORMATS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
THUMB_SIDE = 320


def stored_path(storage: Storage, job: ImageJob, kind: str) -> Path | None:
    """The file of one image of one kind, if it exists yet (synthetic inputs appear when processed)."""
    stored = {"input": job.input_path, "output": job.output_path, "reference": job.reference_path}[kind]
    if not stored:
        return None
    path = storage.resolve(stored)
    return path if path.is_file() else None


def _cached(storage: Storage, job: ImageJob, kind: str, src: Path, label: str, suffix: str) -> Path:
    stamp = src.stat().st_mtime_ns
    return storage.root / "thumbs" / str(job.batch_id) / f"{job.id}-{kind}-{label}-{stamp}{suffix}"


def _rgb8(src: Path) -> np.ndarray:
    rgb, _alpha = to_model_input(read_image(src))
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def thumbnail(storage: Storage, job: ImageJob, kind: str) -> Path | None:
    """A JPEG at most THUMB_SIDE pixels on its longer side, made on first request and kept."""
    src = stored_path(storage, job, kind)
    if src is None:
        return None
    dst = _cached(storage, job, kind, src, "thumb", ".jpg")
    if not dst.exists():
        rgb = _rgb8(src)
        scale = THUMB_SIDE / max(rgb.shape[:2])
        if scale < 1:
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        atomic_write(dst, data.tobytes())
    return dst


def display_copy(storage: Storage, job: ImageJob, kind: str) -> Path | None:
    """The file itself when a browser shows it (PNG, JPEG, WebP, BMP), else a cached full-size PNG."""
    src = stored_path(storage, job, kind)
    if src is None or src.suffix.lower() in BROWSER_FORMATS:
        return src
    dst = _cached(storage, job, kind, src, "view", ".png")
    if not dst.exists():
        ok, data = cv2.imencode(".png", cv2.cvtColor(_rgb8(src), cv2.COLOR_RGB2BGR))
        atomic_write(dst, data.tobytes())
    return dst


def download_name(job: ImageJob, path: Path) -> str:
    """The user's file name (without folders), with the suffix of the file's real format."""
    name = PurePosixPath(job.original_name.replace("\\", "/")).name or f"image-{job.position}"
    if PurePosixPath(name).suffix.lower() != path.suffix.lower():
        name = PurePosixPath(name).stem + path.suffix
    return name


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are taken out as they come (zipfile streams into it)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        self.position += len(b)
        return len(b)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_outputs(storage: Storage, jobs: Iterable[ImageJob], chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream a zip of the outputs under their users' names, a chunk at a time (never whole in memory)."""
    sink = _Sink()
    used: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for job in jobs:
            src = stored_path(storage, job, "output")
            if src is None:
                continue
            name = download_name(job, src)
            if name in used:  # two inputs with one name: keep both
                name = f"{job.position:05d}-{name}"
            used.add(name)
            with open(src, "rb") as f, zf.open(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)),
                                               "w", force_zip64=True) as out:
                while data := f.read(chunk):
                    out.write(data)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
