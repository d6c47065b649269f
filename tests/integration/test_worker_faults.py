"""A worker that cannot work hands its images back instead of failing them (real worker, Redis, scheduler)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

from sqlalchemy import select

from shared.inference import default_model_path
from shared.models import DONE, QUEUED, ImageJob
from shared.registry import register_model

from .conftest import blurred_and_sharp, inputs_from


def test_a_model_file_removed_after_registration_leaves_the_images_queued(make_stack, sqlite_url, redis_url,
                                                                         tmp_path):
    stack = make_stack(sqlite_url, redis_url, SHARPEN_FAULT_BACKOFF_MAX=2)
    model = stack.storage.models_dir / "mine.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_model_path(), model)
    with stack.db.session() as s:
        register_model(s, model, "mine", activate=True, storage_root=stack.storage.root)
    worker = stack.start("worker", "--queue", "sharpen")
    _beat, sweeper = stack.start_scheduler()
    hidden = model.rename(tmp_path / "elsewhere.pt")  # e.g. a storage volume not mounted on this worker
    folder, _ = blurred_and_sharp(tmp_path / "data", 6)
    batch_id = stack.submit(inputs_from(folder), mode="restore")
    faults = "this worker cannot work: ModelFileError: model file not found"
    deadline = time.time() + 120
    while "it stops taking images" not in worker.log.read_text():  # three faults in a row: it leaves the queue
        assert time.time() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.2)
    assert worker.log.read_text().count(faults) == 3
    sweeps = lambda: sweeper.log.read_text().count("sharpen.requeue_stranded") // 2  # noqa: E731 - received, succeeded
    seen = sweeps()
    while sweeps() < seen + 2:  # ... and the scheduler's sweeps meanwhile fail nothing
        assert time.time() < deadline, sweeper.log.read_text()[-3000:]
        time.sleep(0.2)
    assert "still cannot work (ModelFileError" in worker.log.read_text()  # it checks now and then
    with stack.db.session() as s:
        jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)))
    assert {(j.status, j.attempts) for j in jobs} == {(QUEUED, 0)}
    reason = f"cannot work: ModelFileError: model file not found: {model}"
    assert all(j.error.startswith("waiting: worker ") and j.error.endswith(reason) for j in jobs)
    b = stack.batch(batch_id)
    assert b.status != DONE and b.failed_count == 0
    shown = subprocess.run([sys.executable, "-m", "shared.cli", "status", str(batch_id)], env=stack.env,
                           capture_output=True, text=True, timeout=60)
    assert f"6 images waiting: worker " in shown.stdout and reason in shown.stdout, shown.stdout + shown.stderr
    hidden.rename(model)  # the file is back: the worker rejoins the queue and finishes the batch
    b = stack.wait_batch(batch_id, timeout=120)
    assert (b.done_count, b.failed_count) == (6, 0)
    assert "this worker can work again" in worker.log.read_text()
    with stack.db.session() as s:
        assert {j.error for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id))} == {None}
