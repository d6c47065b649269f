"""The pictures a rater sees, served by opaque trial tokens: nothing in a URL or a file tells the condition.

Every stimulus is re-encoded as an 8-bit PNG scaled to fit ``STIMULUS_SIDE`` (the conditions of one photo
have the same pixel size, so they show at the same size; the re-encoding also hides the source format and
metadata). A low gold item is its file blurred with σ = ``GOLD_SIGMA`` display pixels. Copies are made on
first request and kept under ``<storage>/studies/<study>/`` by stimulus id (never a name from the request).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select

from shared.db import Database
from shared.imageio import ImageError, read_image, to_model_input
from shared.models import ImageJob, Study, StudyImage, StudyStimulus, StudyTrial
from shared.storage import Storage, atomic_write
from shared.study_design import GOLD_LOW

from .errors import StudyError

STIMULUS_SIDE = 1024
GOLD_SIGMA = 6.0
SLOTS = ("blurry", "sharpened", "truth")   # a triplet's three pictures, in the order shown


def display_size(width: int | None, height: int | None) -> tuple[int | None, int | None]:
    """The size a stimulus is shown at: the image's, scaled down to fit STIMULUS_SIDE."""
    if not width or not height:
        return None, None
    scale = min(1.0, STIMULUS_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _stored(job: ImageJob, kind: str) -> str | None:
    return {"input": job.input_path, "output": job.output_path, "reference": job.reference_path}[kind]


def _make(storage: Storage, job: ImageJob, kind: str, blur: bool, dst: Path) -> None:
    stored = _stored(job, kind)
    src = storage.resolve(stored) if stored else None
    if src is None or not src.is_file():
        raise StudyError("this picture's file is missing from the storage", 404)
    try:
        rgb, _alpha = to_model_input(read_image(src))
    except ImageError as exc:
        raise StudyError(f"this picture cannot be read: {exc.reason}", 404) from exc
    w, h = display_size(rgb.shape[1], rgb.shape[0])
    if (w, h) != (rgb.shape[1], rgb.shape[0]):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    if blur:
        rgb = cv2.GaussianBlur(rgb, (0, 0), GOLD_SIGMA, borderType=cv2.BORDER_REFLECT)
    pixels = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    ok, data = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    atomic_write(dst, data.tobytes())


def trial_picture(db: Database, storage: Storage, share_token: str, trial_token: str, slot: str | None = None) -> Path:
    """The PNG for one trial of the study at ``share_token`` (a triplet's: one of SLOTS)."""
    with db.session() as s:
        row = s.execute(select(Study, StudyStimulus, StudyImage)
                        .join(StudyTrial, StudyTrial.study_id == Study.id)
                        .join(StudyStimulus, StudyStimulus.id == StudyTrial.stimulus_id)
                        .join(StudyImage, StudyImage.id == StudyStimulus.study_image_id)
                        .where(StudyTrial.token == trial_token, Study.share_token == share_token)).first()
        if row is None:
            raise StudyError("no such picture in this study", 404)
        study, stimulus, image = row
        if (study.kind == "triplet") != (slot is not None) or (slot is not None and slot not in SLOTS):
            raise StudyError("no such picture in this study", 404)
        if slot in (None, "sharpened"):
            job, kind, blur = s.get(ImageJob, stimulus.image_job_id), stimulus.file_kind, stimulus.gold == GOLD_LOW
            name = f"{stimulus.id}.png"
        else:
            job, kind, blur = s.get(ImageJob, image.image_job_id), "input" if slot == "blurry" else "reference", False
            name = f"image{image.id}-{slot}.png"
        s.expunge(job)
    dst = storage.root / "studies" / str(study.id) / name
    if not dst.is_file():
        _make(storage, job, kind, blur, dst)
    return dst
