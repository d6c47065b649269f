"""Compare two model versions on the same images: re-run a finished batch's images with another version.

The re-run is an ordinary batch (``parent_batch_id`` set, ``model_version_id`` the other version) whose images
are copies of the parent's, at the same positions, so it goes through the same queue and workers and the two
are paired image by image. Only the images the parent finished are re-run. A synthetic batch is re-run as
synthetic from the same originals: the worker's blur is deterministic (``Degradation.fixed``), so both
versions see the same blurred pixels.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy import select

from shared.db import Database
from shared.models import CANCELLED, DONE, QUEUED, Batch, ImageJob, ModelVersion
from shared.storage import Storage, atomic_copy

from .control import BatchStateError


def existing_rerun(s, batch_id: int, version_id: int) -> int | None:
    """The re-run of ``batch_id`` with ``version_id`` made earlier, if any."""
    return s.scalar(select(Batch.id).where(Batch.parent_batch_id == batch_id, Batch.model_version_id == version_id)
                    .order_by(Batch.id).limit(1))


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the storage allows one (no second copy of the bytes), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        atomic_copy(src, dst)


def rerun_with_model(db: Database, storage: Storage, batch_id: int, version_id: int) -> tuple[int, bool]:
    """Create (once) the re-run of ``batch_id``'s finished images with model version ``version_id``; returns
    (the re-run's batch id, whether it was created now). Send it with ``enqueue_batch`` after this returns.

    Raises LookupError (unknown batch or version) and BatchStateError (the batch is itself a re-run, already
    uses that version, or has no finished image).
    """
    with db.session() as s:
        parent = s.get(Batch, batch_id)
        if parent is None:
            raise LookupError(f"no batch {batch_id}")
        version = s.get(ModelVersion, version_id)
        if version is None:
            raise LookupError(f"no model version {version_id}")
        if parent.parent_batch_id is not None:
            raise BatchStateError(f"batch {batch_id} is itself a re-run of batch {parent.parent_batch_id}: "
                                  "compare on the original batch")
        if parent.model_version_id == version_id:
            raise BatchStateError(f"batch {batch_id} was made with model version {version_id}: choose another "
                                  "version to compare with")
        found = existing_rerun(s, batch_id, version_id)
        if found is not None:
            return found, False
        jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == DONE)
                              .order_by(ImageJob.position)))
        if not jobs:
            raise BatchStateError(f"batch {batch_id} has no finished image to re-run yet")
        parent_mode, parent_sigma, parent_name = parent.mode, parent.sigma, parent.name
        sha = version.sha256
        version_name = version.name

    staging = storage.root / "staging" / uuid.uuid4().hex
    staged = []  # (job, staged input or None, staged reference or None)
    try:
        for job in jobs:
            synthetic = parent_mode == "synthetic"
            src_in = None if synthetic else storage.resolve(job.input_path)
            src_ref = storage.resolve(job.reference_path) if job.reference_path else None
            tmp_in = tmp_ref = None
            if src_in is not None:
                tmp_in = staging / f"{job.position}.in{Path(job.input_path).suffix}"
                _link_or_copy(src_in, tmp_in)
            if src_ref is not None:
                tmp_ref = staging / f"{job.position}.ref{Path(job.reference_path).suffix}"
                _link_or_copy(src_ref, tmp_ref)
            staged.append((job, tmp_in, tmp_ref))
        with db.session() as s:
            rerun = Batch(name=f"{parent_name} · {version_name}"[:200], mode=parent_mode, sigma=parent_sigma,
                          status=QUEUED, total=len(jobs), model_version_id=version_id, model_sha256=sha,
                          parent_batch_id=batch_id)
            s.add(rerun)
            s.flush()
            new_jobs = [ImageJob(batch_id=rerun.id, position=job.position, original_name=job.original_name,
                                 input_path="", status=QUEUED) for job, _, _ in staged]
            s.add_all(new_jobs)
            s.flush()
            for new, (job, tmp_in, tmp_ref) in zip(new_jobs, staged):
                in_suffix = Path(job.input_path).suffix
                dst_in = storage.batch_dir(rerun.id) / "input" / f"{new.id}{in_suffix}"
                new.input_path = storage.relative(dst_in)
                if tmp_in is not None:
                    dst_in.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp_in, dst_in)
                if tmp_ref is not None:
                    dst_ref = storage.batch_dir(rerun.id) / "reference" / f"{new.id}{Path(job.reference_path).suffix}"
                    dst_ref.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp_ref, dst_ref)
                    new.reference_path = storage.relative(dst_ref)
            rerun_id = rerun.id
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rerun_id, True


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _side(batch: Batch, version: ModelVersion | None, label: str) -> dict:
    return {"label": label, "batch_id": batch.id, "status": batch.status, "model_version_id": batch.model_version_id,
            "model_name": version.name if version else None, "mean_ssim": batch.mean_ssim,
            "mean_psnr": batch.mean_psnr, "mean_input_ssim": batch.mean_input_ssim,
            "mean_input_psnr": batch.mean_input_psnr, "done": batch.done_count, "failed": batch.failed_count,
            "total": batch.total}


def compare_batches(s, rerun_id: int) -> dict:
    """A re-run beside its parent: both versions' means, and per image (paired by position) both scores and
    the differences B − A (A: the parent's version, B: the re-run's). The means of the differences are over
    the images both scored, so they answer "on the same images, how much better is B"."""
    rerun = s.get(Batch, rerun_id)
    if rerun is None or rerun.parent_batch_id is None:
        raise LookupError(f"batch {rerun_id} is not a re-run of another batch with another model version")
    parent = s.get(Batch, rerun.parent_batch_id)
    a_jobs = {j.position: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == parent.id))}
    rows = []
    for b in s.scalars(select(ImageJob).where(ImageJob.batch_id == rerun.id).order_by(ImageJob.position)):
        a = a_jobs.get(b.position)
        both = a is not None and a.ssim is not None and b.ssim is not None
        rows.append({"position": b.position, "original_name": b.original_name, "a_job_id": a.id if a else None,
                     "b_job_id": b.id, "status": b.status, "error": b.error,
                     "input_ssim": a.input_ssim if a else None, "input_psnr": a.input_psnr if a else None,
                     "a_ssim": a.ssim if a else None, "a_psnr": a.psnr if a else None,
                     "b_ssim": b.ssim, "b_psnr": b.psnr,
                     "d_ssim": b.ssim - a.ssim if both else None,
                     "d_psnr": b.psnr - a.psnr if both and a.psnr is not None and b.psnr is not None else None})
    paired = [r for r in rows if r["d_ssim"] is not None]
    return {"a": _side(parent, s.get(ModelVersion, parent.model_version_id) if parent.model_version_id else None, "A"),
            "b": _side(rerun, s.get(ModelVersion, rerun.model_version_id), "B"),
            "final": rerun.status in (DONE, CANCELLED), "images": rows, "paired": len(paired),
            "mean_d_ssim": _mean([r["d_ssim"] for r in paired]), "mean_d_psnr": _mean([r["d_psnr"] for r in paired]),
            "b_better": sum(r["d_ssim"] > 0 for r in paired), "b_worse": sum(r["d_ssim"] < 0 for r in paired),
            # both versions' means over the paired images only (the parent may have images the re-run lacks)
            "a_paired_ssim": _mean([r["a_ssim"] for r in paired]),
            "b_paired_ssim": _mean([r["b_ssim"] for r in paired])}
