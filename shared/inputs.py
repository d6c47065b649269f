"""What a user hands to ``submit`` or ``enhance``: files and folders → the image files, and what was skipped.

A file named on the command line is always used (a bad one then fails alone, with its reason). In a folder,
every file is looked at, hidden ones too, and recognised by its first bytes (never by its name): a file that
is not an image is skipped and reported with its name and why, never ignored silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .imageio import EXTENSIONS, NOT_AN_IMAGE, sniff


@dataclass
class Listing:
    images: list[tuple[Path, Path]] = field(default_factory=list)  # (file, its path below the folder given)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it is not used)


def why_not_an_image(path: Path) -> str | None:
    """None for a file whose first bytes are those of a supported image, else the reason it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if not head:
        return "empty file"
    return None if sniff(head) else NOT_AN_IMAGE


def list_images(paths) -> Listing:
    """The images in ``paths`` (files and, recursively, folders, in name order); FileNotFoundError names a
    path that does not exist."""
    found = Listing()
    for item in map(Path, paths):
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if not p.is_file():
                    continue
                reason = why_not_an_image(p)
                if reason:
                    found.skipped.append((p, reason))
                else:
                    found.images.append((p, p.relative_to(item)))
        elif item.is_file():
            found.images.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return found


def training_images(folder: Path) -> list[Path]:
    """Image files directly inside a training folder, by suffix (sorted, so splits are reproducible): the
    trainer reads these, and the dashboard counts them when it offers the folder."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
