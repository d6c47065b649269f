"""What every view needs, made once per process by the app factory: ``current()`` inside a request."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from shared.config import Settings
from shared.db import Database
from shared.storage import Storage

from .config import DashboardConfig
from .queue import Queue


@dataclass
class DashboardState:
    settings: Settings
    config: DashboardConfig
    db: Database
    storage: Storage
    queue: Queue


def current() -> DashboardState:
    return current_app.extensions["sharpen"]
