"""Retraining through the queue, a killed trainer, and the migrations on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import torch
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from shared import migrate
from shared.db import normalize_url
from shared.inference import default_model_path, file_sha256
from shared.models import Base, EpochMetric, ModelVersion, TrainingRun
from trainer.config import DEFAULT_STUDENT

TRAIN_ARGS = ["--crop", "64", "--batch-size", "4", "--val-max-side", "64", "--checkpoint-every", "1"]


def sharpen(stack, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "shared.cli", *args], env=stack.env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def wait_run(stack, run_id, timeout=240) -> TrainingRun:
    deadline = time.time() + timeout
    while True:
        with stack.db.session() as s:
            run = s.get(TrainingRun, run_id)
        if run.status in ("done", "failed"):
            return run
        assert time.time() < deadline, f"run {run_id} still {run.status}"
        time.sleep(0.3)


def epochs_of(stack, run_id) -> list[int]:
    with stack.db.session() as s:
        return list(s.scalars(select(EpochMetric.epoch).where(EpochMetric.run_id == run_id)
                              .order_by(EpochMetric.epoch)))


def test_retrain_from_the_cli_records_epochs_and_a_model(make_stack, sqlite_url, redis_url, photo_folder):
    """By default a retraining run is the shipped default's recipe continued from the active model; a fresh
    Gaussian-only run asked to activate itself if better is compared on every blur family and is not."""
    stack = make_stack(sqlite_url, redis_url)
    stack.start("worker", "--queue", "train")
    run_id = int(sharpen(stack, "retrain", "--data", str(photo_folder), "--epochs", "1",
                         "--patches-per-image", "2", *TRAIN_ARGS, "--crop", "96").split()[0])
    run = wait_run(stack, run_id)
    assert run.status == "done", run.error
    assert epochs_of(stack, run_id) == [1]
    assert (run.config["preset"], run.config["arch"]) == ("realistic", "student-s2d-wbank-lean")
    assert run.config["init_from"] == str(default_model_path())
    with stack.db.session() as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.training_run_id == run_id))
        assert version is not None and version.arch == "student-s2d-wbank-lean" and not version.active
        assert "val_ssim" in version.metrics
    meta = torch.load(stack.storage.resolve(version.path), weights_only=True)["meta"]
    assert meta["provenance"]["parents"]["init_from"]["sha256"] == file_sha256(default_model_path())
    shipped = torch.load(default_model_path(), weights_only=True)["meta"]
    assert meta["guard"] == shipped["guard"]   # it serves as its parent did, near-sharp photos held back alike
    assert meta["guard_tuning"] == {"inherited_from": file_sha256(default_model_path())}

    run_id = int(sharpen(stack, "retrain", "--data", str(photo_folder), "--preset", "plain", "--fresh",
                         "--epochs", "1", "--patches-per-image", "2", "--activate-if-better", *TRAIN_ARGS).split()[0])
    run = wait_run(stack, run_id)
    assert run.status == "done", run.error
    assert not run.activated  # one tiny Gaussian-only epoch does not beat the shipped model on every family
    with stack.db.session() as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.training_run_id == run_id))
        assert version.arch == DEFAULT_STUDENT and run.config["init_from"] is None and not version.active
        assert s.scalar(select(ModelVersion).where(ModelVersion.active.is_(True))).name == "shipped default"
    assert f"run {run_id} done" in sharpen(stack, "runs")
    assert f"run{run_id}-student-s2d" in sharpen(stack, "models")


def test_killed_trainer_resumes_from_its_checkpoint(make_stack, sqlite_url, redis_url, photo_folder):
    stack = make_stack(sqlite_url, redis_url)
    trainer = stack.start("worker", "--queue", "train")
    stack.start_scheduler()
    # epochs long enough (about a second each) that the CLI returns, and the kill lands, mid-run on a
    # loaded machine
    run_id = int(sharpen(stack, "retrain", "--data", str(photo_folder), "--preset", "plain", "--epochs", "8",
                         "--patches-per-image", "64", *TRAIN_ARGS).split()[0])
    ckpt = stack.storage.run_dir(run_id) / "checkpoint.pt"
    deadline = time.time() + 180
    while not ckpt.exists():
        assert time.time() < deadline and trainer.poll() is None
        time.sleep(0.01)
    stack.kill(trainer)
    with stack.db.session() as s:
        assert s.get(TrainingRun, run_id).status == "running"  # its lease will expire: nobody renews it
    stack.start("worker", "--queue", "train")
    run = wait_run(stack, run_id)
    assert run.status == "done", run.error
    assert run.attempts == 2 and run.epochs_done == 8
    assert epochs_of(stack, run_id) == list(range(1, 9))  # each epoch recorded once
    lines = (stack.storage.run_dir(run_id) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == list(range(1, 9))


def test_migrations_upgrade_downgrade_and_match_the_models(db_url):
    migrate.upgrade(db_url)
    engine = create_engine(normalize_url(db_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    assert {"batch", "image_job", "model_version", "training_run", "epoch_metric", "study"} <= set(
        inspect(engine).get_table_names())
    assert "rating" not in inspect(engine).get_table_names()   # dropped by 0004: never written
    migrate.downgrade(db_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db_url)
    assert migrate.current(db_url) is not None
    engine.dispose()
