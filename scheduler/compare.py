"""Compare two model versions on the same images: a re-run (``scheduler.rerun``) beside its parent batch.

The re-run's images sit at their source images' positions and read the same stored inputs, so the two
versions are paired image by image on the same pixels.
"""
from __future__ import annotations

from sqlalchemy import select

from shared.models import CANCELLED, DONE, Batch, ImageJob, ModelVersion


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
