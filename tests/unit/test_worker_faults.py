"""The image's fault or the worker's: plain pipeline functions on SQLite with the shipped model, no servers."""
from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import pytest
import torch
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from scheduler.enqueue import create_batch
from shared.imageio import ImageError
from shared.inference import ModelFileError, default_model_path
from shared.lease import LeaseKeeper, keep_lease
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, utcnow
from shared.overlapped import sharpen_within_memory
from shared.registry import register_model
from worker.faults import Backoff, Standby, WorkerFault, is_sticky, is_worker_fault
from worker.pipeline import can_work, claim, process_jobs

from .test_jobs import ctx, folder_of, inputs  # noqa: F401 - the fixture


def jobs_of(ctx, batch_id) -> list[ImageJob]:
    with ctx.db.session() as s:
        return list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id).order_by(ImageJob.id)))


def test_a_missing_model_hands_the_image_back_without_spending_an_attempt(ctx, tmp_path):
    model = ctx.storage.models_dir / "mine.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_model_path(), model)
    with ctx.db.session() as s:
        register_model(s, model, "mine", activate=True, storage_root=ctx.storage.root)
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 3)), mode="restore")
    ids = [j.id for j in jobs_of(ctx, batch_id)]
    hidden = model.rename(tmp_path / "away.pt")
    for _ in range(5):  # more tries than max_attempts: a broken worker never uses up an image's attempts
        with pytest.raises(WorkerFault, match="cannot load the model: ModelFileError: model file not found"):
            process_jobs(ctx, ids)
    assert [(j.status, j.attempts, j.error) for j in jobs_of(ctx, batch_id)] == [(QUEUED, 0, None)] * 3
    with ctx.db.session() as s:
        assert s.get(Batch, batch_id).failed_count == 0
    hidden.rename(model)
    assert process_jobs(ctx, ids) == {"done": 3, "failed": 0, "skipped": 0}
    assert [(j.status, j.attempts) for j in jobs_of(ctx, batch_id)] == [(DONE, 1)] * 3


def test_a_model_file_changed_since_registration_is_a_worker_fault(ctx, tmp_path):
    model = ctx.storage.models_dir / "mine.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_model_path(), model)
    with ctx.db.session() as s:
        register_model(s, model, "mine", activate=True, storage_root=ctx.storage.root)
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 1)), mode="restore")
    with open(model, "ab") as f:
        f.write(b"\0")  # still loads, but it is not the registered file
    with pytest.raises(WorkerFault, match="changed since it was registered"):
        process_jobs(ctx, [j.id for j in jobs_of(ctx, batch_id)])
    assert jobs_of(ctx, batch_id)[0].status == QUEUED


def test_a_lost_lease_writes_nothing(ctx, tmp_path, monkeypatch):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 1)), mode="restore")
    job_id = jobs_of(ctx, batch_id)[0].id
    hold = ctx.leases.hold

    def lost_at_once(row_id):  # what the keeper does when a renewal finds the image taken by another worker
        lease = hold(row_id)
        lease.lost.set()
        return lease

    monkeypatch.setattr(ctx.leases, "hold", lost_at_once)
    assert process_jobs(ctx, [job_id]) == {"done": 0, "failed": 0, "skipped": 1}
    assert not (ctx.storage.batch_dir(batch_id) / "output").exists()
    assert jobs_of(ctx, batch_id)[0].status == RUNNING  # the worker that took it over records it


def test_a_lease_is_lost_once_the_sweep_hands_the_image_out_again(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 1)), mode="restore")
    job_id = jobs_of(ctx, batch_id)[0].id
    assert claim(ctx, job_id) is not None
    with keep_lease(ctx.db, ImageJob, job_id, ctx.name, seconds=2) as lease:  # renewed every 0.5 s
        time.sleep(0.7)
        assert not lease.lost.is_set()  # renewed: still ours
        with ctx.db.session() as s:  # what the sweep does once the lease expired
            s.execute(update(ImageJob).where(ImageJob.id == job_id).values(status=QUEUED))
        assert lease.lost.wait(timeout=10)


