"""Leases: a worker holds a row (an image, a training run) only while it keeps renewing the lease.

A worker that dies stops renewing; once ``lease_expires_at`` passes, the scheduler hands the row out again.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import update

from .db import Database
from .models import QUEUED, RUNNING, utcnow


def free(table, now):
    """SQL condition: nobody holds the row (queued, or running under a lease that expired: its worker died)."""
    return (table.status == QUEUED) | ((table.status == RUNNING) & (table.lease_expires_at < now))


def claim_statement(table, row_id: int, worker: str, seconds: float, max_attempts: int, now, **values):
    """One UPDATE that takes the row for ``worker`` if it is free and has attempts left (rowcount 1 = taken)."""
    return (update(table)
            .where(table.id == row_id, table.attempts < max_attempts, free(table, now))
            .values(status=RUNNING, attempts=table.attempts + 1, worker=worker, started_at=now,
                    lease_expires_at=now + timedelta(seconds=seconds), **values))


class Lease:
    """Handle of a kept lease: ``lost`` is set when a renewal finds the row taken by another worker."""

    def __init__(self) -> None:
        self.lost = threading.Event()


@contextmanager
def keep_lease(db: Database, table, row_id: int, worker: str, seconds: float) -> Iterator[Lease]:
    """Renew ``table`` row ``row_id``'s lease every ``seconds / 4`` while the block runs; ``lost`` is set once
    the row is no longer running for ``worker`` (handed out again after the lease expired)."""
    stop = threading.Event()
    lease = Lease()

    def renew() -> None:
        while not stop.wait(max(0.5, seconds / 4)):
            try:
                with db.session() as s:
                    res = s.execute(update(table).where(table.id == row_id, table.worker == worker,
                                                        table.status == RUNNING)
                                    .values(lease_expires_at=utcnow() + timedelta(seconds=seconds)))
                    if res.rowcount == 0:
                        lease.lost.set()
                        return
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease; try again next tick
                continue

    thread = threading.Thread(target=renew, name=f"lease-{table.__tablename__}-{row_id}", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
