"""Batches through a real Redis and a real worker process, on SQLite and PostgreSQL."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import redis
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sqlalchemy import select

from scheduler.enqueue import pair_references
from shared.imageio import read_image, to_model_input
from shared.models import DONE, FAILED, ImageJob

from .conftest import blurred_and_sharp, inputs_from


def jobs_of(stack, batch_id) -> list[ImageJob]:
    with stack.db.session() as s:
        return list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id).order_by(ImageJob.position)))


def rgb(path: Path) -> np.ndarray:
    return to_model_input(read_image(path))[0].astype(np.float64)


def assert_scores_match_skimage(stack, batch_id):
    jobs = jobs_of(stack, batch_id)
    for job in jobs:
        out, ref = rgb(stack.storage.resolve(job.output_path)), rgb(stack.storage.resolve(job.reference_path))
        inp = rgb(stack.storage.resolve(job.input_path))
        assert job.ssim == pytest.approx(structural_similarity(out, ref, channel_axis=2, data_range=1), abs=1e-4)
        assert job.input_ssim == pytest.approx(structural_similarity(inp, ref, channel_axis=2, data_range=1),
                                               abs=1e-4)
        assert job.psnr == pytest.approx(peak_signal_noise_ratio(ref, out, data_range=1), abs=1e-3)
    batch = stack.batch(batch_id)
    assert batch.mean_ssim == pytest.approx(np.mean([j.ssim for j in jobs]), abs=1e-9)
    assert batch.mean_input_psnr == pytest.approx(np.mean([j.input_psnr for j in jobs]), abs=1e-9)


def submit_and_wait_for_progress(stack, tmp_path, done: int) -> int:
    """Submit 50 images and return once ``done`` of them are finished."""
    folder, _ = blurred_and_sharp(tmp_path / "data", 50, size=160)
    batch_id = stack.submit(inputs_from(folder), mode="restore")
    deadline = time.time() + 120
    while stack.batch(batch_id).done_count < done:
        assert time.time() < deadline
        time.sleep(0.05)
    return batch_id


def test_fifty_images_in_each_mode(make_stack, db_url, redis_url, tmp_path):
    stack = make_stack(db_url, redis_url)
    stack.start("worker", "--queue", "sharpen")
    blurred, sharp = blurred_and_sharp(tmp_path / "data", 50)

    restore = stack.submit(inputs_from(blurred), mode="restore")
    paired = stack.submit(pair_references(inputs_from(blurred), sharp), mode="paired")
    synthetic = stack.submit(inputs_from(sharp), mode="synthetic", sigma=2.0)

    b = stack.wait_batch(restore)
    assert (b.total, b.done_count, b.failed_count) == (50, 50, 0) and b.mean_ssim is None
    for job in jobs_of(stack, restore):
        out = read_image(stack.storage.resolve(job.output_path))
        assert (out.width, out.height, out.format) == (64, 64, "PNG") and job.attempts == 1

    b = stack.wait_batch(paired)
    assert (b.done_count, b.failed_count) == (50, 0)
    assert b.mean_ssim > b.mean_input_ssim  # the shipped model sharpens
    assert_scores_match_skimage(stack, paired)

    b = stack.wait_batch(synthetic)
    assert (b.done_count, b.failed_count, b.sigma) == (50, 0, 2.0)
    assert_scores_match_skimage(stack, synthetic)
    assert b.model_sha256 and b.model_version_id


def test_bad_files_fail_alone_with_a_reason(make_stack, sqlite_url, redis_url, tmp_path):
    stack = make_stack(sqlite_url, redis_url)
    stack.start("worker", "--queue", "sharpen")
    folder, _ = blurred_and_sharp(tmp_path / "data", 6)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("this is not an image")
    good = (folder / "img000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    # a well-formed PNG that claims 40000x40000 pixels: refused before any pixel is decoded
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    batch_id = stack.submit(inputs_from(folder), mode="restore")
    b = stack.wait_batch(batch_id)
    assert (b.total, b.done_count, b.failed_count) == (11, 6, 5)
    errors = {j.original_name: j.error for j in jobs_of(stack, batch_id) if j.status == FAILED}
    assert "empty file" in errors["empty.png"]
    assert "not a supported image" in errors["notes.txt"]
    assert "truncated" in errors["truncated.png"] or "corrupt" in errors["truncated.png"]
    assert "corrupt.jpg" in errors["corrupt.jpg"]
    assert "too large" in errors["huge.png"] and "40000x40000" in errors["huge.png"]
    assert all(j.output_path for j in jobs_of(stack, batch_id) if j.status == DONE)


def test_worker_killed_mid_batch_loses_nothing(make_stack, sqlite_url, redis_url, tmp_path):
    stack = make_stack(sqlite_url, redis_url)
    worker = stack.start("worker", "--queue", "sharpen")
    stack.start_scheduler()
    batch_id = submit_and_wait_for_progress(stack, tmp_path, done=5)
    stack.kill(worker)  # SIGKILL mid-batch: its image stays "running" with a lease, its message unacked
    assert stack.batch(batch_id).done_count < 50
    stack.start("worker", "--queue", "sharpen")
    b = stack.wait_batch(batch_id)
    assert (b.done_count, b.failed_count) == (50, 0)
    outputs = sorted(p.name for p in (stack.storage.batch_dir(batch_id) / "output").iterdir()
                     if not p.name.startswith("."))  # a temp file of the killed worker's unfinished write
    assert outputs == sorted(f"{j.id}.png" for j in jobs_of(stack, batch_id))  # one output each, no strays


@pytest.mark.parametrize("how", ["flush", "restart"])
def test_redis_lost_mid_batch_is_recovered(make_stack, sqlite_url, private_redis, tmp_path, how):
    stack = make_stack(sqlite_url, private_redis.url)
    stack.start("worker", "--queue", "sharpen")
    stack.start_scheduler()
    batch_id = submit_and_wait_for_progress(stack, tmp_path, done=3)
    if how == "flush":
        redis.Redis.from_url(private_redis.url).flushall()
    else:
        private_redis.stop()
        time.sleep(1)
        private_redis.start()  # empty: it keeps nothing on disk
    b = stack.wait_batch(batch_id, timeout=240)
    assert (b.done_count, b.failed_count) == (50, 0)
