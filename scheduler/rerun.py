"""Re-run a batch's finished images through another model version: a new batch over the same stored files.

The re-run is an ordinary batch (``parent_batch_id`` the source batch, ``model_version_id`` the other version)
whose images sit at their source images' positions, so the two are paired image by image (``compare``), and
point at the source images' stored input and reference files: nothing is copied and the input is exactly the
one the source batch sharpened (a synthetic batch's blurred copy, not a fresh blur). That is safe because
nothing deletes a batch or its files (cancel and retry change rows only, the periodic sweep only leases) and
no worker claims a finished image again, so its files are never rewritten (the synthetic worker writes the
blurred input of the image it holds). Only the outputs are new, under the re-run's folder. The re-run is
``paired`` when every image has a reference (its outputs are scored; a synthetic batch's σ is kept on it), else
``restore``.

The models page re-runs every finished image (``rerun_with_model``), a MOS study only the images it sampled
(``add_rerun_batch``, after ``find_rerun`` found none to reuse). Enqueue a new re-run with ``enqueue_batch``
after its transaction commits.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import Database
from shared.models import DONE, QUEUED, Batch, ImageJob, ModelVersion

from .control import BatchStateError


def find_rerun(s: Session, batch_id: int, version_id: int, positions: set[int]) -> Batch | None:
    """The earliest re-run of ``batch_id`` with ``version_id`` that has an image at each of ``positions``."""
    for rerun in s.scalars(select(Batch).where(Batch.parent_batch_id == batch_id,
                                               Batch.model_version_id == version_id).order_by(Batch.id)):
        if positions <= set(s.scalars(select(ImageJob.position).where(ImageJob.batch_id == rerun.id))):
            return rerun
    return None


def rerun_images(s: Session, rerun: Batch) -> dict[int, ImageJob]:
    """A re-run's images by position (the position of the source image each re-runs)."""
    return {j.position: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == rerun.id))}


def add_rerun_batch(s: Session, parent: Batch, jobs: list[ImageJob], version: ModelVersion,
                    name: str) -> tuple[Batch, dict[int, ImageJob]]:
    """Add (flush, not commit) a batch re-running ``jobs`` (finished images of ``parent``) with ``version``.

    Returns the batch and a map from each source image id to its new image."""
    if not jobs:
        raise ValueError("nothing to re-run")
    unfinished = [j.original_name for j in jobs if j.status != DONE]
    if unfinished:
        raise ValueError(f"only finished images can be re-run; not: {', '.join(unfinished[:5])}")
    mode = "paired" if all(j.reference_path for j in jobs) else "restore"
    batch = Batch(name=name[:200], mode=mode, sigma=parent.sigma, status=QUEUED, total=len(jobs),
                  model_version_id=version.id, model_sha256=version.sha256, parent_batch_id=parent.id)
    s.add(batch)
    s.flush()
    copies = {j.id: ImageJob(batch_id=batch.id, position=j.position, original_name=j.original_name,
                             input_path=j.input_path, reference_path=j.reference_path, status=QUEUED)
              for j in jobs}
    s.add_all(copies.values())
    s.flush()
    return batch, copies


def rerun_with_model(db: Database, batch_id: int, version_id: int) -> tuple[int, bool]:
    """The re-run of every finished image of ``batch_id`` with model version ``version_id``, made once (an
    earlier re-run that has them all, e.g. a study's, is reused); returns (its batch id, whether it was made
    now). Send a new one with ``enqueue_batch`` after this returns.

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
        jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == DONE)
                              .order_by(ImageJob.position)))
        if not jobs:
            raise BatchStateError(f"batch {batch_id} has no finished image to re-run yet")
        found = find_rerun(s, batch_id, version_id, {j.position for j in jobs})
        if found is not None:
            return found.id, False
        rerun, _ = add_rerun_batch(s, parent, jobs, version, f"{parent.name} · {version.name}")
        return rerun.id, True