def test_one_keeper_renews_every_image_in_flight_and_tells_which_was_lost(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 3)), mode="restore")
    ids = [j.id for j in jobs_of(ctx, batch_id)]
    keeper = LeaseKeeper(ctx.db, ImageJob, ctx.name, seconds=30)
    leases = {}
    for job_id in ids:
        assert claim(ctx, job_id) is not None
        leases[job_id] = keeper.hold(job_id)
    with ctx.db.session() as s:  # the sweep hands the second image out again; the first is about to expire
        s.execute(update(ImageJob).where(ImageJob.id == ids[1]).values(status=QUEUED))
        s.execute(update(ImageJob).where(ImageJob.id == ids[0]).values(lease_expires_at=utcnow()))
    keeper.renew()
    assert [leases[i].lost.is_set() for i in ids] == [False, True, False]
    assert jobs_of(ctx, batch_id)[0].lease_expires_at > utcnow() + timedelta(seconds=20)  # renewed
    keeper.release(ids[2])
    with ctx.db.session() as s:
        s.execute(update(ImageJob).where(ImageJob.id == ids[2]).values(status=QUEUED))
    keeper.renew()
    assert not leases[ids[2]].lost.is_set()  # released: no longer watched


def test_a_deleted_input_fails_alone_and_named(ctx, tmp_path):
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 2)), mode="restore")
    first, second = jobs_of(ctx, batch_id)
    ctx.storage.resolve(first.input_path).unlink()
    assert process_jobs(ctx, [first.id, second.id]) == {"done": 1, "failed": 1, "skipped": 0}
    first = jobs_of(ctx, batch_id)[0]
    assert first.status == FAILED and first.error == "p0.png: its stored file is missing (deleted from the storage?)"


def test_out_of_gpu_memory_tries_smaller_tiles_then_the_cpu(monkeypatch, photo):
    from shared import overlapped
    from shared.inference import load_model

    model = load_model(None, "cpu")
    px = torch.from_numpy((photo * 255).round().astype("uint8"))[None]
    expected = overlapped.sharpen_pixels(model, px)
    calls, real = [], overlapped.sharpen_pixels

    def short_of_memory(gpu_limit, cpu_fails=False):
        def run(m, t, **kw):
            on_gpu, tile = m is model, kw.get("tile") or 4096
            calls.append((tile, on_gpu))
            if on_gpu and tile > gpu_limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if not on_gpu and cpu_fails:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")
            return real(m, t, **kw)
        return run

    monkeypatch.setattr(overlapped, "sharpen_pixels", short_of_memory(256))
    assert torch.equal(sharpen_within_memory(model, px, None, "big.png"), expected)  # tiled == whole
    assert calls == [(4096, True), (256, True)]
    calls.clear()
    monkeypatch.setattr(overlapped, "sharpen_pixels", short_of_memory(0))  # the GPU never has enough
    assert torch.equal(sharpen_within_memory(model, px, None, "big.png"), expected)
    assert calls == [(4096, True), (256, True), (256, False)]  # the last try on a model loaded on the CPU
    calls.clear()
    two = torch.cat([px, px.flip(2)])                            # a batch that does not fit: one at a time
    monkeypatch.setattr(overlapped, "sharpen_pixels", short_of_memory(256))
    both = sharpen_within_memory(model, two, None, "a.png, b.png")
    assert torch.equal(both[0], expected[0]) and calls[0] == (4096, True) and len(calls) == 5
    monkeypatch.setattr(overlapped, "sharpen_pixels", short_of_memory(0, cpu_fails=True))
    with pytest.raises(ImageError, match="big.png: too large for this worker: out of memory on the GPU"):
        sharpen_within_memory(model, px, None, "big.png")


