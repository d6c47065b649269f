"""Creating a MOS study from finished batches, getting it ready, opening and closing it.

A study samples ``n_images`` finished images (seeded; the seed is recorded) from one or more batches and
shows each in every *condition*: the blurred input, the output of each chosen model version, and the
reference when every sampled image has one (a ``triplet`` study shows Blurry | Sharpened | Ground truth, one
triplet per version). An output of a version the image's batch did not run with comes from a re-run of the
batch with that version (``scheduler.rerun``): an earlier one that has the sampled images (the models page's
comparison, another study's), else a new one of the sampled images, sent to the workers like any batch;
the study stays ``preparing`` until those finish, then opens (an image whose re-run failed is dropped,
with the reason). Gold items are added: references (expected ≥ 4) and strongly blurred copies (≤ 2).
"""
from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import select

from scheduler.enqueue import Sender, enqueue_batch
from scheduler.rerun import add_rerun_batch, find_rerun, rerun_images
from shared.db import Database
from shared.models import (CANCELLED, CLOSED, DONE, FAILED, OPEN, PREPARING, QUEUED, RUNNING, STUDY_KINDS, Batch,
                           ImageJob, ModelVersion, Study, StudyCondition, StudyImage, StudyStimulus, utcnow)
from shared.study_design import GOLD_HIGH, GOLD_LOW, REPEAT_SHARE, QualityRules

from .errors import StudyError

MAX_IMAGES = 1000
GOLD_SHARE = 0.025   # of the stimuli, for each kind of gold item (at least one of each)


@dataclass
class StudySpec:
    """What to study. ``model_version_ids`` empty: the versions the batches ran with."""
    batch_ids: list[int]
    n_images: int
    model_version_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    kind: str = "acr"
    name: str = ""
    repeat_share: float = REPEAT_SHARE
    gold_per_kind: int | None = None


def _ids(value, what: str) -> list[int]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    out = []
    for item in items:
        if isinstance(item, bool) or not str(item).strip().isdigit():
            raise StudyError(f"{what} must be whole numbers (ids), got {item!r}")
        out.append(int(item))
    return list(dict.fromkeys(out))


