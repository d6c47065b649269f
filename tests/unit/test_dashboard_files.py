"""Files the dashboard hands out: display copies, cached thumbnails, the streamed zip of outputs."""
from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import numpy as np

from dashboard import files
from shared.imageio import Picture, read_image, write_image
from shared.storage import Storage


def job(storage: Storage, job_id: int, name: str, suffix: str, pixels: np.ndarray, position: int = 0):
    out = storage.output_path(1, job_id, suffix)
    write_image(out, Picture(pixels, files_format(suffix), None))
    return SimpleNamespace(id=job_id, batch_id=1, position=position, original_name=name, input_path=None,
                           reference_path=None, output_path=storage.relative(out))


def files_format(suffix: str) -> str:
    return {".png": "PNG", ".tif": "TIFF", ".jpg": "JPEG"}[suffix]


def test_display_copy_and_thumbnail_are_made_once(tmp_path):
    storage = Storage(tmp_path)
    rgb16 = (np.random.default_rng(0).random((600, 400, 3)) * 65535).astype(np.uint16)
    tiff = job(storage, 7, "scan.tif", ".tif", rgb16)
    view = files.display_copy(storage, tiff, "output")
    assert view.suffix == ".png" and read_image(view).width == 400  # browsers do not show TIFF
    stamp = view.stat().st_mtime_ns
    assert files.display_copy(storage, tiff, "output") == view and view.stat().st_mtime_ns == stamp
    thumb = files.thumbnail(storage, tiff, "output")
    pic = read_image(thumb)
    assert (pic.format, max(pic.width, pic.height)) == ("JPEG", files.THUMB_SIDE)
    assert files.thumbnail(storage, tiff, "input") is None  # no such file: nothing made
    png = job(storage, 8, "a.png", ".png", np.zeros((10, 10, 3), np.uint8))
    assert files.display_copy(storage, png, "output") == storage.resolve(png.output_path)  # shown as it is


def test_zip_of_outputs_streams_under_the_users_names(tmp_path):
    storage = Storage(tmp_path)
    img = np.zeros((8, 8, 3), np.uint8)
    jobs = [job(storage, 1, "trip/a.png", ".png", img, 0), job(storage, 2, "other/a.png", ".png", img, 1),
            job(storage, 3, "b.jpeg", ".png", img, 2)]
    chunks = list(files.zip_outputs(storage, jobs, chunk=64))
    assert len(chunks) > 3  # streamed in pieces, not built whole
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert zf.namelist() == ["a.png", "00001-a.png", "b.png"] and zf.testzip() is None
