"""Training runs through the queue: a ``TrainingRun`` row in, epochs and a ``ModelVersion`` out.

The run claims a lease and renews it while it trains (``shared.lease``); a worker that dies stops renewing, the
periodic job sends the run again, and it resumes from its checkpoint. Epoch rows are upserted, so an
epoch repeated after a crash is recorded once.
"""
from __future__ import annotations

import shutil

from sqlalchemy import select, update

from shared.db import TRANSIENT_ERRORS
from shared.inference import load_model
from shared.lease import claim_statement, keep_lease
from shared.models import DONE, FAILED, QUEUED, RUNNING, EpochMetric, TrainingRun, utcnow
from shared.registry import activate_model, active_model, register_model

from .config import TrainConfig
from .data import split_sources, validation_set
from .loop import evaluate, train


def create_run(db, config: TrainConfig, *, activate_if_better: bool = False) -> int:
    with db.session() as s:
        run = TrainingRun(status=QUEUED, config=config.to_dict(), epochs_total=config.epochs,
                          activate_if_better=activate_if_better)
        s.add(run)
        s.flush()
        return run.id


def _claim(ctx, run_id: int) -> bool:
    with ctx.db.session() as s:
        res = s.execute(claim_statement(TrainingRun, run_id, ctx.name, ctx.settings.lease_seconds,
                                        ctx.settings.max_attempts, utcnow(),
                                        run_dir=ctx.storage.relative(ctx.storage.run_dir(run_id))))
        return res.rowcount == 1


def record_epoch(ctx, run_id: int, epoch: int, metrics: dict, epochs_total: int) -> None:
    """Upsert the epoch's row and the run's progress."""
    with ctx.db.session() as s:
        row = s.scalar(select(EpochMetric).where(EpochMetric.run_id == run_id, EpochMetric.epoch == epoch))
        row = row or EpochMetric(run_id=run_id, epoch=epoch)
        row.loss, row.val_ssim, row.val_psnr = metrics.get("loss"), metrics.get("val_ssim"), metrics.get("val_psnr")
        row.metrics = metrics
        s.add(row)
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id)
                  .values(epochs_done=epoch, epochs_total=epochs_total))


def _active_score(ctx, cfg: TrainConfig) -> float | None:
    """Validation SSIM of the active model on this run's own validation set (same pairs, same code)."""
    with ctx.db.session() as s:
        version = active_model(s)
        path = ctx.storage.resolve(version.path)
    model = load_model(path, ctx.settings.device)
    _, val_files = split_sources(cfg)
    return evaluate(model.net, model.arch, validation_set(val_files, cfg), model.device)["val_ssim"]


def _end(ctx, run_id: int, **values) -> None:
    """Final status, only while this worker still holds the run."""
    with ctx.db.session() as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.worker == ctx.name,
                                            TrainingRun.status == RUNNING)
                  .values(finished_at=utcnow(), lease_expires_at=None, **values))


def run_training(ctx, run_id: int) -> str:
    """Run (or resume) a queued training run to completion; returns its final status.

    Transient errors (database, connection) propagate and leave the run's lease to lapse, so it is resumed
    later; any other error fails the run with its message.
    """
    if not _claim(ctx, run_id):
        return "skipped"
    with ctx.db.session() as s:
        run = s.get(TrainingRun, run_id)
        cfg, activate_if_better = TrainConfig.from_dict(run.config), run.activate_if_better

    with keep_lease(ctx.db, TrainingRun, run_id, ctx.name, ctx.settings.lease_seconds) as lease:
        def on_epoch(epoch: int, metrics: dict) -> None:
            if lease.lost.is_set():
                raise LeaseLost(f"run {run_id} was taken over by another worker")
            record_epoch(ctx, run_id, epoch, metrics, cfg.epochs)

        try:
            result = train(cfg, ctx.storage.run_dir(run_id), resume=True, progress=False, on_epoch=on_epoch)
            dst = ctx.storage.models_dir / f"run{run_id}-{cfg.arch}.pt"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result.model_path, dst)
            activated = bool(activate_if_better and result.final["val_ssim"] > (_active_score(ctx, cfg) or -1.0))
            with ctx.db.session() as s:
                version = register_model(s, dst, f"run {run_id} ({cfg.arch})", training_run_id=run_id,
                                         storage_root=ctx.storage.root)
                if activated:
                    activate_model(s, version.id)
            _end(ctx, run_id, status=DONE, activated=activated, error=None)
            return DONE
        except (LeaseLost, *TRANSIENT_ERRORS):
            raise
        except Exception as exc:  # noqa: BLE001 - the run is marked failed with a readable message
            _end(ctx, run_id, status=FAILED, error=f"{exc.__class__.__name__}: {exc}")
            return FAILED


class LeaseLost(RuntimeError):
    """Another worker took the run over (this one was presumed dead): stop without touching its rows."""
