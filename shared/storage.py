"""Files under one storage root. Names on disk are ids, never user-supplied names; writes are atomic.

    <root>/batches/<batch>/input/<job><ext>      what the user sent (synthetic: the blurred copy)
    <root>/batches/<batch>/reference/<job><ext>  ground truth (paired, synthetic)
    <root>/batches/<batch>/output/<job><ext>     the sharpened image, same format as the input
    <root>/models/   registered model files      <root>/runs/<run>/   training runs
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .imageio import EXTENSIONS


def safe_suffix(name: str) -> str:
    """The file's suffix if it is a known image suffix, else ``.bin`` (the decoder then says what it is)."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in EXTENSIONS else ".bin"


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename; ``mode`` e.g. 0o644 (mkstemp's is 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Storage:
    def __init__(self, root: Path):
        self.root = Path(root).absolute()

    def batch_dir(self, batch_id: int) -> Path:
        return self.root / "batches" / str(batch_id)

    def input_path(self, batch_id: int, job_id: int, original_name: str) -> Path:
        return self.batch_dir(batch_id) / "input" / f"{job_id}{safe_suffix(original_name)}"

    def reference_path(self, batch_id: int, job_id: int, original_name: str) -> Path:
        return self.batch_dir(batch_id) / "reference" / f"{job_id}{safe_suffix(original_name)}"

    def output_path(self, batch_id: int, job_id: int, suffix: str) -> Path:
        return self.batch_dir(batch_id) / "output" / f"{job_id}{suffix}"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def run_dir(self, run_id: int) -> Path:
        return self.root / "runs" / str(run_id)

    def relative(self, path: Path) -> str:
        """Paths in the database are relative to the root, so the root can move (or be a shared volume)."""
        return str(Path(path).absolute().relative_to(self.root))

    def resolve(self, stored: str) -> Path:
        return self.root / stored
