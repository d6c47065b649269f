"""Cancelling a training run, on SQLite with the trainer in this process (no servers): the states cancel
allows, the loop stopping at a step boundary with its last checkpoint untouched (and resumable), and the
service ending the run ``cancelled`` with its log."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import torch
from sqlalchemy import update

from shared.models import CANCELLED, DONE, QUEUED, RUNNING, TrainingRun, utcnow
from trainer import service
from trainer.config import make_config
from trainer.loop import TrainingCancelled, train
from trainer.runs import CANCELLING, RunStateError, cancel_run, create_run, log_tail

from .test_jobs import ctx  # noqa: F401 - the fixture

SMALL = dict(crop=48, batch_size=4, patches_per_image=2, val_max_side=64, val_sigmas=(2.0,), checkpoint_every=1)


def set_run(ctx, run_id, **values):
    with ctx.db.session() as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))


def run_of(ctx, run_id) -> TrainingRun:
    with ctx.db.session() as s:
        return s.get(TrainingRun, run_id)


def test_what_cancel_does_in_each_state(ctx, photo_folder):
    cfg = make_config("plain", data=[str(photo_folder)], epochs=2, **SMALL)
    queued = create_run(ctx.db, cfg)
    assert cancel_run(ctx.db, queued) == CANCELLED
    assert run_of(ctx, queued).status == CANCELLED and run_of(ctx, queued).finished_at is not None
    with pytest.raises(RunStateError, match="already cancelled"):
        cancel_run(ctx.db, queued)
    assert service.run_training(ctx, queued) == "skipped"  # its message may still arrive: nothing happens

    running = create_run(ctx.db, cfg)
    set_run(ctx, running, status=RUNNING, worker="w", lease_expires_at=utcnow() + timedelta(seconds=60))
    assert cancel_run(ctx.db, running) == CANCELLING
    assert (run_of(ctx, running).status, run_of(ctx, running).cancel_requested) == (RUNNING, True)
    # its trainer died before it saw the flag; the sweep queued it again: the next trainer only ends it
    set_run(ctx, running, status=QUEUED, lease_expires_at=None)
    assert service.run_training(ctx, running) == CANCELLED
    assert run_of(ctx, running).epochs_done == 0
    assert "cancelled before this attempt started" in log_tail(ctx.storage.run_dir(running))[-1]

    dead = create_run(ctx.db, cfg)  # running, but its lease ran out: nobody to ask, so cancelled at once
    set_run(ctx, dead, status=RUNNING, worker="w", lease_expires_at=utcnow() - timedelta(seconds=1))
    assert cancel_run(ctx.db, dead) == CANCELLED

    done = create_run(ctx.db, cfg)
    set_run(ctx, done, status=DONE)
    with pytest.raises(RunStateError, match="already done"):
        cancel_run(ctx.db, done)
    with pytest.raises(LookupError, match="no training run 999"):
        cancel_run(ctx.db, 999)


def test_the_loop_stops_at_a_step_and_leaves_its_checkpoint_resumable(photo_folder, tmp_path):
    cfg = make_config("plain", data=[str(photo_folder)], epochs=3, **SMALL)
    run_dir, steps, checkpoints = tmp_path / "run", [], []

    def should_stop():  # asked after every step: stop at the first step after the first checkpoint
        steps.append(1)
        return bool(checkpoints) and len(steps) > checkpoints[0][2]

    with pytest.raises(TrainingCancelled) as stop:
        train(cfg, run_dir, progress=False, should_stop=should_stop,
              on_checkpoint=lambda epoch, path: checkpoints.append((epoch, path.read_bytes(), len(steps))))
    assert stop.value.epoch == 1  # in the second epoch (0-based)
    assert checkpoints[0][0] == 1 and (run_dir / "checkpoint.pt").read_bytes() == checkpoints[0][1]
    assert not (run_dir / "model.pt").exists()
    result = train(make_config("plain", data=[str(photo_folder)], epochs=3, **SMALL), run_dir, resume=True,
                   progress=False)
    assert result.resumed_from == 1 and [h["epoch"] for h in result.history] == [1, 2, 3]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"] == 3


def test_a_running_run_cancelled_by_a_user_ends_cancelled_with_its_checkpoint(ctx, photo_folder):
    cfg = make_config("plain", data=[str(photo_folder)], epochs=200, **SMALL)
    run_id = create_run(ctx.db, cfg)
    outcome = []

    def cancel_after_first_checkpoint():
        deadline = time.time() + 120
        while (run_of(ctx, run_id).checkpoint_epoch or 0) < 1 and time.time() < deadline:
            time.sleep(0.05)
        outcome.append(cancel_run(ctx.db, run_id))

    user = threading.Thread(target=cancel_after_first_checkpoint)
    user.start()
    t0 = time.time()
    assert service.run_training(ctx, run_id) == CANCELLED
    user.join()
    run = run_of(ctx, run_id)
    assert outcome == [CANCELLING] and run.status == CANCELLED and run.error is None
    assert 1 <= run.checkpoint_epoch <= run.epochs_done < 200 and time.time() - t0 < 90
    ckpt = torch.load(ctx.storage.run_dir(run_id) / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == run.checkpoint_epoch  # the kept checkpoint is the one the row names
    log = log_tail(ctx.storage.run_dir(run_id), lines=10_000)   # the whole log: a loaded machine trains more epochs
    assert log[0].endswith(f"attempt 1 on {ctx.name}: {cfg.arch}, 200 epochs")
    assert any("checkpoint written after epoch 1" in line for line in log)
    assert f"the checkpoint after epoch {run.checkpoint_epoch} is kept" in log[-1]
