"""Re-run finished images through another model version: a new batch over the same stored files.

The new batch's images point at the source images' stored input (and reference) files, so nothing is
copied and the input is exactly the one the source batch sharpened (a synthetic batch's blurred copy, not a
fresh blur); only the outputs are new, under the new batch's folder. Workers run it like any batch, with
the version recorded on the batch. Enqueue it with ``enqueue_batch`` after the transaction commits.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from shared.models import DONE, QUEUED, Batch, ImageJob, ModelVersion


def add_rerun_batch(s: Session, jobs: list[ImageJob], version: ModelVersion,
                    name: str) -> tuple[Batch, dict[int, ImageJob]]:
    """Add (flush, not commit) a batch re-running ``jobs`` (finished images) with ``version``.

    Returns the batch and a map from each source image id to its new image. The batch is ``paired`` when
    every image has a reference (its outputs are scored), else ``restore``."""
    if not jobs:
        raise ValueError("nothing to re-run")
    unfinished = [j.original_name for j in jobs if j.status != DONE]
    if unfinished:
        raise ValueError(f"only finished images can be re-run; not: {', '.join(unfinished[:5])}")
    mode = "paired" if all(j.reference_path for j in jobs) else "restore"
    batch = Batch(name=name[:200], mode=mode, status=QUEUED, total=len(jobs), model_version_id=version.id,
                  model_sha256=version.sha256)
    s.add(batch)
    s.flush()
    copies = {j.id: ImageJob(batch_id=batch.id, position=pos, original_name=j.original_name,
                             input_path=j.input_path, reference_path=j.reference_path, status=QUEUED)
              for pos, j in enumerate(jobs)}
    s.add_all(copies.values())
    s.flush()
    return batch, copies
