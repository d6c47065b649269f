"""The work a sharpening task does, as plain functions: claim → decode → sharpen (tiled) → encode → score.

Each image is claimed with a lease in one UPDATE, so two workers never process it at once and a re-sent
message for a finished image does nothing; a worker that loses its lease writes nothing more for the image.
Bad images fail alone with the decoder's message; everything else in the chunk goes on. When the worker,
not the image, is at fault (``worker.faults``), the image goes back to the queue and ``WorkerFault`` is
raised for the task to retry.
"""
from __future__ import annotations

import logging
import socket
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import update

from scheduler.enqueue import count_image_outcome
from scheduler.enqueue import refresh_batch
from shared.config import Settings
from shared.db import TRANSIENT_ERRORS, Database
from shared.degrade import Degradation, degrade
from shared.imageio import ImageError, Picture, from_model_output, read_image, to_model_input, write_image
from shared.inference import LoadedModel, ModelFileError, load_model, sharpen_tensor
from shared.lease import Lease, claim_statement, keep_lease
from shared.metrics import psnr_torch, ssim_torch
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, ModelVersion, utcnow
from shared.storage import Storage

from .faults import Backoff, WorkerFault, describe, is_worker_fault

log = logging.getLogger(__name__)
SCORE_ON_DEVICE_MAX_PIXELS = 16_000_000  # SSIM needs ~40 float maps of the image: larger ones score on the CPU
SMALL_TILE = 256  # the second try of an image that ran the GPU out of memory


class LeaseLost(Exception):
    """Another worker took the image over (this one was too slow to renew): write nothing more for it."""


@dataclass
class WorkerContext:
    """Per-process state: settings, database, storage and the models loaded so far (once per process)."""
    settings: Settings
    db: Database
    storage: Storage
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    models: dict[str, LoadedModel] = field(default_factory=dict)
    backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerContext":
        return cls(settings=settings, db=Database(settings), storage=Storage(settings.storage_root),
                   backoff=Backoff(max_delay=settings.fault_backoff_max))

    def model(self, version: ModelVersion | None) -> LoadedModel:
        """The batch's model version, loaded once per process and checked against its recorded sha256."""
        path = str(self.storage.resolve(version.path)) if version else (self.settings.model_path or "")
        if path not in self.models:
            if len(self.models) >= 3:  # keep memory bounded when versions change
                self.models.pop(next(iter(self.models)))
            model = load_model(path or None, self.settings.device)
            if version and model.sha256 != version.sha256:
                raise ModelFileError(f"{path} changed since it was registered as model {version.id}")
            self.models[path] = model
        return self.models[path]


def claim(ctx: WorkerContext, job_id: int) -> tuple[ImageJob, Batch, ModelVersion | None] | None:
    """Take the image if it is queued, or running with an expired lease (its worker died).

    Returns (job, batch, model version) detached from the session, or None when the image is not ours.
    """
    now = utcnow()
    with ctx.db.session() as s:
        res = s.execute(claim_statement(ImageJob, job_id, ctx.name, ctx.settings.lease_seconds,
                                        ctx.settings.max_attempts, now))
        if res.rowcount != 1:
            return None
        job = s.get(ImageJob, job_id)
        batch = s.get(Batch, job.batch_id)
        version = s.get(ModelVersion, batch.model_version_id) if batch.model_version_id else None
        s.expunge_all()
        return job, batch, version


def finish(ctx: WorkerContext, job_id: int, batch_id: int | None = None, **values) -> bool:
    """Record the outcome, only while this worker still holds the image; False if it lost it.

    With ``batch_id``, the batch's counters move in the same transaction (progress per image)."""
    with ctx.db.session() as s:
        res = s.execute(update(ImageJob).where(ImageJob.id == job_id, ImageJob.status == RUNNING,
                                               ImageJob.worker == ctx.name)
                        .values(finished_at=utcnow(), lease_expires_at=None, **values))
        if res.rowcount == 1 and batch_id is not None:
            s.execute(count_image_outcome(batch_id, values["status"]))
        return res.rowcount == 1


