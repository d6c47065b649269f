"""The dashboard's side of the queue: send messages, and ask the workers what they are doing.

Workers are found with Celery's inspect API (a broadcast over Redis; every worker answers within the
timeout) and queue lengths are read from Redis. Flower can watch the same broker: see the README.
"""
from __future__ import annotations

from functools import cached_property

from shared.config import Settings


class QueueUnreachable(RuntimeError):
    pass


QUEUES = ("sharpen", "train", "scheduler")


class Queue:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def celery(self):
        from worker.celery_app import make_celery

        return make_celery(self.settings)

    def reachable(self) -> bool:
        return not (self.settings.uses_embedded_redis and not self.settings.embedded_redis_socket.exists())

    def send(self, task: str, kwargs: dict, queue: str) -> None:
        """Send now or raise QueueUnreachable (the rows stay queued; the scheduler sends them later)."""
        if not self.reachable():
            raise QueueUnreachable(f"no Redis at {self.settings.embedded_redis_socket}")
        try:
            self.celery.send_task(task, kwargs=kwargs, queue=queue, retry=False)
        except Exception as exc:  # noqa: BLE001 - kombu raises several connection error types
            raise QueueUnreachable(str(exc)) from exc

    def broker_for_display(self) -> str:
        """The broker URL without its password (the Flower line on the workers panel shows it)."""
        from urllib.parse import urlsplit, urlunsplit

        url = self.settings.broker_url
        parts = urlsplit(url)
        if parts.password:
            netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            url = urlunsplit(parts._replace(netloc=netloc))
        return url

    def lengths(self) -> dict[str, int | None]:
        """Messages waiting per queue; None when the broker cannot be reached."""
        from scheduler.periodic import queue_length

        if not self.reachable():
            return dict.fromkeys(QUEUES)
        try:
            return {q: queue_length(self.celery, q) for q in QUEUES}
        except Exception:  # noqa: BLE001 - broker down: the panel says so
            return dict.fromkeys(QUEUES)

    def workers(self, timeout: float = 0.6) -> list[dict]:
        """Workers online (one broadcast, answered by ``worker/control.py``): name, host, pid, pool, its
        processes' pids, queues, device, and the tasks each is running."""
        if not self.reachable():
            return []
        try:
            replies = self.celery.control.inspect(timeout=timeout)._request("sharpen_status") or {}
        except Exception:  # noqa: BLE001 - broker down: no workers to show
            return []
        found = []
        for name, info in sorted(replies.items()):
            if not isinstance(info, dict) or "error" in info:
                info = {}
            found.append({"name": name, "host": name.split("@", 1)[-1], **{k: info.get(k) for k in (
                "pid", "pool", "concurrency", "queues", "device", "processes")},
                "tasks": [{"name": t.get("name"), "job_ids": t["kwargs"].get("job_ids"),
                           "run_id": t["kwargs"].get("run_id")} for t in info.get("tasks") or []]})
        return found
