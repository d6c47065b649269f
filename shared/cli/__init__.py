"""The ``sharpen`` command: one entry point gathering the commands a person uses.

Each subcommand is a thin wrapper over functions in ``shared``, ``trainer``, ``scheduler`` and ``worker``.
Settings are read from the environment once, here.
"""
from __future__ import annotations

import click

from shared.config import Settings

from .admin import db, models, retrain, runs
from .context import Context
from .enhance import enhance
from .evaluate import eval_command
from .jobs import batches, metrics, results, status, submit
from .samples import samples
from .services import dashboard, scheduler, up, worker
from .study import study
from trainer.cli import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sharpen: batch image sharpening with a small distilled CNN."""
    ctx.obj = ctx.obj or Context(Settings.from_env())


for command in (enhance, eval_command, train, samples, submit, status, metrics, batches, results, worker,
                scheduler, dashboard, up, db, models, retrain, runs, study):
    cli.add_command(command)


def main() -> None:
    cli()
