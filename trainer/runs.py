"""Training-run rows and files without torch: create a run, cancel one, and its log under ``runs/<run>/``.

The dashboard, the CLI and the trainer share these; ``trainer.service`` does the training itself.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sqlalchemy import update

from shared.lease import free
from shared.models import CANCELLED, DONE, FAILED, QUEUED, RUNNING, TrainingRun, utcnow

from .config import TrainConfig

FINAL = (DONE, FAILED, CANCELLED)
LOG_NAME = "train.log"
CANCELLING = "cancelling"


class RunStateError(ValueError):
    """The run is not in a state that allows the action (e.g. cancelling a finished run)."""


RETRAIN_PRESET = "realistic"   # what `sharpen retrain` and the dashboard's training form train by default


def continue_active(db, storage, config: TrainConfig) -> TrainConfig:
    """``config`` starting from the active model's weights when it names no start of its own and the active
    model has its architecture: a retraining run refines the model that serves rather than a new network
    (a fresh bank student would start as plain blind Wiener). Otherwise ``config`` unchanged."""
    from shared.registry import active_model

    if config.init_from:
        return config
    with db.session() as s:
        version = active_model(s)
        arch, path = version.arch, str(storage.resolve(version.path))
    return dataclasses.replace(config, init_from=path) if arch == config.arch else config


def create_run(db, config: TrainConfig, *, activate_if_better: bool = False) -> int:
    """Insert a queued run; send it with ``scheduler.periodic.enqueue_training_run`` after this commits."""
    with db.session() as s:
        run = TrainingRun(status=QUEUED, config=config.to_dict(), epochs_total=config.epochs,
                          activate_if_better=activate_if_better)
        s.add(run)
        s.flush()
        return run.id


def cancel_run(db, run_id: int, now=None) -> str:
    """Cancel a run. One nobody is training (queued, or its trainer died) is ``cancelled`` at once; a running
    one is asked to stop (its trainer stops at the next step boundary, keeps its last checkpoint and marks it
    cancelled). Returns ``cancelled`` or ``cancelling``. Raises LookupError for an unknown run and
    RunStateError for one that is already done, failed or cancelled.
    """
    now = now or utcnow()
    with db.session() as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise LookupError(f"no training run {run_id}")
        if run.status in FINAL:
            raise RunStateError(f"run {run_id} is already {run.status}: only a queued or running run can be "
                                "cancelled")
        res = s.execute(update(TrainingRun).where(TrainingRun.id == run_id, free(TrainingRun, now))
                        .values(status=CANCELLED, cancel_requested=True, finished_at=now, lease_expires_at=None,
                                error=None))
        if res.rowcount:
            return CANCELLED
        res = s.execute(update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.status == RUNNING)
                        .values(cancel_requested=True))
        if res.rowcount:
            return CANCELLING
    return cancel_run(db, run_id)  # it ended meanwhile: say how


def append_log(run_dir: Path, line: str) -> None:
    """One timestamped line in the run's log (``runs/<run>/train.log``, on the shared storage)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(f"{utcnow():%Y-%m-%d %H:%M:%S}Z {line.rstrip()}\n")


def log_tail(run_dir: Path, lines: int = 40, most_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of the run's log (reading at most ``most_bytes`` from its end)."""
    path = run_dir / LOG_NAME
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - most_bytes))
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > most_bytes:
        text = text[1:]  # the first line read is most likely cut
    return text[-lines:]
