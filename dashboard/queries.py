"""Read-only queries shared by the HTML pages, the JSON API and the CLI. Plain functions over a Session.

Everything here is bounded: lists are paginated, per-status counts and histograms are computed by the
database or over one column, so a 10,000-image batch costs no more than a page of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import (CANCELLED, DONE, FAILED, QUEUED, RUNNING, Batch, ImageJob, ModelVersion, TrainingRun,
                           utcnow)

FINAL = (DONE, CANCELLED)
BATCH_FIELDS = ("id", "name", "mode", "sigma", "status", "total", "done_count", "failed_count", "mean_ssim",
                "mean_psnr", "mean_input_ssim", "mean_input_psnr", "megapixels", "model_sha256")
IMAGE_FIELDS = ("id", "original_name", "status", "width", "height", "ssim", "psnr", "input_ssim", "input_psnr",
                "seconds", "error")


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def meta(self) -> dict:
        return {"page": self.page, "per_page": self.per_page, "total": self.total, "pages": self.pages}


def clamp_page(page, per_page, default: int, most: int) -> tuple[int, int]:
    """Page numbers from a request, made sane (page ≥ 1, 1 ≤ per_page ≤ most)."""
    try:
        page = max(1, int(page or 1))
    except ValueError:
        page = 1
    try:
        per_page = min(most, max(1, int(per_page or default)))
    except ValueError:
        per_page = default
    return page, per_page


def list_batches(s: Session, page: int = 1, per_page: int = 25) -> Page:
    """Newest first, with each batch's model version name."""
    total = s.scalar(select(func.count()).select_from(Batch))
    rows = s.execute(select(Batch, ModelVersion.name).outerjoin(ModelVersion, Batch.model_version_id == ModelVersion.id)
                     .order_by(Batch.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    return Page([batch_view(b, model_name=name) for b, name in rows], page, per_page, total)


def get_batch(s: Session, batch_id: int) -> Batch | None:
    return s.get(Batch, batch_id)


def tally(s: Session, batch_id: int) -> tuple[dict[str, int], dict[str, float | None]]:
    """Images per status, and the done images' means and megapixels as of now (the batch row has them as of
    its last recount, once per chunk): one GROUP BY over the batch's images."""
    counts = dict.fromkeys((QUEUED, RUNNING, DONE, FAILED, CANCELLED), 0)
    done = {"mean_ssim": None, "mean_psnr": None, "mean_input_ssim": None, "mean_input_psnr": None,
            "megapixels": 0.0}
    for status, n, *values in s.execute(
            select(ImageJob.status, func.count(), func.avg(ImageJob.ssim), func.avg(ImageJob.psnr),
                   func.avg(ImageJob.input_ssim), func.avg(ImageJob.input_psnr),
                   func.sum(ImageJob.width * ImageJob.height))
            .where(ImageJob.batch_id == batch_id).group_by(ImageJob.status)):
        counts[status] = n
        if status == DONE:
            done = {k: None if v is None else float(v) for k, v in zip(done, values)}
            done["megapixels"] = (done["megapixels"] or 0.0) / 1e6
    return counts, done


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None else max(0.0, ((end or utcnow()) - start).total_seconds())


def batch_view(b: Batch, model_name: str | None = None, counts: dict | None = None,
               done: dict | None = None) -> dict:
    """A batch as the API returns it: its fields, timing, and progress (throughput and ETA while it runs);
    with ``counts`` and ``done`` from ``tally``, as of now rather than as of the last recount."""
    data = {k: getattr(b, k) for k in BATCH_FIELDS}
    data.update(done or {})
    data.update(model_version_id=b.model_version_id, model_name=model_name, parent_batch_id=b.parent_batch_id,
                created_at=b.created_at.isoformat() if b.created_at else None,
                started_at=b.started_at.isoformat() if b.started_at else None,
                finished_at=b.finished_at.isoformat() if b.finished_at else None)
    ended = b.done_count + b.failed_count
    if counts is not None:
        data["counts"] = counts
        ended = counts[DONE] + counts[FAILED]
    cancelled = counts[CANCELLED] if counts else 0
    elapsed = _seconds(b.started_at, b.finished_at)
    rate = ended / elapsed if elapsed and ended else None
    left = max(0, b.total - ended - cancelled)
    data.update(ended=ended, percent=round(100.0 * (ended + cancelled) / b.total, 1) if b.total else 100.0,
                elapsed_s=elapsed, images_per_s=rate, final=b.status in FINAL,
                eta_s=(left / rate) if rate and b.status not in FINAL else None,
                age_s=_seconds(b.created_at, None))
    scored = data["mean_ssim"] is not None and data["mean_input_ssim"] is not None
    data["ssim_gain"] = data["mean_ssim"] - data["mean_input_ssim"] if scored else None
    return data


def batch_detail(s: Session, b: Batch) -> dict:
    name = s.scalar(select(ModelVersion.name).where(ModelVersion.id == b.model_version_id)) \
        if b.model_version_id else None
    counts, done = tally(s, b.id)
    return batch_view(b, model_name=name, counts=counts, done=done)


def image_view(j: ImageJob) -> dict:
    data = {k: getattr(j, k) for k in IMAGE_FIELDS}
    data["position"] = j.position
    data["ssim_gain"] = j.ssim - j.input_ssim if j.ssim is not None and j.input_ssim is not None else None
    data["psnr_gain"] = j.psnr - j.input_psnr if j.psnr is not None and j.input_psnr is not None else None
    return data


def image_page(s: Session, batch_id: int, page: int = 1, per_page: int = 100, status: str | None = None) -> Page:
    where = [ImageJob.batch_id == batch_id]
    if status:
        where.append(ImageJob.status == status)
    total = s.scalar(select(func.count()).select_from(ImageJob).where(*where))
    jobs = list(s.scalars(select(ImageJob).where(*where).order_by(ImageJob.position)
                          .offset((page - 1) * per_page).limit(per_page)))
    return Page(jobs, page, per_page, total)


def batch_metrics(s: Session, b: Batch, page: int | None = None, per_page: int | None = None) -> dict:
    """Aggregate and per-image metrics (``sharpen metrics --json``'s shape); one page of images when asked."""
    q = select(ImageJob).where(ImageJob.batch_id == b.id).order_by(ImageJob.position)
    data: dict = {"batch": {k: getattr(b, k) for k in BATCH_FIELDS}}
    if page is not None:
        total = s.scalar(select(func.count()).select_from(ImageJob).where(ImageJob.batch_id == b.id))
        q = q.offset((page - 1) * per_page).limit(per_page)
        data["page"] = Page([], page, per_page, total).meta()
    data["images"] = [{k: getattr(j, k) for k in IMAGE_FIELDS} for j in s.scalars(q)]
    return data


def gain_histogram(s: Session, batch_id: int, bins: int = 24) -> dict | None:
    """Histogram of per-image SSIM gain (output − input) over the batch's scored images; None when none are."""
    gains = [o - i for o, i in s.execute(select(ImageJob.ssim, ImageJob.input_ssim).where(
        ImageJob.batch_id == batch_id, ImageJob.status == DONE, ImageJob.ssim.is_not(None),
        ImageJob.input_ssim.is_not(None)))]
    if not gains:
        return None
    lo, hi = min(gains), max(gains)
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero (no change) is always on the axis
    width = (hi - lo) / bins or 1e-6
    counts = [0] * bins
    for g in gains:
        counts[min(bins - 1, int((g - lo) / width))] += 1
    return {"lo": lo, "hi": hi, "width": width, "counts": counts, "n": len(gains),
            "worse": sum(g < 0 for g in gains), "mean": sum(gains) / len(gains)}


def image_in_batch(s: Session, batch_id: int, job_id: int) -> ImageJob | None:
    job = s.get(ImageJob, job_id)
    return job if job is not None and job.batch_id == batch_id else None


def neighbours(s: Session, job: ImageJob) -> tuple[int | None, int | None]:
    """The ids of the images before and after ``job`` in its batch (keyboard stepping in the viewer)."""
    prev_id = s.scalar(select(ImageJob.id).where(ImageJob.batch_id == job.batch_id,
                                                 ImageJob.position < job.position)
                       .order_by(ImageJob.position.desc()).limit(1))
    next_id = s.scalar(select(ImageJob.id).where(ImageJob.batch_id == job.batch_id,
                                                 ImageJob.position > job.position)
                       .order_by(ImageJob.position).limit(1))
    return prev_id, next_id


def done_jobs(s: Session, batch_id: int) -> list[ImageJob]:
    return list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == DONE)
                          .order_by(ImageJob.position)))


