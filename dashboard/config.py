"""The dashboard's own settings (read from the environment once, by the app factory) and the exposure rule."""
from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings


class ExposedWithoutToken(RuntimeError):
    """The dashboard would listen beyond this machine with no SHARPEN_API_TOKEN set."""


@dataclass(frozen=True)
class DashboardConfig:
    api_token: str = ""                     # SHARPEN_API_TOKEN: when set, every write needs it
    secret_key: str = ""                    # SHARPEN_SECRET_KEY: signs session cookies; default a key file
    max_upload_bytes: int = 2 * 1024 ** 3   # SHARPEN_MAX_UPLOAD_MB: the whole request, files included
    max_files: int = 10_000                 # SHARPEN_MAX_FILES: images per batch (files and zip entries)
    max_unzipped_bytes: int = 8 * 1024 ** 3  # SHARPEN_MAX_UNZIPPED_MB: a zip's content, all entries together
    max_zip_ratio: int = 200                # an entry that inflates more than this is a decompression bomb
    poll_ms: int = 1000                     # SHARPEN_POLL_MS: how often a batch page asks for progress
    data_roots: tuple[Path, ...] = ()       # SHARPEN_DATA_ROOTS (os.pathsep-separated; default ./data): training
                                            # data is chosen among the folders under these, never sent as a path
    max_model_bytes: int = 512 * 1024 ** 2  # SHARPEN_MAX_MODEL_MB: a model file uploaded to the registry

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "DashboardConfig":
        env = os.environ if env is None else env
        values: dict = {"api_token": env.get("SHARPEN_API_TOKEN", ""), "secret_key": env.get("SHARPEN_SECRET_KEY", "")}
        for name, key, scale in (("max_upload_bytes", "SHARPEN_MAX_UPLOAD_MB", 1024 ** 2),
                                 ("max_files", "SHARPEN_MAX_FILES", 1),
                                 ("max_unzipped_bytes", "SHARPEN_MAX_UNZIPPED_MB", 1024 ** 2),
                                 ("poll_ms", "SHARPEN_POLL_MS", 1),
                                 ("max_model_bytes", "SHARPEN_MAX_MODEL_MB", 1024 ** 2)):
            if env.get(key):
                values[name] = int(env[key]) * scale
        roots = env.get("SHARPEN_DATA_ROOTS") or "data"
        values["data_roots"] = tuple(Path(p).absolute() for p in roots.split(os.pathsep) if p)
        values.update(overrides)
        return cls(**values)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, config: DashboardConfig) -> None:
    """Refuse to serve beyond loopback without a token: anyone on the network could submit and cancel."""
    if not is_loopback(host) and not config.api_token:
        raise ExposedWithoutToken(
            f"the dashboard would listen on {host}, beyond this machine, with no SHARPEN_API_TOKEN set: anyone "
            "who can reach it could submit, retry and cancel batches. Set SHARPEN_API_TOKEN to a long random "
            "value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) or listen on 127.0.0.1.")


def secret_key(settings: Settings, config: DashboardConfig) -> str:
    """SHARPEN_SECRET_KEY, else a random key kept under the storage root (shared by every dashboard process
    that shares the storage, e.g. gunicorn workers; created once, never overwritten)."""
    if config.secret_key:
        return config.secret_key
    path = Path(settings.storage_root) / "dashboard-secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.")
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.close(fd)
            try:
                os.link(tmp, path)  # atomic and never replaces a key another process made first
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
