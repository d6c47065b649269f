"""From an upload (files and/or .zip archives) to a batch: validate, stream to disk, create, enqueue.

Used by the upload page and by ``POST /api/v1/batches``. Nothing is sharpened here: files go to storage and
``create_batch``/``enqueue_batch`` do the rest. Uploaded bytes are spooled to files under the storage root
by the request parser (``UploadRequest``), never held whole in memory.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flask import Request

from scheduler.enqueue import InputFile, create_batch, enqueue_batch
from shared.models import MODES
from shared.storage import safe_suffix

from .queue import QueueUnreachable
from .zipsafe import Entry, UnsafeArchive, extract_zip, in_reference_folder

ZIP_MAGIC = b"PK\x03\x04"


class UploadError(ValueError):
    """A submission refused, with the HTTP status to answer (400 bad request, 413 too large)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class UploadRequest(Request):
    """Spools uploaded files to the storage root (not /tmp, which may be small or in memory)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        from .context import current
        folder = current().storage.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=folder)


@dataclass
class BatchRequest:
    mode: str
    sigma: float | None
    name: str | None


def parse_fields(form) -> BatchRequest:
    mode = (form.get("mode") or "restore").strip()
    if mode not in MODES:
        raise UploadError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    sigma = None
    raw = (form.get("sigma") or "").strip()
    if raw:
        try:
            sigma = float(raw)
        except ValueError:
            raise UploadError(f"sigma must be a number, got {raw!r}") from None
        if not math.isfinite(sigma) or not 0 < sigma <= 20:
            raise UploadError("sigma must be between 0 and 20")
    if mode == "synthetic" and sigma is None:
        raise UploadError("synthetic mode needs a blur sigma (σ > 0), e.g. sigma=2")
    name = (form.get("name") or "").strip()[:200] or None
    return BatchRequest(mode, sigma if mode == "synthetic" else None, name)


def _is_zip(storage_file) -> bool:
    head = storage_file.stream.read(4)
    storage_file.stream.seek(0)
    return head == ZIP_MAGIC or (storage_file.filename or "").lower().endswith(".zip")


def save_files(files, references, workdir: Path, config) -> list[Entry]:
    """Write every uploaded file (and every entry of every zip) into ``workdir``; returns them in order."""
    entries: list[Entry] = []
    for field, is_ref in ((files, False), (references, True)):
        for f in field:
            if not f or not f.filename:
                continue  # an empty file input sends a part with no name
            if _is_zip(f):
                src = workdir / f"upload-{len(entries)}.zip"
                f.save(src)
                left = config.max_files - len(entries)
                found = extract_zip(src, workdir, first_index=len(entries), max_entries=max(0, left),
                                    max_total=config.max_unzipped_bytes, max_ratio=config.max_zip_ratio)
                src.unlink()
                entries += [Entry(e.name, e.path, e.reference or is_ref) for e in found]
            else:
                if len(entries) >= config.max_files:
                    raise UploadError(f"more than {config.max_files} files in one batch", 413)
                path = workdir / f"{len(entries)}{safe_suffix(f.filename)}"
                f.save(path)
                entries.append(Entry(f.filename, path, is_ref or in_reference_folder(f.filename)))
    return entries


def inputs_for(entries: list[Entry], mode: str) -> list[InputFile]:
    """Images to sharpen; in paired mode each gets the reference with the same file stem."""
    inputs = [InputFile(e.name, path=e.path) for e in entries if not e.reference]
    if mode == "paired":
        refs: dict[str, Entry] = {}
        for e in entries:
            if e.reference:
                refs.setdefault(PurePosixPath(e.name).stem, e)
        for item in inputs:
            ref = refs.get(PurePosixPath(item.name).stem)
            item.reference = InputFile(ref.name, path=ref.path) if ref else None
    return inputs


def default_name(files, inputs: list[InputFile]) -> str:
    """What the user sent: the zip's name, the folder's name, or the first file's (and how many more)."""
    sent = [f.filename for f in files if f and f.filename]
    first = PurePosixPath(sent[0]) if sent else PurePosixPath(inputs[0].name)
    if len(sent) == 1:
        return first.name
    if len(first.parts) > 1:
        return first.parts[0]
    return f"{first.name} and {len(sent) - 1} more"


def submit_upload(state, files, references, form) -> tuple[int, bool]:
    """Create and enqueue a batch from a request's files; returns (batch id, whether it was sent now)."""
    fields = parse_fields(form)
    workdir = state.storage.root / "uploads" / uuid.uuid4().hex
    workdir.mkdir(parents=True)
    try:
        try:
            entries = save_files(files, references, workdir, state.config)
        except UnsafeArchive as exc:
            raise UploadError(str(exc), exc.status) from exc
        inputs = inputs_for(entries, fields.mode)
        if not inputs:
            raise UploadError("no files: choose images, a folder or a .zip" if not entries else
                              "no images to sharpen: every file was a reference")
        if fields.mode == "paired" and not any(i.reference for i in inputs):
            raise UploadError("paired mode needs reference images: a second set of files with the same names, "
                              "or a reference/ folder inside the zip")
        try:
            batch_id = create_batch(state.db, state.storage, inputs, mode=fields.mode, sigma=fields.sigma,
                                    name=fields.name or default_name(files, inputs))
        except ValueError as exc:
            raise UploadError(str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        enqueue_batch(state.db, state.queue.send, batch_id, state.settings.chunk_size)
        return batch_id, True
    except QueueUnreachable:
        return batch_id, False  # recorded and queued; the scheduler sends it once the queue is back