def give_back(ctx: WorkerContext, job_id: int) -> None:
    """Return a claimed image to the queue at once (a retry or another worker takes it). The attempt is not
    counted: the worker, not the image, was at fault. Without a database the lease expires instead."""
    try:
        with ctx.db.session() as s:
            s.execute(update(ImageJob).where(ImageJob.id == job_id, ImageJob.worker == ctx.name,
                                             ImageJob.status == RUNNING)
                      .values(status=QUEUED, lease_expires_at=None, attempts=ImageJob.attempts - 1))
    except TRANSIENT_ERRORS as exc:
        log.warning("image %s not handed back (%s): its lease expires in %s s", job_id, describe(exc),
                    ctx.settings.lease_seconds)


def defer(ctx: WorkerContext, job_ids: list[int]) -> None:
    """Stamp the chunk's queued images as sent now: the task is retried (its message comes back later), so
    the scheduler's sweep does not send them again meanwhile."""
    with ctx.db.session() as s:
        s.execute(update(ImageJob).where(ImageJob.id.in_(job_ids), ImageJob.status == QUEUED)
                  .values(enqueued_at=utcnow()))


def sharpen_within_memory(model: LoadedModel, x: torch.Tensor, hint: float | None, name: str) -> torch.Tensor:
    """``sharpen_tensor``; out of GPU memory, once more on smaller tiles, then on the CPU, else ImageError."""
    try:
        return sharpen_tensor(model, x, hint=hint)
    except torch.cuda.OutOfMemoryError:
        log.warning("%s: out of GPU memory; trying again on %d-px tiles", name, SMALL_TILE)
    torch.cuda.empty_cache()
    try:
        return sharpen_tensor(model, x, hint=hint, tile=SMALL_TILE, batch=1)
    except torch.cuda.OutOfMemoryError:
        log.warning("%s: out of GPU memory on %d-px tiles too; trying on the CPU", name, SMALL_TILE)
    torch.cuda.empty_cache()
    try:
        return sharpen_tensor(load_model(model.path, "cpu"), x.cpu(), hint=hint, tile=SMALL_TILE, batch=1)
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and "can't allocate memory" not in str(exc):
            raise
        raise ImageError(name, f"too large for this worker: out of memory on the GPU (even in {SMALL_TILE}-px "
                               "tiles) and on the CPU") from exc


def _tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device)


def score(out: torch.Tensor, blurred: torch.Tensor, reference: torch.Tensor) -> dict:
    """SSIM/PSNR of the output and of the input against the reference, on the model's device."""
    return {"ssim": float(ssim_torch(out, reference)[0]), "psnr": float(psnr_torch(out, reference)[0]),
            "input_ssim": float(ssim_torch(blurred, reference)[0]),
            "input_psnr": float(psnr_torch(blurred, reference)[0])}


