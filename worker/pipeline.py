"""The work a sharpening task does, as plain functions: claim → decode → sharpen → encode → score → record.

Each image is claimed with a lease in one UPDATE, so two workers never process it at once and a re-sent
message for a finished image does nothing; a worker that loses its lease writes nothing more for the image.
Bad images fail alone with the decoder's message; everything else in the chunk goes on. When the worker,
not the image, is at fault (``worker.faults``), the image goes back to the queue and ``WorkerFault`` is
raised for the task to retry.

The images of a chunk flow through ``shared.overlapped``: decoded ahead and written behind on a pool of
threads while the model (on the task's thread) sharpens the next ones; a chunk's writes may still run while
the next chunk is decoded (its leases are kept meanwhile, and its batch is recounted when its last image is
recorded).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select, text, update

from scheduler.enqueue import count_image_outcome, refresh_batch
from shared.config import Settings
from shared.db import TRANSIENT_ERRORS, Database
from shared.degrade import Degradation, degrade
from shared.imageio import ImageError, Picture, decode_image, format_for_path, from_model_output, write_image
from shared.inference import LoadedModel, ModelFileError, load_model, sharpen_pixels
from shared.lease import LeaseKeeper, claim_statement
from shared.metrics import score_in_bands
from shared.models import DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, ModelVersion, utcnow
from shared.overlapped import Abandoned, Frame, Job, Overlapped, StageClock, write_output
from shared.storage import Storage

from .faults import Backoff, Standby, WorkerFault, describe, is_worker_fault

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the image over (this one was too slow to renew): write nothing more for it."""


@dataclass
class WorkerContext:
    """Per-process state: settings, database, storage, the models loaded so far (once per process), the
    pool that decodes and encodes, and the leases of the images in flight."""
    settings: Settings
    db: Database
    storage: Storage
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    models: dict[str, LoadedModel] = field(default_factory=dict)
    backoff: Backoff = field(default_factory=Backoff)
    clock: StageClock = field(default_factory=StageClock)
    standby: Standby = field(default_factory=Standby)
    wanted: list = field(default_factory=list)      # model versions the last chunk needed
    _flow: Overlapped | None = None
    _leases: LeaseKeeper | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerContext":
        return cls(settings=settings, db=Database(settings), storage=Storage(settings.storage_root),
                   backoff=Backoff(max_delay=settings.fault_backoff_max))

    def flow(self, device: torch.device) -> Overlapped:
        """The pool that decodes and encodes beside the model (made for the first model's device)."""
        if self._flow is None:
            threads = None if self.settings.io_threads < 0 else self.settings.io_threads
            self._flow = Overlapped(threads, self.clock, device=device)
        return self._flow

    @property
    def leases(self) -> LeaseKeeper:
        if self._leases is None:
            self._leases = LeaseKeeper(self.db, ImageJob, self.name, self.settings.lease_seconds)
        return self._leases

    def model(self, version: ModelVersion | None) -> LoadedModel:
        """The batch's model version, loaded once per process and checked against its recorded sha256."""
        path = str(self.storage.resolve(version.path)) if version else (self.settings.model_path or "")
        if path not in self.models:
            if len(self.models) >= 3:  # keep memory bounded when versions change
                self.models.pop(next(iter(self.models)))
            budget = self.settings.memory_budget_mb << 20 or None
            model = load_model(path or None, self.settings.device, memory_budget=budget)
            if version and model.sha256 != version.sha256:
                raise ModelFileError(f"{path} changed since it was registered as model {version.id}")
            self.models[path] = model
        return self.models[path]


def claim(ctx: WorkerContext, job_id: int) -> tuple[ImageJob, Batch, ModelVersion | None] | None:
    """Take the image if it is queued, or running with an expired lease (its worker died).

    Returns (job, batch, model version) detached from the session, or None when the image is not ours.
    """
    return claim_chunk(ctx, [job_id]).get(job_id)


def claim_chunk(ctx: WorkerContext, job_ids: list[int]) -> dict[int, tuple[ImageJob, Batch, ModelVersion | None]]:
    """Take every image of ``job_ids`` that is free (as ``claim``) in one transaction: {id: (job, batch,
    version)} of those now ours, detached from the session."""
    now = utcnow()
    with ctx.db.session() as s:
        taken = s.scalars(claim_statement(ImageJob, list(job_ids), ctx.name, ctx.settings.lease_seconds,
                                          ctx.settings.max_attempts, now).returning(ImageJob.id)).all()
        if not taken:
            return {}
        jobs = s.scalars(select(ImageJob).where(ImageJob.id.in_(taken))).all()
        batches = {b.id: b for b in s.scalars(select(Batch).where(Batch.id.in_({j.batch_id for j in jobs})))}
        versions = {v: s.get(ModelVersion, v) for v in {b.model_version_id for b in batches.values()} if v}
        s.expunge_all()
    return {j.id: (j, batches[j.batch_id], versions.get(batches[j.batch_id].model_version_id)) for j in jobs}


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


