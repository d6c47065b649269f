"""Studies as the pages and the API show them: the list, and one study's set-up and raters' progress."""
from __future__ import annotations

from sqlalchemy import func, select

from shared.models import Batch, ImageJob, ModelVersion, Study, StudyCondition, StudyImage, StudyRater, StudyTrial

from ..queries import Page
from .create import refresh_study
from .raters import trials_per_rater

STUDY_FIELDS = ("id", "name", "kind", "status", "seed", "n_images", "error")
KIND_NAMES = {"acr": "Absolute rating (ACR, 1–5)", "triplet": "Triplets (original protocol)"}


def _counts(s, study_ids: list[int]) -> dict[int, dict]:
    found = {i: {"raters": 0, "answered": 0, "trials": 0, "conditions": 0} for i in study_ids}
    for study_id, n in s.execute(select(StudyRater.study_id, func.count()).where(StudyRater.study_id.in_(study_ids))
                                 .group_by(StudyRater.study_id)):
        found[study_id]["raters"] = n
    for study_id, n, answered in s.execute(select(StudyTrial.study_id, func.count(), func.count(StudyTrial.answered_at))
                                           .where(StudyTrial.study_id.in_(study_ids)).group_by(StudyTrial.study_id)):
        found[study_id].update(trials=n, answered=answered)
    for study_id, n in s.execute(select(StudyCondition.study_id, func.count())
                                 .where(StudyCondition.study_id.in_(study_ids)).group_by(StudyCondition.study_id)):
        found[study_id]["conditions"] = n
    return found


def study_view(study: Study, counts: dict | None = None) -> dict:
    data = {k: getattr(study, k) for k in STUDY_FIELDS}
    data.update(kind_name=KIND_NAMES[study.kind], batch_ids=study.settings.get("batch_ids", []),
                model_version_ids=study.settings.get("model_version_ids", []),
                created_at=study.created_at.isoformat() if study.created_at else None,
                closed_at=study.closed_at.isoformat() if study.closed_at else None)
    if counts is not None:
        data.update(counts)
    return data


def list_studies(s, page: int = 1, per_page: int = 25) -> Page:
    """Newest first, each with its counts of conditions, raters and answers."""
    total = s.scalar(select(func.count()).select_from(Study))
    studies = list(s.scalars(select(Study).order_by(Study.id.desc()).offset((page - 1) * per_page).limit(per_page)))
    for study in studies:
        refresh_study(s, study)
    counts = _counts(s, [st.id for st in studies])
    return Page([study_view(st, counts[st.id]) for st in studies], page, per_page, total)


def study_detail(s, study: Study) -> dict:
    """One study: its conditions, sampled images (dropped ones with the reason), re-run batches, raters."""
    refresh_study(s, study)
    data = study_view(study, _counts(s, [study.id])[study.id])
    data["conditions"] = [{"id": c.id, "position": c.position, "kind": c.kind, "label": c.label,
                           "model_version_id": c.model_version_id}
                          for c in s.scalars(select(StudyCondition).where(StudyCondition.study_id == study.id)
                                             .order_by(StudyCondition.position))]
    data["images"] = [{"position": pos, "image_id": job_id, "batch_id": batch_id, "name": name, "dropped": dropped}
                      for pos, job_id, batch_id, name, dropped in s.execute(
                          select(StudyImage.position, ImageJob.id, ImageJob.batch_id, ImageJob.original_name,
                                 StudyImage.dropped).join(ImageJob, ImageJob.id == StudyImage.image_job_id)
                          .where(StudyImage.study_id == study.id).order_by(StudyImage.position))]
    data["trials_per_rater"] = trials_per_rater(s, study)
    data["gold"] = study.settings.get("gold", {})
    data["repeat_share"] = study.settings.get("repeat_share")
    rerun_ids = study.settings.get("rerun_batch_ids", [])
    data["reruns"] = [{"batch_id": b.id, "name": b.name, "status": b.status, "total": b.total,
                       "ended": b.done_count + b.failed_count, "model_version_id": b.model_version_id}
                      for b in s.scalars(select(Batch).where(Batch.id.in_(rerun_ids)).order_by(Batch.id))]
    return data


def finished_batches(s, limit: int = 100) -> list[dict]:
    """Batches a study can be made from (finished, with finished images), newest first, for the form."""
    rows = s.execute(select(Batch, ModelVersion.name).outerjoin(ModelVersion, ModelVersion.id == Batch.model_version_id)
                     .where(Batch.status.in_(("done", "cancelled")), Batch.done_count > 0)
                     .order_by(Batch.id.desc()).limit(limit)).all()
    return [{"id": b.id, "name": b.name, "mode": b.mode, "done": b.done_count, "model_version_id": b.model_version_id,
             "model_name": name} for b, name in rows]


def model_versions(s) -> list[dict]:
    return [{"id": v.id, "name": v.name, "arch": v.arch, "active": v.active}
            for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]
