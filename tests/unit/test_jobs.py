"""The job system's plain functions on SQLite, no servers: batches, claims, leases, recovery, models."""
from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest
from sqlalchemy import select, update

from scheduler.enqueue import InputFile, create_batch, enqueue_batch, pair_references, stranded_jobs
from shared import migrate
from shared.config import Settings
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, ModelVersion, utcnow
from shared.registry import activate_model, active_model, register_model
from worker.pipeline import WorkerContext, claim, process_jobs


@pytest.fixture
def ctx(tmp_path):
    settings = Settings.from_env({"STORAGE_ROOT": str(tmp_path / "var")}, lease_seconds=30)
    migrate.upgrade(settings.db_url)
    context = WorkerContext.from_settings(settings)
    yield context
    context.db.dispose()


def folder_of(tmp_path, n, name="in"):
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i}.png"), (rng.random((24, 32, 3)) * 255).astype(np.uint8))
    return folder


def inputs(folder):
    return [InputFile(p.name, path=p) for p in sorted(folder.iterdir())]


def test_batch_rows_files_and_messages(ctx, tmp_path):
    sent = []
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 5)), mode="restore", name="holiday")
    assert enqueue_batch(ctx.db, lambda *a: sent.append(a), batch_id, chunk_size=2) == 5
    assert [len(kw["job_ids"]) for _t, kw, _q in sent] == [2, 2, 1]
    with ctx.db.session() as s:
        batch = s.get(Batch, batch_id)
        jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)))
    assert (batch.name, batch.total, batch.status, batch.model_sha256 is not None) == ("holiday", 5, QUEUED, True)
    for job in jobs:  # stored under ids, not user names
        assert ctx.storage.resolve(job.input_path).name == f"{job.id}.png" and job.enqueued_at is not None


def test_paired_without_reference_fails_up_front(ctx, tmp_path):
    refs = folder_of(tmp_path, 2, "refs")
    items = pair_references(inputs(folder_of(tmp_path, 3)), refs)
    batch_id = create_batch(ctx.db, ctx.storage, items, mode="paired")
    with ctx.db.session() as s:
        failed = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == FAILED)))
    assert [j.original_name for j in failed] == ["p2.png"] and "no reference image" in failed[0].error
    with pytest.raises(ValueError, match="σ"):
        create_batch(ctx.db, ctx.storage, inputs(refs), mode="synthetic")
    with pytest.raises(ValueError, match="unknown mode"):
        create_batch(ctx.db, ctx.storage, inputs(refs), mode="magic")


def test_processing_is_idempotent_and_finishes_the_batch(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 3)), mode="synthetic", sigma=1.5)
    with ctx.db.session() as s:
        ids = list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)))
    assert process_jobs(ctx, ids) == {"done": 3, "failed": 0, "skipped": 0}
    outputs = sorted((ctx.storage.batch_dir(batch_id) / "output").iterdir())
    assert process_jobs(ctx, ids) == {"done": 0, "failed": 0, "skipped": 3}  # a re-sent message does nothing
    assert sorted((ctx.storage.batch_dir(batch_id) / "output").iterdir()) == outputs
    with ctx.db.session() as s:
        batch = s.get(Batch, batch_id)
    assert (batch.status, batch.done_count) == (DONE, 3) and batch.mean_ssim is not None
    assert batch.megapixels == pytest.approx(3 * 24 * 32 / 1e6)


def test_claims_respect_leases(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 2)), mode="restore")
    with ctx.db.session() as s:
        a, b = s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id).order_by(ImageJob.id))
    assert claim(ctx, a) is not None
    assert claim(ctx, a) is None  # held, lease valid
    with ctx.db.session() as s:  # its worker died long ago
        s.execute(update(ImageJob).where(ImageJob.id == a).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with ctx.db.session() as s:
        queued, expired = stranded_jobs(s, requeue_after=3600)
    assert expired == [a] and queued == [b]  # b was never sent (the queue was down when it was submitted)
    enqueue_batch(ctx.db, lambda *args: None, batch_id, chunk_size=8)
    with ctx.db.session() as s:
        assert stranded_jobs(s, requeue_after=3600)[0] == []  # sent just now: its message is waiting
        assert stranded_jobs(s, requeue_after=-1)[0] == [b]   # sent too long ago: sent again
    job, _batch, _version = claim(ctx, a)
    assert (job.status, job.attempts) == (RUNNING, 2)


def test_model_versions(ctx, tmp_path):
    with ctx.db.session() as s:
        default = active_model(s)  # the shipped model, registered on first use
        assert default.active and default.arch.startswith("student")
    from shared import nets
    from shared.inference import save_model

    save_model(tmp_path / "other.pt", nets.build("student-seed"), "student-seed", {"metrics": {"val_ssim": 0.5}})
    with ctx.db.session() as s:
        other = register_model(s, tmp_path / "other.pt", "other")
        assert register_model(s, tmp_path / "other.pt").id == other.id  # same file, same version
        activate_model(s, other.id)
    with ctx.db.session() as s:
        assert [v.name for v in s.scalars(select(ModelVersion).where(ModelVersion.active.is_(True)))] == ["other"]
