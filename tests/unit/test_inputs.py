"""Files that are not images inside a submitted folder are reported by name, by `enhance` and `submit` alike."""
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from shared.cli import cli
from shared.db import Database
from shared.config import Settings
from shared.imageio import Picture, write_image
from shared.inputs import list_images
from shared.models import ImageJob


@pytest.fixture
def mixed(tmp_path, photo):
    """A folder with two images (one nested, one without a suffix) and three files that are not images."""
    folder = tmp_path / "mixed"
    pixels = (photo[:32, :32] * 255).astype(np.uint8)
    write_image(folder / "a.png", Picture(pixels, "PNG"))
    write_image(folder / "nested" / "b.jpg", Picture(pixels, "JPEG"))
    (folder / "c-no-suffix").write_bytes((folder / "a.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_listing_recognises_images_by_their_bytes_and_names_the_rest(mixed):
    listing = list_images([mixed])
    assert [str(rel) for _p, rel in listing.images] == ["a.png", "c-no-suffix", "nested/b.jpg"]
    assert {p.name: why for p, why in listing.skipped} == {
        ".DS_Store": "not a supported image (PNG, JPEG, TIFF, WebP or BMP expected)",
        "notes.txt": "not a supported image (PNG, JPEG, TIFF, WebP or BMP expected)",
        "empty.png": "empty file"}
    named = list_images([mixed / "notes.txt"])  # named on the command line: used, so it fails alone, named
    assert [p.name for p, _rel in named.images] == ["notes.txt"] and not named.skipped
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images([mixed / "nope"])


def test_enhance_reports_what_it_skips(mixed, tmp_path):
    result = CliRunner().invoke(cli, ["enhance", str(mixed), "--out", str(tmp_path / "out")])
    assert f"skipped {mixed / 'notes.txt'}: not a supported image" in result.output
    assert f"skipped {mixed / 'empty.png'}: empty file" in result.output
    # the suffix-less image is read (by its bytes), then cannot be written without a format: it fails alone
    assert "2 sharpened" in result.output and "1 failed" in result.output and "c-no-suffix" in result.output
    assert (tmp_path / "out" / "nested" / "b.jpg").is_file()


def test_submit_reports_what_it_skips(mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path / "var"))
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["submit", str(mixed)])
    assert result.exit_code == 0, result.output
    assert f"skipped {mixed / 'notes.txt'}: not a supported image" in result.output
    assert f"skipped {mixed / '.DS_Store'}: not a supported image" in result.output
    assert "queue is not reachable" in result.output  # no stack runs here: the batch waits, recorded
    db = Database(Settings.from_env())
    with db.session() as s:
        names = sorted(s.scalars(select(ImageJob.original_name)))
    db.dispose()
    assert names == ["a.png", "b.jpg", "c-no-suffix"]