def process_image(ctx: WorkerContext, job: ImageJob, batch: Batch, model: LoadedModel,
                  lease: Lease | None = None) -> dict:
    """Sharpen one image and write its output; returns the values to record. Raises ImageError for bad files,
    LeaseLost (before writing) when another worker took the image over."""
    st, limit = ctx.storage, ctx.settings.max_pixels

    def still_ours() -> None:
        if lease is not None and lease.lost.is_set():
            raise LeaseLost(job.id)

    stored = st.resolve(job.reference_path if batch.mode == "synthetic" else job.input_path)
    if not stored.is_file():
        if not st.root.is_dir():  # the storage is not mounted on this worker: not the image's fault
            raise WorkerFault(f"the storage {st.root} is not there")
        raise ImageError(job.original_name, "its stored file is missing (deleted from the storage?)")
    reference = None
    if batch.mode == "synthetic":
        original = read_image(st.resolve(job.reference_path), limit)
        reference, _ = to_model_input(original)
        blurred_rgb, _ = degrade(reference, Degradation.fixed(batch.sigma), np.random.default_rng(job.id))
        picture = from_model_output(blurred_rgb, original)
        picture = Picture(picture.pixels, "PNG", picture.icc)  # the blurred input is kept losslessly
        still_ours()
        write_image(st.resolve(job.input_path), picture)
    else:
        picture = read_image(st.resolve(job.input_path), limit)
        if job.reference_path:
            ref_pic = read_image(st.resolve(job.reference_path), limit)
            if (ref_pic.height, ref_pic.width) != (picture.height, picture.width):
                raise ImageError(job.original_name, f"reference is {ref_pic.width}x{ref_pic.height}, "
                                                    f"the image is {picture.width}x{picture.height}")
            reference, _ = to_model_input(ref_pic)
    rgb, _alpha = to_model_input(picture)
    x = _tensor(rgb, model.device)
    hint = model.estimate_hint(rgb)  # from the CPU copy
    y = sharpen_within_memory(model, x, hint, job.original_name)
    result = from_model_output(y[0].permute(1, 2, 0).float().cpu().numpy(), picture)
    suffix = Path(job.input_path).suffix if batch.mode != "synthetic" else ".png"
    out_path = st.output_path(batch.id, job.id, suffix if suffix != ".bin" else ".png")
    still_ours()
    write_image(out_path, result)
    values = {"output_path": st.relative(out_path), "width": picture.width, "height": picture.height}
    if reference is not None:
        saved, _ = to_model_input(result)  # score what was written (8/16-bit), not the float output
        dev = model.device if picture.width * picture.height <= SCORE_ON_DEVICE_MAX_PIXELS else torch.device("cpu")
        try:
            values.update(score(_tensor(saved, dev), x.to(dev), _tensor(reference, dev)))
        except torch.cuda.OutOfMemoryError:
            cpu = torch.device("cpu")
            values.update(score(_tensor(saved, cpu), x.to(cpu), _tensor(reference, cpu)))
    return values


def process_jobs(ctx: WorkerContext, job_ids: list[int]) -> dict:
    """Process a chunk of images; returns counts. Raises WorkerFault (the image in hand given back, the rest
    of the chunk left queued) when this worker cannot work."""
    counts = {"done": 0, "failed": 0, "skipped": 0}
    touched: set[int] = set()
    for job_id in job_ids:
        claimed = claim(ctx, job_id)
        if claimed is None:
            counts["skipped"] += 1
            continue
        t0 = time.perf_counter()
        job, batch, version = claimed
        if batch.id not in touched:
            touched.add(batch.id)
            refresh_batch(ctx.db, batch.id)  # shows the batch as running
        try:
            try:
                model = ctx.model(version)
            except Exception as exc:  # whatever stops loading the model is this worker's trouble, not the image's
                raise WorkerFault(f"cannot load the model: {describe(exc)}") from exc
            with keep_lease(ctx.db, ImageJob, job_id, ctx.name, ctx.settings.lease_seconds) as lease:
                values = process_image(ctx, job, batch, model, lease)
            outcome = dict(status=DONE, error=None, **values)
        except LeaseLost:
            counts["skipped"] += 1  # the worker that took it over writes and records it
            continue
        except ImageError as exc:  # named by the user's file name, not the id it is stored under
            outcome = dict(status=FAILED, error=f"{job.original_name}: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - recorded as failed with its message, never as done
            if is_worker_fault(exc):  # no model, CUDA, disk, database: hand the image back, retry the task
                give_back(ctx, job_id)
                if isinstance(exc, WorkerFault):
                    raise
                raise WorkerFault(describe(exc)) from exc
            log.exception("image %s failed", job_id)
            outcome = dict(status=FAILED, error=f"{job.original_name}: could not be processed "
                                                f"({exc.__class__.__name__}); the worker log has details")
        if finish(ctx, job_id, batch.id, seconds=time.perf_counter() - t0, **outcome):
            counts["done" if outcome["status"] == DONE else "failed"] += 1
        else:
            counts["skipped"] += 1  # its lease was lost and another worker took it over
    for batch_id in touched:  # progress lives in the database; the last image finishes the batch
        refresh_batch(ctx.db, batch_id)
    return counts