def _int(value, what: str, lo: int, hi: int, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise StudyError(f"{what} must be a whole number, got {value!r}") from None
    if isinstance(value, (bool, float)) or not lo <= n <= hi:
        raise StudyError(f"{what} must be a whole number from {lo} to {hi}, got {value!r}")
    return n


def parse_spec(data: Mapping, lists: Mapping | None = None) -> StudySpec:
    """A spec from a JSON object or a form (``lists``: the form's repeated fields, e.g. ``batch_ids``)."""
    get_list = (lambda k: lists.getlist(k)) if lists is not None else (lambda k: data.get(k))
    kind = data.get("kind") or "acr"
    kind = kind.strip() if isinstance(kind, str) else kind
    if kind not in STUDY_KINDS:
        raise StudyError(f"unknown study type {kind!r}: use one of {', '.join(STUDY_KINDS)}")
    batch_ids = _ids(get_list("batch_ids"), "batch_ids")
    if not batch_ids:
        raise StudyError("choose at least one finished batch (batch_ids)")
    n_images = _int(data.get("n_images"), "n_images", 1, MAX_IMAGES)
    if n_images is None:
        raise StudyError("say how many images to sample (n_images)")
    name = data.get("name") or ""
    if not isinstance(name, str):
        raise StudyError("name must be text")
    return StudySpec(batch_ids=batch_ids, n_images=n_images, kind=kind, name=name.strip()[:200],
                     model_version_ids=_ids(get_list("model_version_ids"), "model_version_ids"),
                     seed=_int(data.get("seed"), "seed", 0, 2 ** 31 - 1))


@dataclass
class Created:
    study_id: int
    rerun_batch_ids: list[int]


def _batches(s, spec: StudySpec) -> list[Batch]:
    batches = []
    for batch_id in spec.batch_ids:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise StudyError(f"no batch {batch_id}")
        if batch.status not in (DONE, CANCELLED):
            raise StudyError(f"batch {batch_id} is still {batch.status}: a study needs finished batches", 409)
        batches.append(batch)
    return batches


def _versions(s, spec: StudySpec, batches: list[Batch]) -> list[ModelVersion]:
    ids = spec.model_version_ids or list(dict.fromkeys(b.model_version_id for b in batches if b.model_version_id))
    versions = []
    for version_id in ids:
        version = s.get(ModelVersion, version_id)
        if version is None:
            raise StudyError(f"no model version {version_id}")
        versions.append(version)
    if not versions:
        raise StudyError("choose at least one model version (model_version_ids)")
    return versions


def _conditions(spec: StudySpec, versions: list[ModelVersion], with_reference: bool) -> list[StudyCondition]:
    models = [StudyCondition(kind="model", model_version_id=v.id, label=f"model {v.id} ({v.name})"[:200])
              for v in versions]
    if spec.kind == "triplet":
        found = models
    else:
        found = [StudyCondition(kind="input", label="blurred input"), *models]
        if with_reference:
            found.append(StudyCondition(kind="reference", label="reference"))
    for pos, c in enumerate(found):
        c.position = pos
    return found


def _reruns(s, study_id: int, batch: Batch, jobs: list[ImageJob], version: ModelVersion) -> dict[int, ImageJob]:
    """Each of ``jobs`` (images of ``batch``) re-run with ``version``, by source image id: in an earlier re-run
    of the batch that has them all, else in a new one."""
    found = find_rerun(s, batch.id, version.id, {j.position for j in jobs})
    if found is None:
        name = f"study {study_id}: batch {batch.id} re-run with model {version.id} ({version.name})"
        return add_rerun_batch(s, batch, jobs, version, name)[1]
    by_position = rerun_images(s, found)
    return {j.id: by_position[j.position] for j in jobs}


def create_study(db: Database, spec: StudySpec) -> Created:
    """Record a study (images sampled, conditions, stimuli, gold items, re-run batches); enqueue its re-runs
    with ``enqueue_reruns`` after this returns. Raises StudyError (with an HTTP status) for a bad spec."""
    if spec.kind not in STUDY_KINDS:
        raise StudyError(f"unknown study type {spec.kind!r}: use one of {', '.join(STUDY_KINDS)}")
    if not 1 <= spec.n_images <= MAX_IMAGES:
        raise StudyError(f"n_images must be from 1 to {MAX_IMAGES}")
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2 ** 31)
    with db.session() as s:
        batches = _batches(s, spec)
        versions = _versions(s, spec, batches)
        where = [ImageJob.batch_id.in_([b.id for b in batches]), ImageJob.status == DONE,
                 ImageJob.output_path.is_not(None)]
        if spec.kind == "triplet":
            where.append(ImageJob.reference_path.is_not(None))
        candidates = list(s.scalars(select(ImageJob).where(*where).order_by(ImageJob.batch_id, ImageJob.position)))
        if spec.n_images > len(candidates):
            what = "finished images with a reference" if spec.kind == "triplet" else "finished images"
            raise StudyError(f"asked for {spec.n_images} images; the batches have only {len(candidates)} {what}")
        rng = random.Random(seed)
        sample = rng.sample(candidates, spec.n_images)
        with_reference = all(j.reference_path for j in sample)
        conditions = _conditions(spec, versions, with_reference)
        n_gold = spec.gold_per_kind if spec.gold_per_kind is not None else \
            max(1, math.ceil(GOLD_SHARE * len(sample) * len(conditions)))
        study = Study(name=spec.name or f"{len(sample)} images of batch {', '.join(str(b.id) for b in batches)}",
                      kind=spec.kind, status=PREPARING, seed=seed, n_images=len(sample),
                      share_token=secrets.token_urlsafe(24),
                      settings={"batch_ids": [b.id for b in batches], "model_version_ids": [v.id for v in versions],
                                "repeat_share": spec.repeat_share, "rules": QualityRules().as_dict()})
        s.add(study)
        s.flush()
        for c in conditions:
            c.study_id = study.id
        s.add_all(conditions)
        images = [StudyImage(study_id=study.id, position=pos, image_job_id=j.id) for pos, j in enumerate(sample)]
        s.add_all(images)
        s.flush()

        ran_with = {b.id: b.model_version_id for b in batches}
        reruns: dict[tuple[int, int], ImageJob] = {}  # (version, source image) → its re-run
        for batch in batches:
            jobs = [j for j in sample if j.batch_id == batch.id]
            for v in versions:
                if jobs and v.id != batch.model_version_id:
                    reruns.update({(v.id, src): copy for src, copy in _reruns(s, study.id, batch, jobs, v).items()})
        stimuli = []
        for image, job in zip(images, sample):
            for c in conditions:
                if c.kind == "model":
                    own = ran_with[job.batch_id] == c.model_version_id
                    shown = job if own else reruns[(c.model_version_id, job.id)]
                    stimuli.append(StudyStimulus(study_image_id=image.id, condition_id=c.id, image_job_id=shown.id,
                                                 file_kind="output"))
                else:
                    stimuli.append(StudyStimulus(study_image_id=image.id, condition_id=c.id, image_job_id=job.id,
                                                 file_kind=c.kind))
        pairs = list(zip(images, sample))
        gold_count = min(n_gold, len(pairs))
        if with_reference:
            for image, job in rng.sample(pairs, gold_count):
                stimuli.append(StudyStimulus(study_image_id=image.id, gold=GOLD_HIGH, image_job_id=job.id,
                                             file_kind="reference"))
        for image, job in rng.sample(pairs, gold_count):
            stimuli.append(StudyStimulus(study_image_id=image.id, gold=GOLD_LOW, image_job_id=job.id,
                                         file_kind="reference" if job.reference_path else "input"))
        for st in stimuli:
            st.study_id = study.id
        s.add_all(stimuli)
        rerun_batch_ids = sorted({j.batch_id for j in reruns.values()})
        study.settings = {**study.settings, "rerun_batch_ids": rerun_batch_ids,
                          "gold": {GOLD_HIGH: gold_count if with_reference else 0, GOLD_LOW: gold_count}}
        refresh_study(s, study)  # opens now when every image shown is already processed
        return Created(study.id, rerun_batch_ids)


