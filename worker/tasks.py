"""Thin Celery tasks: ids in, the work in ``worker.pipeline`` / ``trainer.service`` / ``scheduler.periodic``.

The work's modules are imported by the task that needs them: the sweeper and beat never load torch.
"""
from __future__ import annotations

import contextlib
import logging
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
    # A worker fault (``worker.faults``) handed its image back: retry with a growing delay, without limit
    # (the images wait, queued, for a worker that can work). After several in a row this worker takes no
    # images until its delay has passed.
    from .faults import describe, is_worker_fault
    from .pipeline import defer, process_jobs

    ctx = context()
    if pause := ctx.backoff.pause_left():
        defer(ctx, job_ids)
        raise self.retry(countdown=pause)
    try:
        counts = process_jobs(ctx, job_ids)
    except Exception as exc:
        if not is_worker_fault(exc):
            raise
        delay = ctx.backoff.fault()
        log.error("this worker cannot work: %s; its images are back in the queue, retrying in %g s%s",
                  describe(exc), delay, "; it takes no images meanwhile" if ctx.backoff.pausing else "",
                  exc_info=ctx.backoff.faults == 1)
        with contextlib.suppress(*TRANSIENT_ERRORS):  # without a database the sweep sends them again later
            defer(ctx, job_ids)
        raise self.retry(countdown=delay, exc=exc) from None
    ctx.backoff.ok()
    return counts


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
