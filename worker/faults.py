"""Whose fault is it: the image's (it fails alone, named) or this worker's (its images go back to the queue).

A worker fault would fail every image the same way on this worker right now: the model file missing or
changed, CUDA initialisation or driver errors, memory, a full or missing disk, the database unreachable.
Such a fault hands the chunk's unfinished images back (without spending one of their attempts) and the task
is retried with a growing delay; after ``pause_after`` faults in a row the worker takes no images until the
delay has passed, so a broken worker never fails batches, it only stops helping.
"""
from __future__ import annotations

import re
import time

from shared.db import TRANSIENT_ERRORS
from shared.inference import ModelFileError

# torch reports device failures as RuntimeError (torch.AcceleratorError, OutOfMemoryError are subclasses)
_DEVICE_TROUBLE = re.compile(r"CUDA|cuDNN|cuBLAS|NCCL|driver|device-side|out of memory", re.IGNORECASE)


class WorkerFault(RuntimeError):
    """This worker cannot work now; ``__cause__`` is the real error."""


def is_worker_fault(exc: BaseException) -> bool:
    """True when ``exc`` says this worker cannot work, not that the image is bad."""
    if isinstance(exc, (WorkerFault, ModelFileError, OSError) + TRANSIENT_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and bool(_DEVICE_TROUBLE.search(str(exc)))


def describe(exc: BaseException) -> str:
    """The real cause in one line: the innermost error's type and message."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{exc.__class__.__name__}: {exc}"


class Backoff:
    """Worker faults in a row in this process: the delay before trying again, and a pause after several."""

    def __init__(self, max_delay: float = 60.0, first_delay: float = 1.0, pause_after: int = 3):
        self.max_delay, self.first_delay, self.pause_after = max_delay, first_delay, pause_after
        self.faults = 0
        self.paused_until = 0.0

    def fault(self, now: float | None = None) -> float:
        """Record one fault; returns how long to wait before retrying."""
        now = time.monotonic() if now is None else now
        self.faults += 1
        delay = min(self.max_delay, self.first_delay * 2 ** (self.faults - 1))
        if self.faults >= self.pause_after:
            self.paused_until = now + delay
        return delay

    def ok(self) -> None:
        self.faults, self.paused_until = 0, 0.0

    @property
    def pausing(self) -> bool:
        return self.faults >= self.pause_after

    def pause_left(self, now: float | None = None) -> float:
        """Seconds this worker still takes no images (0: it works)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.paused_until - now)