def give_back(ctx: WorkerContext, job_id: int, reason: str | None = None) -> None:
    """Return a claimed image to the queue at once (a retry or another worker takes it). The attempt is not
    counted: the worker, not the image, was at fault; ``reason`` is kept on the row (``sharpen status``
    shows why the image waits). Without a database the lease expires instead."""
    try:
        with ctx.db.session() as s:
            s.execute(update(ImageJob).where(ImageJob.id == job_id, ImageJob.worker == ctx.name,
                                             ImageJob.status == RUNNING)
                      .values(status=QUEUED, lease_expires_at=None, attempts=ImageJob.attempts - 1, error=reason))
    except TRANSIENT_ERRORS as exc:
        log.warning("image %s not handed back (%s): its lease expires in %s s", job_id, describe(exc),
                    ctx.settings.lease_seconds)


def waiting_reason(ctx: WorkerContext, cause: str) -> str:
    """What a queued image's ``error`` says while it waits for a worker that can work."""
    return f"waiting: worker {ctx.name} cannot work: {cause}"


def defer(ctx: WorkerContext, job_ids: list[int], reason: str | None = None) -> None:
    """Stamp the chunk's queued images as sent now: the task is retried (its message comes back later), so
    the scheduler's sweep does not send them again meanwhile; ``reason``: why they wait."""
    values = {"enqueued_at": utcnow()} if reason is None else {"enqueued_at": utcnow(), "error": reason}
    with ctx.db.session() as s:
        s.execute(update(ImageJob).where(ImageJob.id.in_(job_ids), ImageJob.status == QUEUED).values(**values))


def _pixels(picture: Picture) -> torch.Tensor:
    return torch.from_numpy(picture.pixels)


def blurred_copy(reference: Picture, sigma: float, seed: int, rows: int = 512) -> Picture:
    """The input of a synthetic batch: the reference blurred by ``Degradation.fixed(sigma)`` and rounded to
    its bit depth (alpha kept), computed in bands of ``rows`` rows with a halo beyond the blur's kernel, so
    only one band is ever in float (the same pixels as blurring the whole image: the blur is local)."""
    px = reference.pixels
    h = px.shape[0]
    halo = int(np.ceil(4 * sigma)) + 2          # OpenCV's float Gaussian kernel reaches 4σ + 1 pixels
    out = np.empty_like(px)
    scale = np.float32(65535 if px.dtype == np.uint16 else 255)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        band = px[a:b]
        color = np.repeat(band[..., :1], 3, axis=2) if band.shape[2] in (1, 2) else band[..., :3]
        blurred, _ = degrade(color.astype(np.float32) / scale, Degradation.fixed(sigma), np.random.default_rng(seed))
        out[r0:r1] = from_model_output(blurred, Picture(band, reference.format)).pixels[r0 - a:r1 - a]
    return Picture(out, "PNG", reference.icc)  # the blurred input is kept losslessly


