"""Whole stacks served over HTTP for the browser and remote-CLI tests, one per test session (started on
first use), each with an API token:

- ``start_served``: Redis, a worker process and ``sharpen dashboard`` (the development server ``sharpen up``
  runs) on a free port, over SQLite.
- ``start_compose_like``: every command docker-compose.yml runs (``sharpen db upgrade``, the workers, beat,
  and gunicorn with the ``dashboard`` service's app and options), read from the file itself, over PostgreSQL
  and Redis, outside docker. Only the bind address differs (127.0.0.1 and a free port).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import Stack
from tests.integration.services import RedisServer, create_postgres_database, free_port, postgres_admin_url

TOKEN = "browser-test-token"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
COMPOSE = ROOT / "docker-compose.yml"


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


def compose_commands() -> dict[str, list[str]]:
    """Each service's ``command: [...]`` in docker-compose.yml (written there as JSON lists, maybe wrapped)."""
    found, current, pending = {}, None, None
    for line in COMPOSE.read_text().splitlines():
        if pending is not None:
            pending += line
        elif re.fullmatch(r"  [\w-]+:", line):
            current = line.strip()[:-1]
        elif current and line.startswith("    command: "):
            pending = line.split(":", 1)[1]
        if pending is not None and pending.rstrip().endswith("]"):
            found[current], pending = json.loads(pending), None
    return found


def compose_command(service: str) -> list[str]:
    return compose_commands()[service]


def local_argv(command: list[str]) -> list[str]:
    """A compose command as this machine runs it: ``sharpen`` and ``gunicorn`` from this interpreter."""
    program = {"sharpen": [sys.executable, "-m", "shared.cli"], "gunicorn": [sys.executable, "-m", "gunicorn"]}
    return program[command[0]] + command[1:]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited:\n{proc.log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.time() < deadline, f"{url} never answered:\n{proc.log.read_text(errors='replace')}"
        time.sleep(0.1)


def start_gunicorn(stack: Stack, port: int) -> subprocess.Popen:
    """The compose ``dashboard`` command under gunicorn, bound to 127.0.0.1:PORT instead of 0.0.0.0:8000."""
    argv = local_argv(compose_command("dashboard"))
    bind = argv.index("--bind") + 1
    assert argv[bind] == "0.0.0.0:8000", argv  # the compose file still serves what the test rebinds
    argv[bind] = f"127.0.0.1:{port}"
    log = stack.tmp / "gunicorn.log"
    proc = subprocess.Popen(argv, env=stack.env, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log = log
    stack.procs.append(proc)  # stopped with the stack
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


# How each sharpen service of the compose file says it is up; ``redis`` is stood in for by RedisServer.
READY = {"redis": None, "migrate": None, "dashboard": None, "worker": " ready.", "trainer": " ready.",
         "sweeper": " ready.", "scheduler": "beat: Starting"}


def start_compose_like(tmp: Path, **env):
    """PostgreSQL, Redis, and every command of docker-compose.yml: ``migrate`` run to its end, the workers,
    beat, and gunicorn for the dashboard; returns (Served, stop)."""
    commands = compose_commands()
    assert set(commands) == set(READY), f"docker-compose.yml's services changed: {sorted(commands)}"
    db_url, drop = create_postgres_database(postgres_admin_url())
    redis = RedisServer(tmp / "redis").start()
    port = free_port()
    stack = None
    try:
        stack = Stack(tmp, db_url, redis.url, SHARPEN_API_TOKEN=TOKEN, SHARPEN_HOST="0.0.0.0", SHARPEN_PORT=port,
                      SHARPEN_LEASE_SECONDS=20, **env)
        migrate = subprocess.run(local_argv(commands["migrate"]), env=stack.env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stderr
        for service, ready in READY.items():
            if ready:
                assert commands[service][0] == "sharpen", commands[service]
                stack.start(*commands[service][1:], ready=ready)
        start_gunicorn(stack, port)
    except BaseException:
        if stack:
            stack.stop()
        redis.stop()
        drop()
        raise

    def stop():
        stack.stop()
        redis.stop()
        drop()

    return Served(stack, f"http://127.0.0.1:{port}", TOKEN), stop
