"""Decode ahead, model on the calling thread, write behind: the same files as one image after another."""
from __future__ import annotations

import errno
import time

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from scheduler.enqueue import InputFile, create_batch
from shared import overlapped
from shared.cli.enhance import EnhanceFile, enhance_files
from shared.degrade import Degradation, degrade
from shared.imageio import Picture, read_image
from shared.inference import load_model
from shared.models import DONE, QUEUED, ImageJob
from shared.overlapped import Overlapped, StageClock
from worker import pipeline
from worker.faults import WorkerFault
from worker.pipeline import blurred_copy, process_jobs

from ..conftest import load_photo
from .test_jobs import ctx  # noqa: F401 - the fixture


def photos(folder, sizes, sigma=2.0):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        rgb = cv2.resize(load_photo(("astronaut.png", "coffee.png", "chelsea.png")[i % 3], 256), (w, h))
        blurred = degrade(rgb, Degradation.fixed(sigma), np.random.default_rng(i))[0]
        path = folder / f"p{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.rint(blurred * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_threads_write_the_same_files_as_one_after_another_and_a_bad_file_fails_alone(tmp_path):
    model = load_model(None, "cpu")
    paths = photos(tmp_path / "in", [(96, 64), (80, 80), (96, 64), (64, 96), (96, 64)])
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths.insert(2, tmp_path / "in" / "bad.png")
    outputs = {}
    for threads in (0, 3):
        clock = StageClock()
        failed = enhance_files(model, [(p, tmp_path / f"out{threads}" / p.name) for p in paths], threads, clock=clock)
        assert [f.name for f in failed] == ["bad.png"]
        outputs[threads] = {p.name: read_image(tmp_path / f"out{threads}" / p.name).pixels for p in paths if p != paths[2]}
        assert clock.images == 5 and set(clock.seconds) >= {"decode", "estimate", "model", "encode"}
    assert outputs[0].keys() == outputs[3].keys()
    assert all(np.array_equal(outputs[0][k], outputs[3][k]) for k in outputs[0])


class SlowToDecode(EnhanceFile):
    def decode(self, device):
        time.sleep(0.5)   # the others are decoded by the time the model can start
        return super().decode(device)


def test_same_size_images_share_a_forward_pass_when_batching(tmp_path, monkeypatch):
    model = load_model(None, "cpu")
    paths = photos(tmp_path / "in", [(96, 64)] * 3 + [(64, 96)])
    batches, real = [], overlapped.sharpen_pixels
    monkeypatch.setattr(overlapped, "sharpen_pixels", lambda m, px, **kw: batches.append(px.shape[0]) or real(m, px, **kw))
    alone = {p.name: real(model, read_image(p).pixels) for p in paths}
    flow = Overlapped(threads=4, batch_images=True)   # as on a GPU
    jobs = [(SlowToDecode if i == 0 else EnhanceFile)(p, tmp_path / "out" / p.name, []) for i, p in enumerate(paths)]
    flow.run(model, jobs)
    flow.drain()
    assert batches == [3, 1]   # the three of one size in one forward pass, then the other
    for p in paths:
        diff = np.abs(read_image(tmp_path / "out" / p.name).pixels.astype(int) - alone[p.name].numpy().astype(int))
        assert diff.max() <= 1


def test_the_synthetic_input_is_blurred_in_bands_as_the_whole_image(photo):
    sharp = Picture(np.rint(photo * 65535).astype(np.uint16), "TIFF")
    whole = blurred_copy(sharp, 2.0, seed=7, rows=10_000)
    banded = blurred_copy(sharp, 2.0, seed=7, rows=16)
    assert banded.format == "PNG" and banded.pixels.dtype == np.uint16
    assert np.array_equal(banded.pixels, whole.pixels)
    gray_alpha = Picture(np.rint(photo[..., :2] * 255).astype(np.uint8), "PNG")
    out = blurred_copy(gray_alpha, 1.0, seed=1, rows=20)
    assert np.array_equal(out.pixels[..., 1], gray_alpha.pixels[..., 1])   # alpha kept
    assert np.array_equal(out.pixels, blurred_copy(gray_alpha, 1.0, seed=1).pixels)


def jobs_of(ctx, batch_id):
    with ctx.db.session() as s:
        return list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id).order_by(ImageJob.id)))


@pytest.mark.parametrize("threads", [0, 2])
def test_the_worker_scores_and_records_every_image_of_a_chunk(ctx, tmp_path, threads):
    ctx.settings = type(ctx.settings)(**{**ctx.settings.__dict__, "io_threads": threads})
    sharp = photos(tmp_path / "sharp", [(96, 64), (72, 72), (96, 64)], sigma=0.0)
    blurry = photos(tmp_path / "blurry", [(96, 64), (72, 72), (96, 64)], sigma=2.0)
    inputs = [InputFile(b.name, path=b, reference=InputFile(s.name, path=s)) for b, s in zip(blurry, sharp)]
    batch_id = create_batch(ctx.db, ctx.storage, inputs, mode="paired")
    ids = [j.id for j in jobs_of(ctx, batch_id)]
    assert process_jobs(ctx, ids) == {"done": 3, "failed": 0, "skipped": 0}
    for job in jobs_of(ctx, batch_id):
        assert job.status == DONE and job.ssim > job.input_ssim and job.error is None
        assert read_image(ctx.storage.resolve(job.output_path)).pixels.shape == (job.height, job.width, 3)
    assert ctx.clock.seconds["score"] > 0 and ctx.clock.seconds["database"] > 0


def test_a_full_disk_hands_the_images_back_with_the_reason(ctx, tmp_path, monkeypatch):
    batch_id = create_batch(ctx.db, ctx.storage, [InputFile(p.name, path=p) for p in
                                                  photos(tmp_path / "in", [(64, 48)] * 4)], mode="restore")
    ids = [j.id for j in jobs_of(ctx, batch_id)]

    def full(path, out, frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_output", full)
    with pytest.raises(WorkerFault, match="No space left on device"):
        process_jobs(ctx, ids)
    jobs = jobs_of(ctx, batch_id)
    assert {(j.status, j.attempts) for j in jobs} == {(QUEUED, 0)}        # none failed, no attempt spent
    handed_back = [j.error for j in jobs if j.error]
    assert handed_back and all("cannot work: OSError: [Errno 28] No space left on device" in e for e in handed_back)
    monkeypatch.undo()
    assert process_jobs(ctx, ids) == {"done": 4, "failed": 0, "skipped": 0}   # once there is room again
    assert {j.error for j in jobs_of(ctx, batch_id)} == {None}