def enqueue_reruns(db: Database, send: Sender, created: Created, chunk_size: int) -> int:
    """Send the study's re-run batches to the workers (after ``create_study`` committed). Raises what ``send``
    raises when the queue is down; the rows stay queued and the scheduler sends them later."""
    return sum(enqueue_batch(db, send, batch_id, chunk_size) for batch_id in created.rerun_batch_ids)


def get_study(s, study_id: int) -> Study:
    study = s.get(Study, study_id)
    if study is None:
        raise StudyError(f"no study {study_id}", 404)
    return study


def refresh_study(s, study: Study) -> Study:
    """A preparing study opens once every image it shows is processed; an image whose re-run failed (or was
    cancelled) is dropped, with the reason; with none left the study fails."""
    if study.status != PREPARING:
        return study
    rows = s.execute(select(StudyStimulus.study_image_id, ImageJob.status, ImageJob.error, ImageJob.batch_id)
                     .join(ImageJob, ImageJob.id == StudyStimulus.image_job_id)
                     .where(StudyStimulus.study_id == study.id)).all()
    if any(status in (QUEUED, RUNNING) for _, status, _, _ in rows):
        return study
    trouble: dict[int, str] = {}
    for image_id, status, error, batch_id in rows:
        if status != DONE and image_id not in trouble:
            trouble[image_id] = f"its re-run (batch {batch_id}) is {status}" + (f": {error}" if error else "")
    images = list(s.scalars(select(StudyImage).where(StudyImage.study_id == study.id)))
    for image in images:
        if image.id in trouble:
            image.dropped = trouble[image.id]
    if len(trouble) == len(images):
        study.status, study.error = FAILED, "every image's re-run failed: " + next(iter(trouble.values()))
    else:
        study.status = OPEN
    return study


def set_open(db: Database, study_id: int, open_: bool) -> Study:
    """Close a study (raters can no longer answer; the results stay) or open it again."""
    with db.session() as s:
        study = refresh_study(s, get_study(s, study_id))
        if open_:
            if study.status != CLOSED:
                raise StudyError(f"study {study_id} is {study.status}, not closed", 409)
            study.status, study.closed_at = PREPARING, None
            refresh_study(s, study)  # opens again (its re-runs finished before it was closed, or since)
        else:
            if study.status == CLOSED:
                raise StudyError(f"study {study_id} is already closed", 409)
            if study.status == FAILED:
                raise StudyError(f"study {study_id} failed: {study.error}", 409)
            study.status, study.closed_at = CLOSED, utcnow()
        return study
