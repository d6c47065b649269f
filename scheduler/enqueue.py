"""Batches: create the rows (and copy the files in), enqueue them after commit, finish them when done.

Messages carry ids only; the rows say what to do. Sending the same ids twice is harmless: a worker claims
an image only while it is queued (or its lease expired).
"""
from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from shared.db import Database
from shared.models import CANCELLED, DONE, FAILED, MODES, QUEUED, RUNNING, Batch, ImageJob, utcnow
from shared.registry import active_model
from shared.storage import Storage, atomic_copy, atomic_write, safe_suffix

SHARPEN_TASK = "sharpen.process_images"
SHARPEN_QUEUE = "sharpen"

# send(task_name, kwargs, queue): the Celery app's send_task in production, anything in tests
Sender = Callable[[str, dict, str], None]


@dataclass
class InputFile:
    """One submitted image: a path on this machine, or bytes (an upload), with the user's file name."""
    name: str
    path: Path | None = None
    data: bytes | None = None
    reference: "InputFile | None" = None

    def copy_to(self, dst: Path) -> None:
        if self.data is not None:
            atomic_write(dst, self.data)
        else:
            atomic_copy(self.path, dst)


def pair_references(inputs: list[InputFile], reference_dir: Path) -> list[InputFile]:
    """Attach to each input the reference image with the same file stem (any image suffix)."""
    by_stem: dict[str, Path] = {}
    for p in sorted(Path(reference_dir).iterdir()):
        if p.is_file():
            by_stem.setdefault(p.stem, p)
    for item in inputs:
        ref = by_stem.get(Path(item.name).stem)
        item.reference = InputFile(ref.name, path=ref) if ref else None
    return inputs


