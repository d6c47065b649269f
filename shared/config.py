"""``Settings``: read from the environment once, at the edge of each process, then passed down.

Defaults need no configuration: state under ``./var`` of the current directory, SQLite in it, and an
embedded Redis (started by ``sharpen up``) on a Unix socket in it. ``DATABASE_URL``, ``REDIS_URL`` and
``STORAGE_ROOT`` switch to real servers and shared storage.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    storage_root: Path = Path("var")
    database_url: str = ""             # empty: sqlite:///<storage_root>/sharpen.db
    redis_url: str = ""                # empty: the embedded Redis socket under <storage_root>/redis/
    model_path: str = ""               # empty: the active ModelVersion, else the shipped default
    device: str = "auto"
    max_pixels: int = 100_000_000      # images larger than this fail with a clear message
    chunk_size: int = 8                # images per sharpening task (a GPU sees full batches)
    lease_seconds: int = 60            # renewed while a worker holds a row; expired = the worker died
    requeue_after: int = 60            # queued rows without progress this long are sent again
    visibility_timeout: int = 3600     # Redis redelivers an unacked message after this: > the longest task
    max_attempts: int = 3              # claims of one image or run (worker deaths included) before giving up
    sweep_seconds: int = 5             # how often the scheduler looks for stranded work
    fault_backoff_max: int = 30        # longest wait before a worker that cannot work tries again (< requeue_after)
    io_threads: int = -1               # threads that decode and encode beside the model; -1: auto, 0: serial
    memory_budget_mb: int = 0          # memory one forward pass may use; 0: half the GPU's free memory, 512 on CPU
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8000

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.storage_root / 'sharpen.db').resolve()}"

    @property
    def embedded_redis_socket(self) -> Path:
        return (self.storage_root / "redis" / "redis.sock").resolve()

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def broker_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"redis+socket://{self.embedded_redis_socket}"

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        values = dict(
            storage_root=Path(env.get("STORAGE_ROOT") or "var").absolute(),
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            model_path=env.get("SHARPEN_MODEL", ""),
            device=env.get("SHARPEN_DEVICE", "auto"),
        )
        for name, key in (("max_pixels", "SHARPEN_MAX_PIXELS"), ("chunk_size", "SHARPEN_CHUNK_SIZE"),
                          ("lease_seconds", "SHARPEN_LEASE_SECONDS"), ("requeue_after", "SHARPEN_REQUEUE_AFTER"),
                          ("visibility_timeout", "SHARPEN_VISIBILITY_TIMEOUT"),
                          ("max_attempts", "SHARPEN_MAX_ATTEMPTS"), ("sweep_seconds", "SHARPEN_SWEEP_SECONDS"),
                          ("fault_backoff_max", "SHARPEN_FAULT_BACKOFF_MAX"), ("io_threads", "SHARPEN_IO_THREADS"),
                          ("memory_budget_mb", "SHARPEN_MEMORY_BUDGET_MB"),
                          ("dashboard_port", "SHARPEN_PORT")):
            if env.get(key):
                values[name] = int(env[key])
        if env.get("SHARPEN_HOST"):
            values["dashboard_host"] = env["SHARPEN_HOST"]
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Environment for a child process so it sees exactly these settings."""
        return {"STORAGE_ROOT": str(self.storage_root), "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url, "SHARPEN_MODEL": self.model_path, "SHARPEN_DEVICE": self.device,
                "SHARPEN_MAX_PIXELS": str(self.max_pixels), "SHARPEN_CHUNK_SIZE": str(self.chunk_size),
                "SHARPEN_LEASE_SECONDS": str(self.lease_seconds),
                "SHARPEN_REQUEUE_AFTER": str(self.requeue_after),
                "SHARPEN_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
                "SHARPEN_MAX_ATTEMPTS": str(self.max_attempts), "SHARPEN_SWEEP_SECONDS": str(self.sweep_seconds),
                "SHARPEN_FAULT_BACKOFF_MAX": str(self.fault_backoff_max),
                "SHARPEN_IO_THREADS": str(self.io_threads), "SHARPEN_MEMORY_BUDGET_MB": str(self.memory_budget_mb),
                "SHARPEN_HOST": self.dashboard_host, "SHARPEN_PORT": str(self.dashboard_port)}
