"""Leases: a worker holds a row (an image, a training run) only while it keeps renewing the lease.

A worker that dies stops renewing; once ``lease_expires_at`` passes, the scheduler hands the row out again.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import select, update

from .db import Database
from .models import QUEUED, RUNNING, utcnow


def free(table, now):
    """SQL condition: nobody holds the row (queued, or running under a lease that expired: its worker died)."""
    return (table.status == QUEUED) | ((table.status == RUNNING) & (table.lease_expires_at < now))


def claim_statement(table, row_id: int | list[int], worker: str, seconds: float, max_attempts: int, now, **values):
    """One UPDATE that takes the row for ``worker`` if it is free and has attempts left (rowcount 1 = taken);
    given a list of ids, every one of them that is free (``.returning(table.id)`` says which)."""
    which = table.id.in_(row_id) if isinstance(row_id, (list, tuple)) else table.id == row_id
    return (update(table)
            .where(which, table.attempts < max_attempts, free(table, now))
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


class LeaseKeeper:
    """Renews the leases of every row of ``table`` that ``worker`` holds, in one UPDATE every ``seconds / 4``
    (one thread per process, however many images are in flight); a row found taken by another worker has
    its ``Lease.lost`` set."""

    def __init__(self, db: Database, table, worker: str, seconds: float):
        self.db, self.table, self.worker, self.seconds = db, table, worker, seconds
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, row_id: int) -> Lease:
        """Start renewing ``row_id``'s lease (it was just claimed)."""
        with self._lock:
            lease = self._held[row_id] = Lease()
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_forever, name=f"leases-{self.table.__tablename__}",
                                                daemon=True)
                self._thread.start()
        return lease

    def release(self, row_id: int) -> None:
        with self._lock:
            self._held.pop(row_id, None)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(max(0.5, self.seconds / 4))
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease; try again next tick
                continue

    def renew(self) -> None:
        """One renewal of every held lease (the thread calls it; tests may too)."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        t = self.table
        ours = (t.id.in_(list(held)), t.worker == self.worker, t.status == RUNNING)
        with self.db.session() as s:
            s.execute(update(t).where(*ours).values(lease_expires_at=utcnow() + timedelta(seconds=self.seconds)))
            still = set(s.scalars(select(t.id).where(*ours)))
        with self._lock:
            for row_id, lease in held.items():
                if row_id not in still and row_id in self._held:   # finished meanwhile: released, not lost
                    lease.lost.set()
