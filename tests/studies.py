"""Finished batches for study tests without a worker: real rows and files, outputs written by the test.

The "output" of each image is an unsharp mask of its blurred input (a stand-in for the model), so the
files a study shows exist and differ by condition; the batch is recorded as run by the active version.
"""
from __future__ import annotations

import cv2
import numpy as np
from sqlalchemy import select, update

from scheduler.enqueue import InputFile, create_batch, refresh_batch
from shared.db import Database
from shared.models import DONE, ImageJob
from shared.storage import Storage


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8),
                                             cv2.COLOR_RGB2BGR))[1].tobytes()


def finished_batch(db: Database, storage: Storage, crops: list[np.ndarray], sigma: float = 2.0,
                   with_reference: bool = True) -> int:
    """A done batch (paired, or restore without references) of blurred ``crops`` with outputs on disk."""
    inputs = []
    for i, sharp in enumerate(crops):
        blurred = cv2.GaussianBlur(sharp, (0, 0), sigma)
        ref = InputFile(f"img{i:03d}.png", data=_png(sharp)) if with_reference else None
        inputs.append(InputFile(f"img{i:03d}.png", data=_png(blurred), reference=ref))
    batch_id = create_batch(db, storage, inputs, mode="paired" if with_reference else "restore",
                            name=f"{len(crops)} crops")
    with db.session() as s:
        for job in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)):
            blurred = cv2.imdecode(np.frombuffer(storage.resolve(job.input_path).read_bytes(), np.uint8),
                                   cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
            sharpened = np.clip(blurred + 1.5 * (blurred - cv2.GaussianBlur(blurred, (0, 0), sigma)), 0, 1)
            out = storage.output_path(batch_id, job.id, ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(_png(sharpened))
            s.execute(update(ImageJob).where(ImageJob.id == job.id).values(
                status=DONE, output_path=storage.relative(out), width=blurred.shape[1], height=blurred.shape[0]))
    refresh_batch(db, batch_id)
    return batch_id
