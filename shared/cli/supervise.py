"""`sharpen up`'s supervisor: start the children, restart one that dies (with backoff), stop them all.

A child that exits is started again after a delay that doubles with each recent exit (0.5 s, 1 s, 2 s, …,
at most 10 s); only ``max_crashes`` exits of one child within ``window`` seconds stop the whole stack, with a
message naming the child. Plain subprocess work: no Celery, no Flask.
"""
from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class CrashLoop(RuntimeError):
    """One child kept dying: the stack stops, and this says which child and why."""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    """One supervised process: how to start it and where its log is."""
    name: str
    start: Callable[[], subprocess.Popen]
    log: Path
    proc: subprocess.Popen | None = None
    exits: deque = field(default_factory=deque)   # times of recent exits (within the window)
    restart_at: float | None = None                # set while it waits out its backoff

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


class Supervisor:
    """Keeps ``children`` running; ``poll()`` is called in a loop by ``up``."""

    def __init__(self, children: list[Child], echo: Callable[[str], None], *, max_crashes: int = 5,
                 window: float = 60.0, first_delay: float = 0.5, max_delay: float = 10.0):
        self.children = children
        self.echo = echo
        self.max_crashes, self.window = max_crashes, window
        self.first_delay, self.max_delay = first_delay, max_delay

    def start_all(self) -> None:
        for child in self.children:
            child.proc = child.start()

    def delay(self, recent_exits: int) -> float:
        return min(self.max_delay, self.first_delay * 2 ** max(0, recent_exits - 1))

    def poll(self, now: float | None = None) -> None:
        """Notice exits, schedule and perform restarts; raises CrashLoop when a child keeps dying."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    try:
                        child.proc = child.start()
                    except Exception as exc:  # noqa: BLE001 - a failed start counts as one more crash
                        child.proc = None
                        self._exited(child, f"could not be started ({exc})", now)
                continue
            if child.proc is not None and child.proc.poll() is not None:
                self._exited(child, describe_exit(child.proc.returncode), now)

    def _exited(self, child: Child, how: str, now: float) -> None:
        child.exits.append(now)
        while child.exits and child.exits[0] < now - self.window:
            child.exits.popleft()
        if len(child.exits) >= self.max_crashes:
            raise CrashLoop(f"{child.name} {how}, its {len(child.exits)}th exit within {self.window:g} s; "
                            f"stopping everything (see {child.log})")
        wait = self.delay(len(child.exits))
        child.restart_at = now + wait
        self.echo(f"{child.name} {how}; restarting it in {wait:g} s (see {child.log})")

    def stop_all(self, timeout: float = 20) -> None:
        """SIGTERM each child, last started first (Redis last, so workers can ack what they finish)."""
        for child in reversed(self.children):
            proc, child.restart_at = child.proc, None
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
