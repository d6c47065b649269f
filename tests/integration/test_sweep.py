"""The scheduler's sweep, called directly against a real Redis and SQLite: what it resends, gives up, leaves."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select, update

from scheduler.periodic import queue_length, requeue_stranded
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, utcnow

from .conftest import blurred_and_sharp, inputs_from


def test_the_sweep_resends_lost_work_and_gives_up_on_images_that_cost_every_attempt(make_stack, sqlite_url,
                                                                                    redis_url, tmp_path):
    stack = make_stack(sqlite_url, redis_url, SHARPEN_MAX_ATTEMPTS=3)
    folder, _ = blurred_and_sharp(tmp_path / "data", 4)
    from scheduler.enqueue import create_batch

    batch_id = create_batch(stack.db, stack.storage, inputs_from(folder), mode="restore")  # never sent
    past, future = utcnow() - timedelta(seconds=5), utcnow() + timedelta(seconds=60)
    with stack.db.session() as s:
        lost, doomed, unsent, busy = s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)
                                               .order_by(ImageJob.id))
        for job_id, attempts, lease in ((lost, 1, past), (doomed, 3, past), (busy, 1, future)):
            s.execute(update(ImageJob).where(ImageJob.id == job_id).values(
                status=RUNNING, attempts=attempts, worker="gone:1", lease_expires_at=lease))
    ctx = SimpleNamespace(settings=stack.settings, db=stack.db)
    assert requeue_stranded(ctx, stack.celery) == {"images_resent": 2, "images_given_up": 1,
                                                   "batches_refreshed": 1, "runs_resent": 0}
    with stack.db.session() as s:
        jobs = {j.id: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id))}
        batch = s.get(Batch, batch_id)
    assert (jobs[lost].status, jobs[unsent].status, jobs[busy].status) == (QUEUED, QUEUED, RUNNING)
    assert jobs[doomed].status == FAILED and "gave up after 3 attempts" in jobs[doomed].error
    assert jobs[lost].enqueued_at and jobs[unsent].enqueued_at  # stamped as sent
    assert (batch.failed_count, batch.status) == (1, RUNNING)
    assert queue_length(stack.celery, "sharpen") == 1  # one chunk: [lost, unsent]
    # their message waits in the queue: the next sweep sends nothing twice
    assert requeue_stranded(ctx, stack.celery)["images_resent"] == 0
    assert queue_length(stack.celery, "sharpen") == 1
    assert DONE != batch.status
