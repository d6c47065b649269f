"""Training runs through the queue: a ``TrainingRun`` row in, epochs and a ``ModelVersion`` out.

The run claims a lease and renews it while it trains (``shared.lease``); a worker that dies stops renewing, the
periodic job sends the run again, and it resumes from its checkpoint. Epoch rows are upserted, so an
epoch repeated after a crash is recorded once. A user's cancel (``trainer.runs.cancel_run``) sets a flag that
the loop reads at its step boundaries (at most once a second): the run ends ``cancelled``, its last
checkpoint kept. What happens is written to ``runs/<run>/train.log``, which the run page shows.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from sqlalchemy import select, update

from shared.db import TRANSIENT_ERRORS
from shared.inference import file_sha256, load_model, save_model
from shared.lease import claim_statement, keep_lease
from shared.models import CANCELLED, DONE, FAILED, RUNNING, EpochMetric, TrainingRun, utcnow
from shared.registry import activate_model, active_model, register_model

from .config import TrainConfig
from .data import split_sources, validation_set
from .loop import TrainingCancelled, evaluate, train
from .runs import append_log

CANCEL_POLL_SECONDS = 1.0  # how often the loop asks the database whether the run was cancelled


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


def _cancel_check(ctx, run_id: int):
    """``should_stop`` for the loop: the run's cancel flag, read from the database at most once a second."""
    last = [time.monotonic()]

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last[0] < CANCEL_POLL_SECONDS:
            return False
        last[0] = now
        with ctx.db.session() as s:
            return bool(s.scalar(select(TrainingRun.cancel_requested).where(TrainingRun.id == run_id)))
    return should_stop


def comparison_set(cfg: TrainConfig) -> list:
    """What a finished run and the active model are compared on: this run's validation photos under every
    evaluation family (Gaussian σ, unblurred, defocus, shake, noise + JPEG), whatever the run trained on, so
    that a model trained for clean Gaussian blur cannot replace one that does no harm on real photos."""
    _, val_files = split_sources(cfg)
    return validation_set(val_files, dataclasses.replace(cfg, degradation="realistic"))


def _score(path, pairs, device: str) -> float:
    """Mean SSIM of the model file as it would serve (its guard included)."""
    model = load_model(path, device)
    return evaluate(model.net, model.arch, pairs, model.device, meta=model.meta)["val_ssim"]


def inherit_guard(path, parent) -> None:
    """A run that continued a guarded model keeps its parent's guard (``LoadedModel.guard``: how much of the
    correction images that read as nearly sharp get), so the new model serves, and is compared, as its
    parent did; ``sharpen train guard`` chooses a new one on the tuning photos."""
    if not parent or not Path(parent).is_file():   # (removed while the run trained: nothing to keep)
        return
    guard = load_model(parent, "cpu").meta.get("guard")
    model = load_model(path, "cpu")
    if guard and not model.meta.get("guard"):
        meta = {**model.meta, "guard": guard, "guard_tuning": {"inherited_from": file_sha256(Path(parent))}}
        save_model(path, model.net, model.arch, meta)


def beats_active(ctx, cfg: TrainConfig, new_model) -> bool:
    """Whether the new model's mean validation SSIM on ``comparison_set`` is above the active model's."""
    with ctx.db.session() as s:
        active = ctx.storage.resolve(active_model(s).path)
    pairs = comparison_set(cfg)
    return _score(new_model, pairs, ctx.settings.device) > _score(active, pairs, ctx.settings.device)


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
    run_dir = ctx.storage.run_dir(run_id)
    with ctx.db.session() as s:
        run = s.get(TrainingRun, run_id)
        cfg, activate_if_better = TrainConfig.from_dict(run.config), run.activate_if_better
        attempt, cancelled, checkpoint = run.attempts, run.cancel_requested, run.checkpoint_epoch
    append_log(run_dir, f"attempt {attempt} on {ctx.name}: {cfg.arch}, {cfg.epochs} epochs"
               + (f", resuming after epoch {checkpoint}" if checkpoint else ""))
    if cancelled:  # cancelled while its trainer was dying: nothing more to do
        append_log(run_dir, "cancelled before this attempt started")
        _end(ctx, run_id, status=CANCELLED, error=None)
        return CANCELLED
    if cfg.teacher:  # a registered teacher is recorded relative to the storage root
        cfg.teacher = str(ctx.storage.resolve(cfg.teacher))

    with keep_lease(ctx.db, TrainingRun, run_id, ctx.name, ctx.settings.lease_seconds) as lease:
        def on_epoch(epoch: int, metrics: dict) -> None:
            if lease.lost.is_set():
                raise LeaseLost(f"run {run_id} was taken over by another worker")
            record_epoch(ctx, run_id, epoch, metrics, cfg.epochs)
            append_log(run_dir, f"epoch {epoch}/{cfg.epochs}: loss {metrics['loss']:.5f}, val SSIM "
                                f"{metrics['val_ssim']:.4f} (input {metrics['input_ssim']:.4f}), PSNR "
                                f"{metrics['val_psnr']:.2f} dB, {metrics['seconds']:.1f} s")

        def on_checkpoint(epoch: int, path) -> None:
            with ctx.db.session() as s:
                s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(checkpoint_epoch=epoch))
            append_log(run_dir, f"checkpoint written after epoch {epoch} ({path.name})")

        try:
            result = train(cfg, run_dir, resume=True, progress=False, on_epoch=on_epoch,
                           should_stop=_cancel_check(ctx, run_id), on_checkpoint=on_checkpoint)
            dst = ctx.storage.models_dir / f"run{run_id}-{cfg.arch}.pt"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result.model_path, dst)
            inherit_guard(dst, cfg.init_from)
            activated = bool(activate_if_better and beats_active(ctx, cfg, dst))
            with ctx.db.session() as s:
                version = register_model(s, dst, f"run {run_id} ({cfg.arch})", training_run_id=run_id,
                                         storage_root=ctx.storage.root)
                if activated:
                    activate_model(s, version.id, reason="better")
                version_id = version.id
            append_log(run_dir, f"done: model version {version_id}" + (", activated (better than the active one)"
                                                                      if activated else ""))
            _end(ctx, run_id, status=DONE, activated=activated, error=None)
            return DONE
        except TrainingCancelled as stop:
            kept = _checkpoint_epoch(ctx, run_id)
            append_log(run_dir, f"cancelled: {stop}; " + (f"the checkpoint after epoch {kept} is kept" if kept
                                                          else "no checkpoint had been written yet"))
            _end(ctx, run_id, status=CANCELLED, error=None)
            return CANCELLED
        except (LeaseLost, *TRANSIENT_ERRORS):
            raise
        except Exception as exc:  # noqa: BLE001 - the run is marked failed with a readable message
            append_log(run_dir, f"failed: {exc.__class__.__name__}: {exc}")
            _end(ctx, run_id, status=FAILED, error=f"{exc.__class__.__name__}: {exc}")
            return FAILED


def _checkpoint_epoch(ctx, run_id: int) -> int | None:
    with ctx.db.session() as s:
        return s.scalar(select(TrainingRun.checkpoint_epoch).where(TrainingRun.id == run_id))


class LeaseLost(RuntimeError):
    """Another worker took the run over (this one was presumed dead): stop without touching its rows."""