def batch_ids_of(s: Session, job_ids: list[int]) -> dict[int, int]:
    """job id → its batch id (the workers panel says which batch a worker is sharpening)."""
    if not job_ids:
        return {}
    return dict(s.execute(select(ImageJob.id, ImageJob.batch_id).where(ImageJob.id.in_(job_ids))).all())


def work_in_hand(s: Session, now: datetime | None = None) -> dict[str, dict]:
    """What each worker process holds under a live lease, by the name it claims with (``host:pid``): images
    with their batch, or a training run. A solo-pool worker busy with a task does not answer the workers
    panel's broadcast until the task ends; the database still says what it is doing."""
    now = now or utcnow()
    held: dict[str, dict] = {}
    for job_id, batch_id, worker in s.execute(
            select(ImageJob.id, ImageJob.batch_id, ImageJob.worker).where(
                ImageJob.status == RUNNING, ImageJob.lease_expires_at > now).order_by(ImageJob.id)):
        task = held.setdefault(worker, {"name": "sharpen", "job_ids": [], "batch_id": batch_id, "run_id": None})
        task["job_ids"].append(job_id)
    for run_id, worker in s.execute(select(TrainingRun.id, TrainingRun.worker).where(
            TrainingRun.status == RUNNING, TrainingRun.lease_expires_at > now)):
        held[worker] = {"name": "train", "job_ids": None, "batch_id": None, "run_id": run_id}
    return held
