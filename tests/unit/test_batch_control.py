"""Cancel and retry on SQLite, no servers; per-image counters against the exact recount."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from scheduler.control import BatchStateError, cancel_batch, retry_failed
from scheduler.enqueue import SHARPEN_TASK, create_batch, enqueue_batch, refresh_batch
from shared.models import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob
from shared import migrate
from shared.config import Settings
from worker.pipeline import WorkerContext, claim, finish

from .test_jobs import folder_of, inputs


@pytest.fixture
def ctx(tmp_path):
    settings = Settings.from_env({"STORAGE_ROOT": str(tmp_path / "var")}, lease_seconds=30)
    migrate.upgrade(settings.db_url)
    context = WorkerContext.from_settings(settings)
    yield context
    context.db.dispose()


def statuses(ctx, batch_id):
    with ctx.db.session() as s:
        return [j.status for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)
                                             .order_by(ImageJob.position))]


def batch(ctx, batch_id) -> Batch:
    with ctx.db.session() as s:
        return s.get(Batch, batch_id)


def test_cancel_leaves_the_running_image_to_finish_and_the_batch_cancelled(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 4)))
    with ctx.db.session() as s:
        first = s.scalar(select(ImageJob.id).where(ImageJob.batch_id == batch_id, ImageJob.position == 0))
    assert claim(ctx, first) is not None  # a worker holds image 0
    assert cancel_batch(ctx.db, batch_id) == 3
    assert statuses(ctx, batch_id) == [RUNNING, CANCELLED, CANCELLED, CANCELLED]
    assert claim(ctx, first + 1) is None  # a cancelled image is never taken
    assert finish(ctx, first, batch_id, status=DONE, error=None)  # the running one completes ...
    assert batch(ctx, batch_id).done_count == 1  # ... counted at once, in the same transaction
    b = refresh_batch(ctx.db, batch_id)
    assert (b.status, b.done_count, b.failed_count) == (CANCELLED, 1, 0)  # ... and the batch stays cancelled
    with pytest.raises(BatchStateError, match="already cancelled"):
        cancel_batch(ctx.db, batch_id)
    with pytest.raises(LookupError):
        cancel_batch(ctx.db, 999)


def test_retry_requeues_failed_and_cancelled_images_and_sends_them(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 3)))
    sent = []
    send = lambda task, kwargs, queue: sent.append((task, kwargs, queue))  # noqa: E731
    with ctx.db.session() as s:
        job_ids = list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id).order_by(ImageJob.position)))
    assert all(claim(ctx, i) for i in job_ids)
    finish(ctx, job_ids[0], batch_id, status=DONE, error=None)
    finish(ctx, job_ids[1], batch_id, status=FAILED, error="p1.png: corrupt")
    finish(ctx, job_ids[2], batch_id, status=FAILED, error="p2.png: corrupt")
    assert (batch(ctx, batch_id).done_count, batch(ctx, batch_id).failed_count) == (1, 2)
    assert refresh_batch(ctx.db, batch_id).status == DONE
    assert retry_failed(ctx.db, send, batch_id, chunk_size=8) == 2
    assert sent == [(SHARPEN_TASK, {"job_ids": job_ids[1:]}, "sharpen")]
    assert statuses(ctx, batch_id) == [DONE, QUEUED, QUEUED]
    b = batch(ctx, batch_id)
    assert (b.status, b.failed_count, b.finished_at) == (RUNNING, 0, None)
    with ctx.db.session() as s:
        again = s.get(ImageJob, job_ids[1])
        assert (again.attempts, again.error, again.output_path) == (0, None, None)
    with pytest.raises(BatchStateError, match="no failed or cancelled"):
        retry_failed(ctx.db, send, batch_id, chunk_size=8)


def test_paired_images_without_a_reference_are_not_retried(ctx, tmp_path):
    folder = folder_of(tmp_path, 2)
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder), mode="paired")  # no references at all
    assert statuses(ctx, batch_id) == [FAILED, FAILED]
    with pytest.raises(BatchStateError):
        retry_failed(ctx.db, lambda *a: None, batch_id, chunk_size=8)
    enqueue_batch(ctx.db, lambda *a: None, batch_id, 8)
