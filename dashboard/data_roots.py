"""The training-data folders the dashboard offers: those under the configured roots (``SHARPEN_DATA_ROOTS``).

A request names a folder by its id (``photos`` under a root named ``data`` is ``data/photos``), and the id
is looked up in this list, made again from the disk: a path the request makes up is never opened. A folder
is offered when it holds images, or is in DIV2K layout (``DIV2K_train_HR/``, and ``DIV2K_valid_HR/`` as its
validation split); folders are looked for down to ``MAX_DEPTH`` below a root, hidden ones and links that
leave the root skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.inputs import training_images

MAX_DEPTH = 3
MAX_FOLDERS = 500  # folders looked at per root: a root pointed at a huge tree stays cheap to list


@dataclass(frozen=True)
class DataFolder:
    id: str           # what a form or API request sends
    path: Path        # what the trainer is given
    images: int       # training images (DIV2K layout: in DIV2K_train_HR)
    layout: str       # "DIV2K" (its own validation split) or "folder" (the last 15 % validate)

    def describe(self) -> str:
        split = "DIV2K layout" if self.layout == "DIV2K" else "validation: the last 15 %"
        return f"{self.id} — {self.images} image{'s' if self.images != 1 else ''} ({split})"


def _root_names(roots: tuple[Path, ...]) -> list[str]:
    names = [r.name or "root" for r in roots]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def _count(folder: Path) -> int:
    try:
        return len(training_images(folder))
    except OSError:
        return 0


def data_folders(roots: tuple[Path, ...]) -> list[DataFolder]:
    """Every folder under ``roots`` that training can use, in order (roots first, then by path)."""
    found: list[DataFolder] = []
    for root, name in zip(roots, _root_names(roots)):
        if not root.is_dir():
            continue
        real_root = root.resolve()
        seen = 0
        queue = [(root, 0)]
        while queue and seen < MAX_FOLDERS:
            folder, depth = queue.pop(0)
            seen += 1
            rel = folder.relative_to(root).as_posix()
            fid = name if rel == "." else f"{name}/{rel}"
            if (folder / "DIV2K_train_HR").is_dir():
                found.append(DataFolder(fid, folder, _count(folder / "DIV2K_train_HR"), "DIV2K"))
                continue  # its halves are not offered on their own
            n = _count(folder)
            if n:
                found.append(DataFolder(fid, folder, n, "folder"))
            if depth >= MAX_DEPTH:
                continue
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            queue += [(c, depth + 1) for c in children if c.resolve().is_relative_to(real_root)]
    return found


class UnknownDataFolder(ValueError):
    pass


def choose_folders(ids: list[str], roots: tuple[Path, ...]) -> list[DataFolder]:
    """The folders named by ``ids``; UnknownDataFolder for an id that is not one of them (e.g. a path)."""
    if not ids:
        raise UnknownDataFolder("choose at least one data folder")
    offered = {f.id: f for f in data_folders(roots)}
    chosen = []
    for fid in ids:
        if fid not in offered:
            where = ", ".join(str(r) for r in roots) or "none configured"
            raise UnknownDataFolder(
                f"unknown data folder {fid!r}: choose one of the folders under the configured data roots "
                f"(SHARPEN_DATA_ROOTS: {where}); GET /api/v1/runs/options lists them")
        if offered[fid] not in chosen:
            chosen.append(offered[fid])
    return chosen
