"""Whose fault is it: the image's (it fails alone, named) or this worker's (its images go back to the queue).

A worker fault would fail every image the same way on this worker right now: the model file missing or
changed, CUDA initialisation or driver errors, memory, a full or missing disk, the database unreachable.
Such a fault hands the chunk's unfinished images back (without spending one of their attempts) and the task
is retried with a growing delay; after ``pause_after`` faults in a row the worker stops taking images (it
leaves the queue) and only checks, now and then, whether it can work again, so a broken worker never fails
batches, it only stops helping. Some CUDA errors poison the process's device context for good (``sticky``):
no retry in that process can succeed, only a fresh process.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable

from shared.db import TRANSIENT_ERRORS
from shared.inference import ModelFileError

log = logging.getLogger(__name__)

# torch reports device failures as RuntimeError (torch.AcceleratorError, OutOfMemoryError are subclasses)
_DEVICE_TROUBLE = re.compile(r"CUDA|cuDNN|cuBLAS|NCCL|driver|device-side|out of memory", re.IGNORECASE)


# CUDA errors after which every later CUDA call of the process fails too (its context is corrupt)
_STICKY = re.compile(r"illegal memory access|device-side assert|unspecified launch failure|misaligned address|"
                     r"illegal instruction|uncorrectable ECC|launch timed out|hardware exception|"
                     r"CUDA error: unknown error|context is destroyed", re.IGNORECASE)


class WorkerFault(RuntimeError):
    """This worker cannot work now; ``__cause__`` is the real error."""


def is_worker_fault(exc: BaseException) -> bool:
    """True when ``exc`` says this worker cannot work, not that the image is bad."""
    if isinstance(exc, (WorkerFault, ModelFileError, OSError) + TRANSIENT_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and bool(_DEVICE_TROUBLE.search(str(exc)))


def is_sticky(exc: BaseException) -> bool:
    """True for a CUDA error that leaves this process unable to use its GPU until it exits."""
    while exc is not None:
        if isinstance(exc, RuntimeError) and _STICKY.search(str(exc)):
            return True
        exc = exc.__cause__
    return False


def describe(exc: BaseException) -> str:
    """The real cause in one line: the innermost error's type and message."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{exc.__class__.__name__}: {exc}"


class Backoff:
    """Worker faults in a row in this process: the delay before trying again, and when to stop taking work
    (``pausing``: ``pause_after`` faults in a row)."""

    def __init__(self, max_delay: float = 60.0, first_delay: float = 1.0, pause_after: int = 3):
        self.max_delay, self.first_delay, self.pause_after = max_delay, first_delay, pause_after
        self.faults = 0

    def fault(self) -> float:
        """Record one fault; returns how long to wait before retrying."""
        self.faults += 1
        return min(self.max_delay, self.first_delay * 2 ** (self.faults - 1))

    def ok(self) -> None:
        self.faults = 0

    @property
    def pausing(self) -> bool:
        """Enough faults in a row to stop taking work."""
        return self.faults >= self.pause_after


class Standby:
    """A worker that stopped taking work: a thread checks every ``every`` seconds whether it can work again
    (``probe`` returns without raising) and then calls ``resume`` (which takes work again)."""

    def __init__(self) -> None:
        self.cause: str | None = None        # why it stopped; None: it works
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.cause is not None

    def start(self, cause: str, probe: Callable[[], None], resume: Callable[[], None], every: float) -> None:
        with self._lock:
            already, self.cause = self.active, cause
        if not already:
            threading.Thread(target=self._wait, args=(probe, resume, every), name="standby", daemon=True).start()

    def _wait(self, probe, resume, every: float) -> None:
        told = None
        while True:
            time.sleep(every)
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - still cannot work: say so when the reason changes
                if describe(exc) != told:
                    told = describe(exc)
                    log.warning("this worker still cannot work (%s); it checks again every %g s", told, every)
                continue
            try:
                resume()
            except Exception as exc:  # noqa: BLE001 - e.g. the broker is away: try again later
                log.warning("this worker can work again but could not rejoin the queue (%s)", describe(exc))
                continue
            with self._lock:
                self.cause = None
            return
