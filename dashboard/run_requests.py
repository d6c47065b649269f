"""A retraining request from the form or the API → a checked ``TrainConfig``, queued on the train queue.

Every choice is checked against what is offered: data folders under the configured roots (by id, never a
path), presets, architectures, and teachers among the registered model versions (by id). Numbers are
bounded. Anything else is refused with a message naming the field (400); nothing is queued then.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from scheduler.periodic import enqueue_training_run
from shared.architectures import ARCHITECTURES, TEACHERS
from shared.models import ModelVersion
from trainer.config import PRESETS, check_config, make_config
from trainer.runs import RETRAIN_PRESET, continue_active, create_run

from .data_roots import UnknownDataFolder, choose_folders, data_folders
from .queue import QueueUnreachable

DEFAULT_PRESET = RETRAIN_PRESET
# field: (type, lowest, highest); an empty value keeps the preset's (or TrainConfig's) default
NUMBERS = {
    "epochs": (int, 1, 100_000), "crop": (int, 16, 2048), "batch_size": (int, 1, 1024),
    "patches_per_image": (int, 1, 10_000), "checkpoint_every": (int, 1, 100_000), "val_max_side": (int, 32, 8192),
    "lr": (float, 1e-8, 1.0), "w_pixel": (float, 0.0, 100.0), "w_ssim": (float, 0.0, 100.0),
    "w_output_kd": (float, 0.0, 100.0), "w_feature_kd": (float, 0.0, 100.0),
}
TRUE = ("1", "true", "on", "yes")


class RunRequestError(ValueError):
    pass


@dataclass
class RunRequest:
    config: object          # TrainConfig
    activate_if_better: bool
    fresh: bool = False     # new weights; else the active model's when it has the run's architecture


def teachers(s) -> list[ModelVersion]:
    """Registered model versions that can teach (teacher architectures), newest first."""
    return list(s.scalars(select(ModelVersion).where(ModelVersion.arch.in_(TEACHERS)).order_by(ModelVersion.id.desc())))


def run_options(s, roots) -> dict:
    """What a request may choose from (the form's menus; ``GET /api/v1/runs/options``)."""
    return {"data_folders": [{"id": f.id, "images": f.images, "layout": f.layout, "label": f.describe()}
                             for f in data_folders(roots)],
            "data_roots": [str(r) for r in roots],
            "presets": {name: dict(values) for name, values in PRESETS.items()}, "default_preset": DEFAULT_PRESET,
            "architectures": list(ARCHITECTURES),
            "teachers": [{"id": v.id, "name": v.name, "arch": v.arch} for v in teachers(s)],
            "numbers": {k: {"type": t.__name__, "min": lo, "max": hi} for k, (t, lo, hi) in NUMBERS.items()}}


def as_multidict(values) -> MultiDict:
    """A JSON object as form fields: lists become repeated fields, booleans "1" or ""."""
    if isinstance(values, MultiDict):
        return values
    if not isinstance(values, dict):
        raise RunRequestError("send a JSON object (or form fields)")
    out = MultiDict()
    for key, value in values.items():
        for item in (value if isinstance(value, list) else [value]):
            out.add(key, ("1" if item else "") if isinstance(item, bool) else ("" if item is None else str(item)))
    return out


def _number(name: str, raw: str):
    kind, lo, hi = NUMBERS[name]
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise RunRequestError(f"{name} must be {what}, got {raw!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise RunRequestError(f"{name} must be between {lo:g} and {hi:g}, got {raw}")
    return value


def parse_run_request(values, s, roots) -> RunRequest:
    """Check a request's fields (form or JSON) and build its config; RunRequestError says what is wrong."""
    values = as_multidict(values)
    try:
        folders = choose_folders([v for v in values.getlist("data") if v], roots)
    except UnknownDataFolder as exc:
        raise RunRequestError(str(exc)) from None
    preset = (values.get("preset") or DEFAULT_PRESET).strip()
    if preset not in PRESETS:
        raise RunRequestError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    overrides: dict = {}
    arch = (values.get("arch") or "").strip()
    if arch:
        if arch not in ARCHITECTURES:
            raise RunRequestError(f"unknown architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
        overrides["arch"] = arch
    for name in NUMBERS:
        raw = (values.get(name) or "").strip()
        if raw:
            overrides[name] = _number(name, raw)
    teacher_id = (values.get("teacher") or "").strip()
    if teacher_id:
        version = s.get(ModelVersion, int(teacher_id)) if teacher_id.isdigit() else None
        if version is None or version.arch not in TEACHERS:
            raise RunRequestError(f"unknown teacher {teacher_id!r}: choose a registered model version of a teacher "
                                  f"architecture ({', '.join(TEACHERS)}) by its id")
        overrides["teacher"] = version.path
    try:
        cfg = check_config(make_config(preset, data=[str(f.path) for f in folders], **overrides))
    except ValueError as exc:
        raise RunRequestError(str(exc)) from None
    if cfg.w_output_kd > 0 and not cfg.teacher:
        raise RunRequestError(f"output distillation (w_output_kd = {cfg.w_output_kd:g}, preset {preset}) needs a "
                              "teacher: choose one, or set w_output_kd to 0")
    flag = lambda name: (values.get(name) or "").strip().lower() in TRUE  # noqa: E731
    return RunRequest(cfg, flag("activate_if_better"), flag("fresh"))


def queue_run(state, request: RunRequest) -> tuple[int, bool]:
    """Record the run, then send it on the train queue; returns (run id, sent). When the queue cannot be
    reached the run stays queued and the scheduler sends it later."""
    cfg = request.config if request.fresh else continue_active(state.db, state.storage, request.config)
    run_id = create_run(state.db, cfg, activate_if_better=request.activate_if_better)
    try:
        enqueue_training_run(state.db, state.queue.send, run_id)
    except QueueUnreachable:
        return run_id, False
    return run_id, True
