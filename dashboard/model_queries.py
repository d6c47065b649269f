"""Read-only queries for the model registry, shared by the models page and the API: versions with how many
batches used each, the activation history, batches that can be compared, and comparisons made."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from shared.models import DONE, Batch, ImageJob, ModelActivation, ModelVersion, TrainingRun

VERSION_FIELDS = ("id", "name", "arch", "parameters", "active", "training_run_id", "sha256", "path")


def version_view(v: ModelVersion, batches: int = 0, run_status: str | None = None) -> dict:
    metrics = v.metrics or {}
    return {**{k: getattr(v, k) for k in VERSION_FIELDS}, "batches": batches, "training_run_status": run_status,
            "val_ssim": metrics.get("val_ssim"), "val_psnr": metrics.get("val_psnr"),
            "input_ssim": metrics.get("input_ssim"), "epochs": metrics.get("epoch"),
            "created_at": v.created_at.isoformat() if v.created_at else None}


def list_versions(s: Session) -> list[dict]:
    """Every version, newest first, with the number of batches made with it."""
    used = dict(s.execute(select(Batch.model_version_id, func.count()).group_by(Batch.model_version_id)).all())
    rows = s.execute(select(ModelVersion, TrainingRun.status)
                     .outerjoin(TrainingRun, ModelVersion.training_run_id == TrainingRun.id)
                     .order_by(ModelVersion.id.desc())).all()
    return [version_view(v, used.get(v.id, 0), status) for v, status in rows]


def get_version(s: Session, version_id: int) -> dict | None:
    v = s.get(ModelVersion, version_id)
    if v is None:
        return None
    used = s.scalar(select(func.count()).select_from(Batch).where(Batch.model_version_id == version_id))
    run_status = s.scalar(select(TrainingRun.status).where(TrainingRun.id == v.training_run_id)) \
        if v.training_run_id else None
    return version_view(v, used, run_status)


def activations(s: Session, limit: int = 15) -> list[dict]:
    """The latest activations, newest first: which version, replacing which, why."""
    new, old = aliased(ModelVersion), aliased(ModelVersion)
    rows = s.execute(select(ModelActivation, new.name, old.name)
                     .join(new, ModelActivation.model_version_id == new.id)
                     .outerjoin(old, ModelActivation.previous_version_id == old.id)
                     .order_by(ModelActivation.id.desc()).limit(limit)).all()
    return [{"id": a.id, "model_version_id": a.model_version_id, "model_name": name,
             "previous_version_id": a.previous_version_id, "previous_name": prev, "reason": a.reason,
             "created_at": a.created_at.isoformat() if a.created_at else None} for a, name, prev in rows]


def rollback_target(s: Session) -> dict | None:
    """The version a roll back would activate (the one before the current), or None."""
    last = s.scalar(select(ModelActivation).order_by(ModelActivation.id.desc()).limit(1))
    if last is None or last.previous_version_id is None:
        return None
    v = s.get(ModelVersion, last.previous_version_id)
    return {"id": v.id, "name": v.name} if v else None


def comparable_batches(s: Session, limit: int = 50) -> list[dict]:
    """Recent original batches (not re-runs) with finished images: what the compare form offers."""
    done = select(ImageJob.batch_id, func.count().label("n")).where(ImageJob.status == DONE) \
        .group_by(ImageJob.batch_id).subquery()
    rows = s.execute(select(Batch, ModelVersion.name, done.c.n).join(done, done.c.batch_id == Batch.id)
                     .outerjoin(ModelVersion, Batch.model_version_id == ModelVersion.id)
                     .where(Batch.parent_batch_id.is_(None)).order_by(Batch.id.desc()).limit(limit)).all()
    return [{"id": b.id, "name": b.name, "mode": b.mode, "model_version_id": b.model_version_id,
             "model_name": name, "done": n} for b, name, n in rows]


def comparisons(s: Session, limit: int = 20) -> list[dict]:
    """Re-runs made to compare versions, newest first."""
    parent, a, b = aliased(Batch), aliased(ModelVersion), aliased(ModelVersion)
    rows = s.execute(select(Batch, parent.name, a.name, b.name)
                     .join(parent, Batch.parent_batch_id == parent.id)
                     .outerjoin(a, parent.model_version_id == a.id).outerjoin(b, Batch.model_version_id == b.id)
                     .order_by(Batch.id.desc()).limit(limit)).all()
    return [{"id": r.id, "parent_batch_id": r.parent_batch_id, "batch_name": pname, "a_model": an, "b_model": bn,
             "status": r.status, "mean_ssim": r.mean_ssim} for r, pname, an, bn in rows]
