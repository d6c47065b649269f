"""Thin Celery tasks: ids in, the work in ``worker.pipeline`` / ``trainer.service`` / ``scheduler.periodic``."""
from __future__ import annotations

from functools import lru_cache

from .celery_app import app
from .pipeline import TRANSIENT, WorkerContext, process_jobs


@lru_cache(maxsize=1)
def context() -> WorkerContext:
    """Created on first use in the process that runs tasks (never CUDA in a prefork parent)."""
    return WorkerContext.from_settings(app.sharpen_settings)


@app.task(name="sharpen.process_images", bind=True, autoretry_for=TRANSIENT, retry_backoff=2,
          retry_backoff_max=60, max_retries=5)
def process_images(self, job_ids: list[int]) -> dict:
    return process_jobs(context(), job_ids)


@app.task(name="sharpen.train_run", acks_late=False)
def train_run(run_id: int) -> str:
    # Acked on receipt: a run lasts hours, longer than any visibility timeout. If the worker dies, the
    # run's lease stops being renewed and the periodic job sends it again; it resumes from its checkpoint.
    from trainer.service import run_training

    return run_training(context(), run_id)


@app.task(name="sharpen.requeue_stranded")
def requeue_stranded() -> dict:
    from scheduler.periodic import requeue_stranded as requeue

    return requeue(context(), app)
