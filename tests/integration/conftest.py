"""Integration fixtures: real Redis, real worker processes, SQLite and PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from scheduler.enqueue import InputFile, create_batch, enqueue_batch
from shared import migrate
from shared.config import Settings
from shared.db import Database
from shared.degrade import Degradation, degrade
from shared.models import DONE, Batch
from shared.storage import Storage
from tests.conftest import PHOTOS, load_photo

from .services import RedisServer, create_postgres_database, postgres_admin_url

ROOT = Path(__file__).resolve().parents[2]


class Stack:
    """Settings, database and queue for one test, and the worker processes it starts."""

    def __init__(self, tmp: Path, db_url: str, redis_url: str, **env):
        self.tmp = tmp
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SHARPEN_")}  # this machine's settings
        self.env = {**clean, "STORAGE_ROOT": str(tmp / "var"), "DATABASE_URL": db_url,
                    "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                    "SHARPEN_LEASE_SECONDS": "4", "SHARPEN_REQUEUE_AFTER": "3", "SHARPEN_VISIBILITY_TIMEOUT": "30",
                    "SHARPEN_CHUNK_SIZE": "4", **{k: str(v) for k, v in env.items()}}
        self.settings = Settings.from_env(self.env)
        migrate.upgrade(db_url)
        self.db = Database(self.settings)
        self.storage = Storage(self.settings.storage_root)
        from worker.celery_app import make_celery

        self.celery = make_celery(self.settings)
        self.procs: list[subprocess.Popen] = []

    def send(self, task: str, kwargs: dict, queue: str) -> None:
        self.celery.send_task(task, kwargs=kwargs, queue=queue)

    def start(self, *args: str, ready: str = " ready.") -> subprocess.Popen:
        """Start ``sharpen ARGS`` and wait until its log says it is ready."""
        log = self.tmp / f"{args[0]}-{len(self.procs)}.log"
        proc = subprocess.Popen([sys.executable, "-m", "shared.cli", *args], env=self.env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        proc.log = log
        self.procs.append(proc)
        deadline = time.time() + 120
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"sharpen {' '.join(args)} exited:\n{log.read_text()}")
            assert time.time() < deadline, f"sharpen {' '.join(args)} not ready:\n{log.read_text()}"
            time.sleep(0.1)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it started, no clean-up
        proc.wait()

    def submit(self, inputs: list[InputFile], **kw) -> int:
        batch_id = create_batch(self.db, self.storage, inputs, **kw)
        enqueue_batch(self.db, self.send, batch_id, self.settings.chunk_size)
        return batch_id

    def batch(self, batch_id: int) -> Batch:
        with self.db.session() as s:
            return s.get(Batch, batch_id)

    def wait_batch(self, batch_id: int, timeout: float = 180) -> Batch:
        deadline = time.time() + timeout
        while (b := self.batch(batch_id)).status != DONE:
            if time.time() > deadline:
                logs = "\n".join(p.log.read_text(errors="replace")[-3000:] for p in self.procs)
                raise AssertionError(f"batch {batch_id} not done: {b.done_count}+{b.failed_count}/{b.total}\n{logs}")
            time.sleep(0.2)
        return b

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.db.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    url, drop = create_postgres_database(postgres_admin_url())
    yield url
    drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sharpen.db'}"
    url, drop = create_postgres_database(postgres_admin_url())
    request.addfinalizer(drop)
    return url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'sharpen.db'}"


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of this test's own: never a Redis that other test runs on this machine share (their
    workers would take this test's messages)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of our own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis-private").start()
    yield server
    server.stop()


@pytest.fixture
def make_stack(tmp_path):
    stacks = []

    def make(db_url: str, redis_url: str, **env) -> Stack:
        stack = Stack(tmp_path, db_url, redis_url, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def photo_crops(n: int, size: int = 64) -> list[np.ndarray]:
    """``n`` distinct sharp float32 RGB crops of real photos."""
    photos = [load_photo(name, 384) for name in PHOTOS]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(n):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        crops.append(img[y:y + size, x:x + size])
    return crops


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.rint(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


def blurred_and_sharp(folder: Path, n: int, sigma: float = 2.0, size: int = 64) -> tuple[Path, Path]:
    """Folders ``blurred/`` and ``sharp/`` with ``n`` matching PNG pairs."""
    for i, sharp in enumerate(photo_crops(n, size)):
        write_png(folder / "sharp" / f"img{i:03d}.png", sharp)
        blurred, _ = degrade(sharp, Degradation.fixed(sigma), np.random.default_rng(i))
        write_png(folder / "blurred" / f"img{i:03d}.png", blurred)
    return folder / "blurred", folder / "sharp"


def inputs_from(folder: Path) -> list[InputFile]:
    return [InputFile(p.name, path=p) for p in sorted(folder.iterdir())]
