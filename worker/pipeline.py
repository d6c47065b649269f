"""The work a sharpening task does, as plain functions: claim → decode → sharpen (tiled) → encode → score.

Each image is claimed with a lease in one UPDATE, so two workers never process it at once and a re-sent
message for a finished image does nothing. Bad images fail alone with the decoder's message; everything
else in the chunk goes on.
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
from shared.blur_estimate import estimate_blur
from shared.config import Settings
from shared.db import TRANSIENT_ERRORS, Database
from shared.degrade import Degradation, degrade
from shared.imageio import ImageError, Picture, from_model_output, read_image, to_model_input, write_image
from shared.inference import LoadedModel, ModelFileError, load_model, sharpen_tensor
from shared.lease import claim_statement, keep_lease
from shared.metrics import psnr_torch, ssim_torch
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, ModelVersion, utcnow
from shared.storage import Storage

log = logging.getLogger(__name__)
SCORE_ON_DEVICE_MAX_PIXELS = 16_000_000  # SSIM needs ~40 float maps of the image: larger ones score on the CPU
TRANSIENT = TRANSIENT_ERRORS  # retried by the task with backoff
# The worker, not the image, is at fault: give the image back and fail the task (it is sent again later).
WORKER_FAULTS = TRANSIENT + (ModelFileError, OSError, torch.cuda.OutOfMemoryError)


@dataclass
class WorkerContext:
    """Per-process state: settings, database, storage and the models loaded so far (once per process)."""
    settings: Settings
    db: Database
    storage: Storage
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    models: dict[str, LoadedModel] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerContext":
        return cls(settings=settings, db=Database(settings), storage=Storage(settings.storage_root))

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
    """Return a claimed image to the queue at once (a retry or another worker takes it)."""
    with ctx.db.session() as s:
        s.execute(update(ImageJob).where(ImageJob.id == job_id, ImageJob.worker == ctx.name,
                                         ImageJob.status == RUNNING).values(status=QUEUED, lease_expires_at=None))


def _tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device)


def score(out: torch.Tensor, blurred: torch.Tensor, reference: torch.Tensor) -> dict:
    """SSIM/PSNR of the output and of the input against the reference, on the model's device."""
    return {"ssim": float(ssim_torch(out, reference)[0]), "psnr": float(psnr_torch(out, reference)[0]),
            "input_ssim": float(ssim_torch(blurred, reference)[0]),
            "input_psnr": float(psnr_torch(blurred, reference)[0])}


def process_image(ctx: WorkerContext, job: ImageJob, batch: Batch, model: LoadedModel) -> dict:
    """Sharpen one image and write its output; returns the values to record. Raises ImageError for bad files."""
    st, limit = ctx.storage, ctx.settings.max_pixels
    reference = None
    if batch.mode == "synthetic":
        original = read_image(st.resolve(job.reference_path), limit)
        reference, _ = to_model_input(original)
        blurred_rgb, _ = degrade(reference, Degradation.fixed(batch.sigma), np.random.default_rng(job.id))
        picture = from_model_output(blurred_rgb, original)
        picture = Picture(picture.pixels, "PNG", picture.icc)  # the blurred input is kept losslessly
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
    hint = estimate_blur(rgb, device=model.device) if model.uses_hint else None  # from the CPU copy
    y = sharpen_tensor(model, x, hint=hint)
    result = from_model_output(y[0].permute(1, 2, 0).float().cpu().numpy(), picture)
    suffix = Path(job.input_path).suffix if batch.mode != "synthetic" else ".png"
    out_path = st.output_path(batch.id, job.id, suffix if suffix != ".bin" else ".png")
    write_image(out_path, result)
    values = {"output_path": st.relative(out_path), "width": picture.width, "height": picture.height}
    if reference is not None:
        saved, _ = to_model_input(result)  # score what was written (8/16-bit), not the float output
        dev = model.device if picture.width * picture.height <= SCORE_ON_DEVICE_MAX_PIXELS else torch.device("cpu")
        values.update(score(_tensor(saved, dev), x.to(dev), _tensor(reference, dev)))
    return values


def process_jobs(ctx: WorkerContext, job_ids: list[int]) -> dict:
    """Process a chunk of images; returns counts. Transient errors propagate (the task retries them)."""
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
            model = ctx.model(version)
            with keep_lease(ctx.db, ImageJob, job_id, ctx.name, ctx.settings.lease_seconds):
                values = process_image(ctx, job, batch, model)
            outcome = dict(status=DONE, error=None, **values)
        except ImageError as exc:  # named by the user's file name, not the id it is stored under
            outcome = dict(status=FAILED, error=f"{job.original_name}: {exc.reason}")
        except WORKER_FAULTS:  # this worker cannot work (no model, disk full, GPU memory): not the image's fault
            give_back(ctx, job_id)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as failed with its message, never as done
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
