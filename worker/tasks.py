"""Thin Celery tasks: ids in, the work in ``worker.pipeline`` / ``trainer.service`` / ``scheduler.periodic``.

The work's modules are imported by the task that needs them: the sweeper and beat never load torch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING

from shared.db import TRANSIENT_ERRORS, Database

from .celery_app import app

if TYPE_CHECKING:
    from .pipeline import WorkerContext

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def context() -> "WorkerContext":
    """Created on first use in the process that runs tasks (never CUDA in a prefork parent)."""
    from .pipeline import WorkerContext

    return WorkerContext.from_settings(app.sharpen_settings)


@app.task(name="sharpen.process_images", bind=True, max_retries=None)
def process_images(self, job_ids: list[int]) -> dict:
    # A worker fault (``worker.faults``) handed its images back: retry with a growing delay, without limit
    # (the images wait, queued, for a worker that can work). After several in a row this worker leaves the
    # queue until it can work again; after a CUDA error that broke its device context, the process exits
    # (its supervisor starts a fresh one). The chunk's writes may still run when this returns.
    from .faults import describe, is_sticky, is_worker_fault
    from .pipeline import defer, process_jobs, waiting_reason

    ctx = context()
    if ctx.standby.active:  # a message it held when it left the queue: back to the queue, for another worker
        with contextlib.suppress(*TRANSIENT_ERRORS):
            defer(ctx, job_ids, waiting_reason(ctx, ctx.standby.cause))
        raise self.retry(countdown=ctx.backoff.max_delay)
    try:
        counts = process_jobs(ctx, job_ids, wait=False)
    except Exception as exc:
        if not is_worker_fault(exc):
            raise
        delay, cause = ctx.backoff.fault(), describe(exc)
        with contextlib.suppress(*TRANSIENT_ERRORS):  # without a database the sweep sends them again later
            defer(ctx, job_ids, waiting_reason(ctx, cause))
        if is_sticky(exc) and ctx.clock.images:
            log.error("this worker cannot work: %s; its images are back in the queue; this CUDA error leaves the "
                      "process unable to use its GPU, so it exits to be started afresh", cause, exc_info=exc)
            try:
                raise self.retry(countdown=delay, exc=exc) from None
            finally:   # once the retry is sent: a warm shutdown after this task (solo), a new child (prefork)
                os.kill(os.getpid(), signal.SIGTERM)
        if ctx.backoff.pausing:
            log.error("this worker cannot work: %s; its images are back in the queue; it stops taking images "
                      "and checks every %g s whether it can work again", cause, ctx.backoff.max_delay)
            stop_taking_work(self, ctx, cause)
        else:
            log.error("this worker cannot work: %s; its images are back in the queue, retrying in %g s", cause,
                      delay, exc_info=exc if ctx.backoff.faults == 1 else None)
        raise self.retry(countdown=delay, exc=exc) from None
    ctx.backoff.ok()
    return counts


def stop_taking_work(task, ctx: "WorkerContext", cause: str) -> None:
    """Leave the sharpen queue (other workers take its images) until ``can_work`` passes, then rejoin it."""
    from .pipeline import can_work

    queue, host = "sharpen", task.request.hostname
    task.app.control.cancel_consumer(queue, destination=[host], reply=False)

    def resume() -> None:
        task.app.control.add_consumer(queue, destination=[host], reply=False)
        ctx.backoff.ok()
        log.warning("this worker can work again: it takes images from queue %s", queue)

    ctx.standby.start(cause, lambda: can_work(ctx), resume, every=ctx.backoff.max_delay)


@app.task(name="sharpen.train_run", acks_late=False)
def train_run(run_id: int) -> str:
    # Acked on receipt: a run lasts hours, longer than any visibility timeout. If the worker dies, the
    # run's lease stops being renewed and the periodic job sends it again; it resumes from its checkpoint.
    from trainer.service import run_training

    return run_training(context(), run_id)


@app.task(name="sharpen.requeue_stranded")
def requeue_stranded() -> dict:
    from scheduler.periodic import requeue_stranded as requeue

    return requeue(sweep_context(), app)


@lru_cache(maxsize=1)
def sweep_context() -> SimpleNamespace:
    """All the sweep needs: settings and the database (no model)."""
    return SimpleNamespace(settings=app.sharpen_settings, db=Database(app.sharpen_settings))