def test_which_errors_are_the_workers():
    assert is_worker_fault(ModelFileError("model file not found"))
    assert is_worker_fault(OSError(28, "No space left on device"))
    assert is_worker_fault(OperationalError("SELECT 1", {}, Exception("could not connect to server")))
    assert is_worker_fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_worker_fault(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_worker_fault(RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected input"))
    assert not is_worker_fault(ValueError("bad pixels"))


def test_sticky_cuda_errors_are_told_apart():
    assert is_sticky(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_sticky(WorkerFault("the storage /data is not there"))
    wrapped = WorkerFault("cannot load the model")
    wrapped.__cause__ = RuntimeError("CUDA error: device-side assert triggered")
    assert is_sticky(wrapped)
    assert not is_sticky(torch.cuda.OutOfMemoryError("CUDA out of memory"))   # goes away with the next image
    assert not is_sticky(RuntimeError("CUDA driver initialization failed"))


def test_backoff_grows_then_stops_taking_work_and_resets():
    b = Backoff(max_delay=10, first_delay=1, pause_after=3)
    assert [b.fault() for _ in range(2)] == [1, 2] and not b.pausing   # still takes work
    assert b.fault() == 4 and b.pausing                                # third in a row: stops taking work
    assert [b.fault() for _ in range(3)] == [8, 10, 10]                # capped
    b.ok()
    assert not b.pausing and b.fault() == 1


def test_standby_checks_until_the_worker_can_work_then_resumes():
    tries, resumed = [], threading.Event()

    def probe():
        tries.append(1)
        if len(tries) < 3:
            raise ModelFileError("model file not found: /x.pt")

    standby = Standby()
    standby.start("ModelFileError: model file not found", probe, resumed.set, every=0.05)
    assert standby.active
    standby.start("again", probe, resumed.set, every=0.05)   # already waiting: no second thread
    assert resumed.wait(5) and len(tries) == 3
    time.sleep(0.1)
    assert not standby.active and len(tries) == 3


def test_can_work_names_what_still_stops_the_worker(ctx, tmp_path):
    can_work(ctx)   # database, storage and the default model: fine
    model = ctx.storage.models_dir / "mine.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_model_path(), model)
    with ctx.db.session() as s:
        register_model(s, model, "mine", activate=True, storage_root=ctx.storage.root)
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 1)), mode="restore")
    hidden = model.rename(tmp_path / "away.pt")
    with pytest.raises(WorkerFault):
        process_jobs(ctx, [jobs_of(ctx, batch_id)[0].id])
    with pytest.raises(ModelFileError, match="model file not found"):
        can_work(ctx)   # the model the chunk needed
    hidden.rename(model)
    can_work(ctx)


def test_the_task_backs_off_then_stops_taking_work_or_exits_after_a_sticky_cuda_error(ctx, tmp_path, monkeypatch):
    import signal

    from worker import tasks

    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 2)), mode="restore")
    ids = [j.id for j in jobs_of(ctx, batch_id)]
    fault = [RuntimeError("CUDA error: an illegal memory access was encountered")]

    def broken(_ctx, _ids, wait=True):
        raise WorkerFault("the device failed") from fault[0]

    killed, stopped = [], []
    monkeypatch.setattr(tasks, "context", lambda: ctx)
    monkeypatch.setattr("worker.pipeline.process_jobs", broken)
    monkeypatch.setattr(tasks.os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setattr(tasks, "stop_taking_work", lambda task, c, cause: stopped.append(cause))
    # a fresh process (no image done yet): a restart would not help; backs off, then stops taking work
    for _ in range(3):
        with pytest.raises(WorkerFault):
            tasks.process_images(ids)   # called directly, retry re-raises
    assert killed == [] and len(stopped) == 1 and "illegal memory access" in stopped[0]
    assert {j.error for j in jobs_of(ctx, batch_id)} == {
        f"waiting: worker {ctx.name} cannot work: RuntimeError: CUDA error: an illegal memory access was encountered"}
    ctx.clock.images = 5   # it worked before: this process's CUDA context broke; it exits to be started afresh
    with pytest.raises(WorkerFault):
        tasks.process_images(ids)
    assert killed == [signal.SIGTERM]
    ctx.backoff.ok()
    fault[0] = RuntimeError("CUDA error: out of memory")   # not sticky: retried, the process stays
    with pytest.raises(WorkerFault):
        tasks.process_images(ids)
    assert killed == [signal.SIGTERM] and len(stopped) == 1
