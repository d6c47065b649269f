"""A remote-control command for the dashboard's workers panel: one broadcast answers everything it shows.

``sharpen_status`` reports the worker's pid, pool (and its processes' pids), queues, device, the tasks it is
running and (solo pool) its seconds per stage, images written and why it takes no work, if so. It is
answered from what the process already knows, never by touching CUDA: in a prefork pool this runs in the
parent, which must not initialise CUDA.
"""
from __future__ import annotations

import os

from celery.worker import state as worker_state
from celery.worker.control import inspect_command


def _device(app) -> str:
    from .tasks import context

    if context.cache_info().currsize:
        devices = sorted({str(m.device) for m in context().models.values()})
        if devices:
            return ", ".join(devices)
    configured = app.sharpen_settings.device
    return configured if configured != "auto" else "auto (known once a model is loaded)"


@inspect_command()
def sharpen_status(state) -> dict:
    consumer = state.consumer
    pool = consumer.pool
    tasks = [{"name": r.name, "kwargs": r.kwargs if isinstance(r.kwargs, dict) else {}}
             for r in list(worker_state.active_requests)]
    return {"pid": os.getpid(), "pool": type(pool).__module__.rsplit(".", 1)[-1],
            "concurrency": getattr(pool, "num_processes", None) or 1,
            "processes": pool.info.get("processes") or [],  # a prefork pool's children: they hold the leases
            "queues": sorted(q.name for q in consumer.task_consumer.queues) if consumer.task_consumer else [],
            "device": _device(consumer.app), "tasks": tasks, **_work()}


def _work() -> dict:
    """Seconds per stage and images written so far, and why it takes no work (solo pool: this process's)."""
    from .tasks import context

    if not context.cache_info().currsize:
        return {}
    ctx = context()
    return {"stages": dict(ctx.clock.seconds), "images": ctx.clock.images, "not_working": ctx.standby.cause}
