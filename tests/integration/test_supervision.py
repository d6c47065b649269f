"""`sharpen up` heals itself: its children killed with SIGKILL mid-batch are restarted, nothing is lost or
done twice, the dashboard answers throughout; a child that keeps dying stops the stack, naming the child."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch
from sqlalchemy import select

from scheduler.enqueue import create_batch, enqueue_batch
from shared.config import Settings
from shared.db import Database
from shared.models import DONE, Batch, ImageJob
from shared.overlapped import Overlapped
from shared.storage import Storage

from .conftest import blurred_and_sharp, inputs_from
from .services import free_port

ROOT = Path(__file__).resolve().parents[2]
# how each child of `up` shows in its command line
CHILDREN = {"redis": "redis-server", "worker-1": "worker --queue sharpen", "trainer": "worker --queue train",
            "scheduler": "shared.cli scheduler", "sweeper": "worker --queue scheduler", "dashboard": "shared.cli dashboard"}


def children_of(pid: int) -> dict[str, int]:
    """{child name: pid} of the live children of ``pid``."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            for name, marker in CHILDREN.items():
                if marker in cmd:
                    found[name] = int(stat.parent.name)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def batch_of(db: Database, batch_id: int) -> Batch:
    with db.session() as s:
        return s.get(Batch, batch_id)


def poll(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


class Up:
    """A real `sharpen up` in a fresh directory, with short leases and sweeps so that recovery is quick."""

    def __init__(self, tmp: Path, *args: str, **env):
        self.cwd = tmp / "stack"
        self.cwd.mkdir()
        base = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("SHARPEN_")}
        self.env = {**base, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "STORAGE_ROOT": str(self.cwd / "var"),
                    "SHARPEN_PORT": str(free_port()), "SHARPEN_LEASE_SECONDS": "6", "SHARPEN_REQUEUE_AFTER": "3",
                    "SHARPEN_VISIBILITY_TIMEOUT": "30", "SHARPEN_SWEEP_SECONDS": "2", "SHARPEN_CHUNK_SIZE": "2",
                    **env}
        self.settings = Settings.from_env(self.env)
        self.log = tmp / "up.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "up", *args], cwd=self.cwd, env=self.env,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.env['SHARPEN_PORT']}/healthz"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        assert self.proc.poll() is None, self.text()
        return children_of(self.proc.pid)

    def kill(self, name: str) -> None:
        """SIGKILL one child and wait until `up` has started it again."""
        old = self.children()[name]
        os.kill(old, signal.SIGKILL)
        poll(lambda: self.children().get(name, old) != old, 30, f"{name} to be restarted\n{self.text()}")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class HealthWatch(threading.Thread):
    """Asks the dashboard's /healthz every 0.2 s; records every answer that was not a 200."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.ok, self.failures = url, 0, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    self.ok += r.status == 200
            except OSError as exc:
                self.failures.append(f"{time.strftime('%X')} {exc}")


def test_children_killed_mid_batch_are_restarted_and_every_image_is_done_once(tmp_path):
    up = Up(tmp_path)
    try:
        poll(lambda: len(up.children()) == len(CHILDREN), 60, "all children")
        db, storage = Database(up.settings), Storage(up.settings.storage_root)
        from worker.celery_app import make_celery

        celery = make_celery(up.settings)
        send = lambda task, kwargs, queue: celery.send_task(task, kwargs=kwargs, queue=queue)  # noqa: E731

        def answers() -> bool:
            with contextlib.suppress(OSError):
                return urllib.request.urlopen(up.url, timeout=2).status == 200
        poll(answers, 120, f"the dashboard\n{up.text()}", interval=0.2)
        health = HealthWatch(up.url)
        health.start()
        folder, _ = blurred_and_sharp(tmp_path / "data", 30, size=128)
        batches = []
        for victim in ("worker-1", "trainer", "scheduler", "redis"):
            batch_id = create_batch(db, storage, inputs_from(folder), mode="restore", name=f"kill {victim}")
            enqueue_batch(db, send, batch_id, up.settings.chunk_size)
            poll(lambda: batch_of(db, batch_id).done_count >= 1, 120, f"progress on batch {batch_id}\n{up.text()}",
                 interval=0.02)
            assert batch_of(db, batch_id).status != DONE  # mid-batch
            up.kill(victim)
            assert f"{victim} was killed by SIGKILL; restarting it in 0.5 s" in up.text()
            poll(lambda: batch_of(db, batch_id).status == DONE, 150,
                 f"batch {batch_id} after killing {victim}\n{up.text()}", interval=0.2)
            batches.append(batch_id)
        health.done.set()
        health.join()
        assert health.failures == [] and health.ok > 20  # the dashboard answered throughout
        io_threads = None if up.settings.io_threads < 0 else up.settings.io_threads
        flow = Overlapped(io_threads, device=torch.device("cpu"))   # as the worker builds it (WorkerContext.flow)
        in_hand = up.settings.chunk_size + flow.in_flight_max
        flow.close()
        with db.session() as s:
            for batch_id in batches:
                b = s.get(Batch, batch_id)
                assert (b.done_count, b.failed_count) == (30, 0), b.name
                jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)))
                assert all(j.status == DONE and j.output_path for j in jobs)
                outputs = sorted(p.name for p in (storage.batch_dir(batch_id) / "output").iterdir()
                                 if not p.name.startswith("."))  # a killed worker's unfinished temp file
                assert outputs == sorted(f"{j.id}.png" for j in jobs), b.name  # one output each, no strays
                # done once: only an image in the hands of the killed worker is claimed a second time — its
                # chunk, and the previous chunk's images still being written (the worker returns a task once
                # its images are through the model: at most Overlapped.in_flight_max of them)
                assert sum(j.attempts - 1 for j in jobs) <= (in_hand if b.name == "kill worker-1" else 0) + 1, b.name
        kids = up.children()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=90) == 0, up.text()
        poll(lambda: not any(alive(pid) for pid in kids.values()), 30, "every child to stop")
        assert not up.settings.embedded_redis_socket.exists()
        db.dispose()
    finally:
        up.close()


def test_a_child_that_keeps_dying_stops_the_stack_naming_it(tmp_path):
    up = Up(tmp_path, "--no-dashboard", "--no-trainer")
    try:
        poll(lambda: "worker-1" in up.children(), 60, "the worker")
        kids = set(up.children().values())
        for _ in range(4):
            up.kill("worker-1")  # restarted after 0.5, 1, 2, 4 s
        kids |= set(up.children().values())
        os.kill(up.children()["worker-1"], signal.SIGKILL)  # the fifth exit within a minute
        assert up.proc.wait(timeout=90) == 1
        text = up.text()
        assert "worker-1 was killed by SIGKILL, its 5th exit within 60 s; stopping everything" in text, text
        assert f"(see {up.settings.storage_root / 'logs' / 'worker-1.log'})" in text
        poll(lambda: not any(alive(pid) for pid in kids), 30, "every child to stop")
        assert not up.settings.embedded_redis_socket.exists()
    finally:
        up.close()