def create_batch(db: Database, storage: Storage, inputs: list[InputFile], *, mode: str = "restore",
                 sigma: float | None = None, name: str | None = None) -> int:
    """Insert a Batch and its ImageJobs, with the files under the storage root; returns the batch id.

    paired: each input needs ``reference``; one without fails at once with a message.
    synthetic: inputs are sharp originals, kept as the reference; the worker blurs them with ``sigma``.
    Files are copied into a staging folder first, so the (short) transaction never waits on file copies.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "synthetic" and not (sigma and sigma > 0):
        raise ValueError("synthetic mode needs a blur σ > 0 (--sigma)")
    if not inputs:
        raise ValueError("a batch needs at least one image")
    staging = storage.root / "staging" / uuid.uuid4().hex
    staged: list[tuple[Path, Path | None]] = []
    for pos, item in enumerate(inputs):
        main = staging / f"{pos}{safe_suffix(item.name)}"
        item.copy_to(main)
        ref = None
        if mode == "paired" and item.reference is not None:
            ref = staging / f"{pos}.ref{safe_suffix(item.reference.name)}"
            item.reference.copy_to(ref)
        staged.append((main, ref))
    try:
        with db.session() as s:
            version = active_model(s)
            batch = Batch(name=(name or inputs[0].name)[:200], mode=mode, status=QUEUED, total=len(inputs),
                          sigma=sigma if mode == "synthetic" else None,
                          model_version_id=version.id, model_sha256=version.sha256)
            s.add(batch)
            s.flush()
            jobs = [ImageJob(batch_id=batch.id, position=pos, original_name=item.name[:500], input_path="",
                             status=QUEUED) for pos, item in enumerate(inputs)]
            s.add_all(jobs)
            s.flush()
            for job, item, (main, ref) in zip(jobs, inputs, staged):
                if mode == "synthetic":  # the original is the reference; the worker writes the blurred input
                    dst = storage.reference_path(batch.id, job.id, item.name)
                    job.reference_path = storage.relative(dst)
                    job.input_path = storage.relative(storage.input_path(batch.id, job.id, "blurred.png"))
                else:
                    dst = storage.input_path(batch.id, job.id, item.name)
                    job.input_path = storage.relative(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(main, dst)
                if mode == "paired" and ref is None:
                    job.status, job.error = FAILED, f"{item.name}: no reference image with the same name"
                    job.finished_at = utcnow()
                elif ref is not None:
                    rdst = storage.reference_path(batch.id, job.id, item.reference.name)
                    rdst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(ref, rdst)
                    job.reference_path = storage.relative(rdst)
            batch_id = batch.id
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    refresh_batch(db, batch_id)  # a batch whose every image failed up front is already finished
    return batch_id


def chunks(ids: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def enqueue_jobs(db: Database, send: Sender, job_ids: list[int], chunk_size: int) -> int:
    """Send ``job_ids`` in chunks and stamp them as sent. Call only after the rows are committed."""
    for part in chunks(job_ids, max(1, chunk_size)):
        send(SHARPEN_TASK, {"job_ids": part}, SHARPEN_QUEUE)
        with db.session() as s:
            s.execute(update(ImageJob).where(ImageJob.id.in_(part)).values(enqueued_at=utcnow()))
    return len(job_ids)


def enqueue_batch(db: Database, send: Sender, batch_id: int, chunk_size: int) -> int:
    """Send every queued image of a committed batch; returns how many were sent."""
    with db.session() as s:
        ids = list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id, ImageJob.status == QUEUED)
                             .order_by(ImageJob.position)))
    return enqueue_jobs(db, send, ids, chunk_size)


def refresh_batch(db: Database, batch_id: int) -> Batch:
    """Recount a batch from its images; when none is left queued or running, mark it done with its means."""
    with db.session() as s:
        # Take the batch row's write lock before counting (SQLite: the database write lock), so two workers
        # finishing the last images at once cannot both count before either writes.
        s.execute(update(Batch).where(Batch.id == batch_id).values(id=Batch.id))
        done = ImageJob.status == DONE
        row = s.execute(
            select(func.count(), func.sum(case((done, 1), else_=0)),
                   func.sum(case((ImageJob.status == FAILED, 1), else_=0)),
                   func.sum(case((ImageJob.status == RUNNING, 1), else_=0)),
                   func.avg(case((done, ImageJob.ssim))), func.avg(case((done, ImageJob.psnr))),
                   func.avg(case((done, ImageJob.input_ssim))), func.avg(case((done, ImageJob.input_psnr))),
                   func.sum(case((done, ImageJob.width * ImageJob.height), else_=0)))
            .where(ImageJob.batch_id == batch_id)).one()
        total, n_done, n_failed, n_running = row[0], row[1] or 0, row[2] or 0, row[3] or 0
        batch = s.get(Batch, batch_id)
        batch.done_count, batch.failed_count = n_done, n_failed
        batch.mean_ssim, batch.mean_psnr, batch.mean_input_ssim, batch.mean_input_psnr = row[4:8]
        batch.megapixels = (row[8] or 0) / 1e6
        if batch.status == CANCELLED:  # a cancelled batch stays cancelled; its counts still settle
            pass
        elif n_done + n_failed >= total:
            if batch.status != DONE:
                batch.status, batch.finished_at = DONE, utcnow()
        elif n_running or n_done or n_failed:
            batch.status = RUNNING
            batch.started_at = batch.started_at or utcnow()
        return batch


def count_image_outcome(batch_id: int, status: str):
    """The UPDATE that counts one finished image into its batch's counters, to run in the transaction that
    records the image (so a recount sees both or neither). Progress moves image by image at the cost of one
    small UPDATE, not a recount; ``refresh_batch`` at the end of each chunk still recounts exactly."""
    column = Batch.done_count if status == DONE else Batch.failed_count
    return update(Batch).where(Batch.id == batch_id).values({column: column + 1})


def stranded_jobs(session: Session, requeue_after: float, now=None) -> tuple[list[int], list[int]]:
    """(queued ids not sent for ``requeue_after`` s, running ids whose lease expired)."""
    now = now or utcnow()
    stale = now - timedelta(seconds=requeue_after)
    queued = list(session.scalars(select(ImageJob.id).where(
        ImageJob.status == QUEUED, (ImageJob.enqueued_at.is_(None)) | (ImageJob.enqueued_at < stale))
        .order_by(ImageJob.id)))
    expired = list(session.scalars(select(ImageJob.id).where(
        ImageJob.status == RUNNING, ImageJob.lease_expires_at < now).order_by(ImageJob.id)))
    return queued, expired


def unfinished_batches(session: Session) -> list[int]:
    """Batches not marked done although none of their images is queued or running (a worker died between
    finishing the last image and recounting the batch)."""
    busy = select(ImageJob.batch_id).where(ImageJob.status.in_((QUEUED, RUNNING)))
    return list(session.scalars(select(Batch.id).where(Batch.status.not_in((DONE, CANCELLED)),
                                                       Batch.id.not_in(busy))))
