"""A whole stack served over HTTP for the browser and remote-CLI tests: Redis, a worker process, and
``sharpen dashboard`` on a free port, with an API token. One per test session (started on first use)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import Stack
from tests.integration.services import RedisServer, free_port

TOKEN = "browser-test-token"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@dataclass
class Served:
    stack: Stack
    url: str
    token: str


def start_served(tmp: Path):
    redis = RedisServer(tmp / "redis").start()
    port = free_port()
    (tmp / "data").mkdir(exist_ok=True)  # the training data root: tests put folders of photos in it
    stack = Stack(tmp, f"sqlite:///{tmp / 'sharpen.db'}", redis.url, SHARPEN_API_TOKEN=TOKEN, SHARPEN_POLL_MS=200,
                  SHARPEN_PORT=port, SHARPEN_LEASE_SECONDS=20, SHARPEN_DATA_ROOTS=tmp / "data")
    try:
        stack.start("worker", "--queue", "sharpen")
        stack.start("dashboard", ready="Running on")
    except BaseException:
        stack.stop()
        redis.stop()
        raise

    def stop():
        stack.stop()
        redis.stop()

    return Served(stack, f"http://127.0.0.1:{port}", TOKEN), stop
