"""The ``sharpen`` command: one entry point gathering the commands a person uses.

Each subcommand is a thin wrapper over functions in ``shared``, ``trainer``, ``scheduler`` and ``worker``.
"""
from __future__ import annotations

import click

from .enhance import enhance
from .evaluate import eval_command
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Sharpen: batch image sharpening with a small distilled CNN."""


cli.add_command(enhance)
cli.add_command(eval_command)
cli.add_command(train)


def main() -> None:
    cli()