class _Chunk:
    """The images of one task: counts, and the batches to recount once the last one is recorded."""

    def __init__(self, ctx: WorkerContext, size: int):
        self.ctx, self.left = ctx, size
        self.counts = {"done": 0, "failed": 0, "skipped": 0}
        self.batches: set[int] = set()
        self._lock = threading.Lock()
        self.finished = threading.Event()
        if size == 0:
            self.finished.set()

    def touch(self, batch: Batch) -> None:
        if batch.id not in self.batches:
            self.batches.add(batch.id)
            if batch.status == QUEUED:
                refresh_batch(self.ctx.db, batch.id)  # shows the batch as running

    def settle(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
            self.left -= 1
            last = self.left == 0
        if last:
            try:
                with self.ctx.clock.stage("database"):
                    for batch_id in self.batches:  # progress lives in the database; the last image finishes it
                        refresh_batch(self.ctx.db, batch_id)
            except TRANSIENT_ERRORS as exc:  # the next chunk's, or the sweep's, recount settles it
                log.warning("batches %s not recounted (%s)", sorted(self.batches), describe(exc))
            finally:
                self.finished.set()


class ClaimedImage(Job):
    """One ``ImageJob`` row, claimed (with its lease kept) before the run; recorded in ``done`` / ``fail``."""

    def __init__(self, ctx: WorkerContext, job_id: int, chunk: _Chunk, claimed):
        self.ctx, self.job_id, self.chunk = ctx, job_id, chunk
        self.job, self.batch, _version = claimed or (None, None, None)
        self.name = self.job.original_name if self.job else f"image {job_id}"
        self.lease = ctx.leases.hold(job_id) if self.job else None
        self.t0 = time.perf_counter()
        self.started = False

    def start(self) -> bool:
        self.started = True
        if self.job is None:   # not ours: done, taken by another worker, or out of attempts
            self.chunk.settle("skipped")
            return False
        with self.ctx.clock.stage("database"):
            self.chunk.touch(self.batch)
        return True

    def abandon(self) -> None:
        """The run stopped before reaching this image: hand it back as it was."""
        if not self.started:
            self.started = True
            self.fail(Abandoned())

    def _still_ours(self) -> None:
        if self.lease is not None and self.lease.lost.is_set():
            raise LeaseLost(self.job_id)

    def _read(self, relative: str) -> bytes:
        path = self.ctx.storage.resolve(relative)
        if not path.is_file():
            if not self.ctx.storage.root.is_dir():  # the storage is not mounted on this worker: not the image's fault
                raise WorkerFault(f"the storage {self.ctx.storage.root} is not there")
            raise ImageError(self.job.original_name, "its stored file is missing (deleted from the storage?)")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ImageError(self.job.original_name, f"cannot read its stored file: {exc.strerror or exc}") from exc

    def _decode(self, relative: str, device: torch.device) -> Frame:
        data, limit = self._read(relative), self.ctx.settings.max_pixels
        if device.type == "cuda":
            from shared.device_codec import decode_jpeg_on

            on_device = decode_jpeg_on(device, data, self.job.original_name, limit)
            if on_device is not None:
                return Frame(on_device[0], "JPEG", on_device[1])
        picture = decode_image(data, self.job.original_name, limit)
        return Frame(_pixels(picture), picture.format, picture.icc)

    def decode(self, device: torch.device) -> Frame:
        job, batch, st = self.job, self.batch, self.ctx.storage
        if batch.mode == "synthetic":
            original = decode_image(self._read(job.reference_path), job.original_name, self.ctx.settings.max_pixels)
            picture = blurred_copy(original, batch.sigma, job.id)
            self._still_ours()
            write_image(st.resolve(job.input_path), picture)
            return Frame(_pixels(picture), picture.format, picture.icc, {"reference": _pixels(original)})
        frame = self._decode(job.input_path, device)
        if job.reference_path:
            ref = self._decode(job.reference_path, device)
            if ref.pixels.shape[:2] != frame.pixels.shape[:2]:
                (rh, rw), (h, w) = ref.pixels.shape[:2], frame.pixels.shape[:2]
                raise ImageError(job.original_name, f"reference is {rw}x{rh}, the image is {w}x{h}")
            frame.extra["reference"] = ref.pixels
        return frame

    def score(self, frame: Frame, out: torch.Tensor) -> dict:
        """SSIM/PSNR of what is written (8/16-bit) and of the input against the reference, on the model's device."""
        reference = frame.extra.get("reference")
        if reference is None:
            return {}
        dev = out.device
        ssim, psnr = score_in_bands(out, reference, dev)
        input_ssim, input_psnr = score_in_bands(frame.pixels, reference, dev)
        return {"ssim": ssim, "psnr": psnr, "input_ssim": input_ssim, "input_psnr": input_psnr}

    def write(self, frame: Frame, out: torch.Tensor) -> dict:
        st, job, batch = self.ctx.storage, self.job, self.batch
        suffix = Path(job.input_path).suffix if batch.mode != "synthetic" else ".png"
        out_path = st.output_path(batch.id, job.id, suffix if suffix != ".bin" else ".png")
        self._still_ours()
        write_output(out_path, out, frame)
        return {"output_path": st.relative(out_path), "width": int(out.shape[1]), "height": int(out.shape[0])}

    def _record(self, **outcome) -> None:
        with self.ctx.clock.stage("database"):
            recorded = finish(self.ctx, self.job_id, self.batch.id, seconds=time.perf_counter() - self.t0, **outcome)
        self.ctx.leases.release(self.job_id)
        # not recorded: its lease was lost and another worker took it over
        self.chunk.settle(("done" if outcome["status"] == DONE else "failed") if recorded else "skipped")

    def done(self, values: dict) -> None:
        self._record(status=DONE, error=None, **values)   # an exception here comes back through ``fail``

    def _hand_back(self, exc: BaseException, reason: str | None) -> None:
        if self.job is not None:
            give_back(self.ctx, self.job_id, reason)
            self.ctx.leases.release(self.job_id)
        self.chunk.settle("skipped")

    def fail(self, exc: BaseException) -> None:
        """An image error fails the image alone; a worker fault hands it back and stops the run (raised)."""
        if isinstance(exc, LeaseLost):
            self.ctx.leases.release(self.job_id)
            self.chunk.settle("skipped")   # the worker that took it over writes and records it
            return
        if isinstance(exc, Abandoned):     # the run stopped before this image was sharpened
            self._hand_back(exc, None)
            return
        if not is_worker_fault(exc):
            if isinstance(exc, ImageError):   # named by the user's file name, not the id it is stored under
                error = f"{self.job.original_name}: {exc.reason}"
            else:
                log.error("image %s failed", self.job_id, exc_info=exc)
                error = (f"{self.job.original_name}: could not be processed ({exc.__class__.__name__}); "
                         "the worker log has details")
            try:
                self._record(status=FAILED, error=error)
                return
            except Exception as db_exc:  # noqa: BLE001 - could not record it: the worker's trouble now
                exc = db_exc
        cause = describe(exc)   # no model, CUDA, disk, database: hand it back, stop the run
        self._hand_back(exc, waiting_reason(self.ctx, cause))
        raise exc if isinstance(exc, WorkerFault) else WorkerFault(cause) from exc


def chunk_versions(ctx: WorkerContext, job_ids: list[int]) -> list[tuple[ModelVersion | None, list[int]]]:
    """The chunk's images grouped by their batch's model version (a chunk is one batch's, normally)."""
    with ctx.db.session() as s:
        rows = s.execute(select(ImageJob.id, Batch.model_version_id).join(Batch, Batch.id == ImageJob.batch_id)
                         .where(ImageJob.id.in_(job_ids))).all()
        by_version: dict[int | None, list[int]] = {}
        order = {j: i for i, j in enumerate(job_ids)}
        for job_id, version_id in sorted(rows, key=lambda r: order[r[0]]):
            by_version.setdefault(version_id, []).append(job_id)
        versions = {v: s.get(ModelVersion, v) for v in by_version if v is not None}
        s.expunge_all()
    return [(versions.get(v), ids) for v, ids in by_version.items()]


def can_work(ctx: WorkerContext) -> None:
    """Raises what still stops this worker from working: the database, the storage (there and writable), the
    model the last chunk needed, the device (a tiny forward pass)."""
    with ctx.db.session() as s:
        s.execute(text("SELECT 1"))
    root = ctx.storage.root
    if not root.is_dir():
        raise WorkerFault(f"the storage {root} is not there")
    probe = root / f".can-work-{os.getpid()}"
    probe.write_bytes(b"ok")
    probe.unlink()
    for version in ctx.wanted or [None]:
        model = ctx.model(version)
        if model.device.type == "cuda":
            sharpen_pixels(model, torch.zeros((32, 32, 3), dtype=torch.uint8, device=model.device))
            torch.cuda.synchronize(model.device)


def process_jobs(ctx: WorkerContext, job_ids: list[int], wait: bool = True) -> dict:
    """Process a chunk of images; returns counts (with ``wait=False`` it returns once every image is through
    the model, its writes still running: the counts are not final). Raises WorkerFault (the images in hand
    given back, the rest of the chunk left queued) when this worker cannot work."""
    groups = chunk_versions(ctx, job_ids)
    chunk = _Chunk(ctx, sum(len(ids) for _, ids in groups))
    chunk.counts["skipped"] = len(job_ids) - chunk.left   # ids without a row (a deleted batch)
    ctx.wanted = [version for version, _ in groups]
    for version, ids in groups:
        try:
            model = ctx.model(version)
        except Exception as exc:  # whatever stops loading the model is this worker's trouble, not the image's
            raise WorkerFault(f"cannot load the model: {describe(exc)}") from exc
        with ctx.clock.stage("database"):
            claimed = claim_chunk(ctx, ids)
        jobs = [ClaimedImage(ctx, job_id, chunk, claimed.get(job_id)) for job_id in ids]
        try:
            ctx.flow(model.device).run(model, jobs)
        finally:
            for job in jobs:   # stopped by a fault before these were reached: back to the queue
                job.abandon()
    if wait and ctx._flow is not None:
        ctx._flow.drain()
        chunk.finished.wait()
    return dict(chunk.counts)
