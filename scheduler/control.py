"""What a user does to a batch after submitting it: cancel it, or retry its failed images.

Both change rows only; a worker that is processing an image of a cancelled batch finishes that image (its
claim is atomic, and so is its finish), and a retried image is sent again after the commit.
"""
from __future__ import annotations

from sqlalchemy import select, update

from shared.db import Database
from shared.models import CANCELLED, DONE, FAILED, QUEUED, Batch, ImageJob, utcnow

from .enqueue import Sender, enqueue_jobs, refresh_batch


class BatchStateError(ValueError):
    """The batch is not in a state that allows the action (e.g. cancelling a finished batch)."""


def cancel_batch(db: Database, batch_id: int) -> int:
    """Cancel the images not yet started and mark the batch cancelled; returns how many were cancelled.

    Raises LookupError for an unknown batch, BatchStateError for one that is already finished or cancelled.
    """
    now = utcnow()
    with db.session() as s:
        s.execute(update(Batch).where(Batch.id == batch_id).values(id=Batch.id))  # the batch row's lock
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise LookupError(f"no batch {batch_id}")
        if batch.status in (DONE, CANCELLED):
            raise BatchStateError(f"batch {batch_id} is already {batch.status}")
        res = s.execute(update(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == QUEUED)
                        .values(status=CANCELLED, error="cancelled before it started", finished_at=now,
                                lease_expires_at=None))
        batch.status, batch.finished_at = CANCELLED, now
        return res.rowcount


def retry_failed(db: Database, send: Sender, batch_id: int, chunk_size: int) -> int:
    """Queue a batch's failed and cancelled images again (fresh attempts) and send them; returns how many.

    Images of a paired batch that have no reference stay failed: retrying cannot give them one.
    Raises LookupError for an unknown batch, BatchStateError when there is nothing to retry.
    """
    with db.session() as s:
        s.execute(update(Batch).where(Batch.id == batch_id).values(id=Batch.id))
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise LookupError(f"no batch {batch_id}")
        retryable = select(ImageJob.id).where(ImageJob.batch_id == batch_id,
                                              ImageJob.status.in_((FAILED, CANCELLED)))
        if batch.mode == "paired":
            retryable = retryable.where(ImageJob.reference_path.is_not(None))
        ids = list(s.scalars(retryable.order_by(ImageJob.position)))
        if not ids:
            raise BatchStateError(f"batch {batch_id} has no failed or cancelled images to retry")
        s.execute(update(ImageJob).where(ImageJob.id.in_(ids)).values(
            status=QUEUED, attempts=0, error=None, output_path=None, ssim=None, psnr=None, input_ssim=None,
            input_psnr=None, seconds=None, worker=None, started_at=None, finished_at=None,
            lease_expires_at=None, enqueued_at=None))
        batch.status, batch.finished_at = QUEUED, None
    refresh_batch(db, batch_id)
    enqueue_jobs(db, send, ids, chunk_size)
    return len(ids)
