"""Periodic recovery (Celery beat, every few seconds): nothing stays stranded.

An image or training run whose lease expired (its worker died) goes back to queued and is sent again; a
queued row that was never sent, or whose message was lost with Redis, is sent again once the queue is empty.
An image that has already cost ``max_attempts`` workers fails with a message instead of looping forever.
"""
from __future__ import annotations

from datetime import timedelta

from celery import Celery
from sqlalchemy import select, update

from shared.lease import free
from shared.models import FAILED, QUEUED, RUNNING, ImageJob, TrainingRun, utcnow

from .enqueue import SHARPEN_QUEUE, enqueue_jobs, refresh_batch, stranded_jobs, unfinished_batches

TRAIN_TASK, TRAIN_QUEUE = "sharpen.train_run", "train"
SWEEP_TASK, SCHEDULER_QUEUE = "sharpen.requeue_stranded", "scheduler"


def beat_schedule(settings) -> dict:
    """The periodic jobs Celery beat sends, all of them (``sharpen scheduler`` runs beat)."""
    return {"requeue-stranded": {"task": SWEEP_TASK, "schedule": float(settings.sweep_seconds),
                                 "options": {"queue": SCHEDULER_QUEUE, "expires": 30}}}


def celery_sender(app: Celery):
    def send(task: str, kwargs: dict, queue: str) -> None:
        app.send_task(task, kwargs=kwargs, queue=queue)
    return send


def queue_length(app: Celery, queue: str) -> int:
    """Messages waiting in a queue (0 when Redis lost it: an absent queue is an empty one)."""
    with app.connection_for_read() as conn:
        try:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        except Exception:  # noqa: BLE001 - kombu raises ChannelError for a queue that does not exist
            return 0


def recover(s, table, settings, now, why: str) -> tuple[list[int], list[int]]:
    """Rows whose worker died (an image, a training run): those that used up ``max_attempts`` fail, saying
    ``why``; the others whose lease expired go back to queued. Returns (given up, requeued) ids."""
    given_up = list(s.scalars(select(table.id).where(table.attempts >= settings.max_attempts, free(table, now))))
    s.execute(update(table).where(table.id.in_(given_up)).values(
        status=FAILED, lease_expires_at=None, finished_at=now,
        error=f"gave up after {settings.max_attempts} attempts: {why}"))
    expired = list(s.scalars(select(table.id).where(table.status == RUNNING, table.lease_expires_at < now)))
    s.execute(update(table).where(table.id.in_(expired)).values(status=QUEUED, lease_expires_at=None))
    return given_up, expired


def requeue_stranded(ctx, app: Celery, now=None) -> dict:
    """Send again what is stranded; returns what was done (for logs and tests)."""
    settings, db = ctx.settings, ctx.db
    now = now or utcnow()
    send = celery_sender(app)
    with db.session() as s:
        given_up, retry = recover(s, ImageJob, settings, now, "the worker stopped each time while processing "
                                                               "this image (killed for using too much memory?)")
        queued = stranded_jobs(s, settings.requeue_after, now)[0]
        batch_ids = set(s.scalars(select(ImageJob.batch_id).where(ImageJob.id.in_(given_up + retry))))
        batch_ids |= set(unfinished_batches(s))
    if queue_length(app, SHARPEN_QUEUE):
        # their messages are most likely still waiting; only rows waiting longer than Redis would keep an
        # unacknowledged message are sent again now (a duplicate message is harmless: claims are atomic)
        with db.session() as s:
            queued = stranded_jobs(s, max(settings.requeue_after, settings.visibility_timeout), now)[0]
    resend = sorted(set(retry) | set(queued))
    enqueue_jobs(db, send, resend, settings.chunk_size)
    for batch_id in batch_ids:
        refresh_batch(db, batch_id)
    runs = requeue_training_runs(ctx, app, now)
    return {"images_resent": len(resend), "images_given_up": len(given_up), "batches_refreshed": len(batch_ids),
            "runs_resent": runs}


def requeue_training_runs(ctx, app: Celery, now) -> int:
    stale = now - timedelta(seconds=ctx.settings.requeue_after)
    train_waiting = queue_length(app, TRAIN_QUEUE)
    with ctx.db.session() as s:
        _given_up, dead = recover(s, TrainingRun, ctx.settings, now, "the trainer stopped each time")
        lost = [] if train_waiting else list(s.scalars(select(TrainingRun.id).where(
            TrainingRun.status == QUEUED, TrainingRun.enqueued_at.is_(None) | (TrainingRun.enqueued_at < stale))))
    ids = sorted(set(dead) | set(lost))
    for run_id in ids:
        enqueue_training_run(ctx.db, celery_sender(app), run_id)
    return len(ids)


def enqueue_training_run(db, send, run_id: int) -> None:
    send(TRAIN_TASK, {"run_id": run_id}, TRAIN_QUEUE)
    with db.session() as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(enqueued_at=utcnow()))
