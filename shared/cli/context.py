"""What the job-system commands share: settings read once, the database, storage, the Celery app."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from shared.config import Settings
from shared.db import Database
from shared.storage import Storage


class QueueUnreachable(RuntimeError):
    pass


def listed_images(paths, param_hint: str):
    """``shared.inputs.list_images`` for a command: a missing path is a usage error naming ``param_hint``;
    each file of a folder that is not an image is reported on stderr, by name, as skipped."""
    import click

    from shared.inputs import list_images

    try:
        listing = list_images(paths)
    except FileNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    for path, reason in listing.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    return listing.images


@dataclass
class Context:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        from shared.migrate import upgrade

        upgrade(self.settings.db_url)  # cheap at head; makes a fresh ./var usable with no set-up step
        return Database(self.settings)

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings.storage_root)

    @cached_property
    def celery(self):
        from worker.celery_app import make_celery

        return make_celery(self.settings)

    def send(self, task: str, kwargs: dict, queue: str) -> None:
        """Send a message now or raise QueueUnreachable (the rows stay queued; the scheduler sends later)."""
        if self.settings.uses_embedded_redis and not self.settings.embedded_redis_socket.exists():
            raise QueueUnreachable(f"no Redis at {self.settings.embedded_redis_socket}")
        try:
            self.celery.send_task(task, kwargs=kwargs, queue=queue, retry=False)
        except Exception as exc:  # noqa: BLE001 - kombu raises several connection error types
            raise QueueUnreachable(str(exc)) from exc
