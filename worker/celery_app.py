"""The Celery app: Redis broker (results live in the database), late acks, prefetch 1, queues sharpen, train
and scheduler (the periodic sweep that beat sends).

``celery -A worker.celery_app worker`` works as well as ``sharpen worker``. Settings come from the
environment once, here, at the edge of the worker process.
"""
from __future__ import annotations

from celery import Celery

from scheduler.periodic import SCHEDULER_QUEUE, beat_schedule
from shared.config import Settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("sharpen", broker=settings.broker_url, include=["worker.tasks"])  # no result backend
    app.conf.update(
        task_acks_late=True,                 # a task killed mid-way is delivered again ...
        task_reject_on_worker_lost=True,     # ... also when its pool process dies
        worker_prefetch_multiplier=1,        # one message at a time: nothing stranded in a dead worker
        task_default_queue="sharpen",
        task_routes={"sharpen.process_images": {"queue": "sharpen"},
                     "sharpen.train_run": {"queue": "train"},
                     "sharpen.requeue_stranded": {"queue": SCHEDULER_QUEUE}},
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,  # > the longest sharpening task
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        task_ignore_result=True,             # results live in the database
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarted Redis is waited for, not fatal
        worker_send_task_events=True,        # Flower and `celery events` work
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    app.sharpen_settings = settings
    app.conf.include = [*app.conf.include, "worker.control"]  # answers the dashboard's workers panel
    return app


app = make_celery(Settings.from_env())
