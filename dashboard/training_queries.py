"""Read-only queries for training runs, shared by the pages and the API: the runs list and one run in full
(config, per-epoch metrics, checkpoint files, the log's tail, attempts)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import EpochMetric, ModelVersion, TrainingRun
from trainer.runs import FINAL, log_tail

from .queries import Page, _seconds

RUN_FIELDS = ("id", "status", "epochs_total", "epochs_done", "attempts", "activate_if_better", "activated", "error",
              "worker", "cancel_requested", "checkpoint_epoch")
EPOCH_FIELDS = ("loss", "val_ssim", "val_psnr", "input_ssim", "input_psnr", "lr", "seconds")
FILES = ("checkpoint.pt", "model.pt")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_view(r: TrainingRun, last: EpochMetric | None = None) -> dict:
    data = {k: getattr(r, k) for k in RUN_FIELDS}
    cfg = r.config or {}
    data.update(arch=cfg.get("arch"), preset=cfg.get("preset"), final=r.status in FINAL,
                created_at=_iso(r.created_at), started_at=_iso(r.started_at), finished_at=_iso(r.finished_at),
                elapsed_s=_seconds(r.started_at, r.finished_at),
                age_s=_seconds(r.created_at, None),
                percent=round(100.0 * r.epochs_done / r.epochs_total, 1) if r.epochs_total else 0.0,
                last_val_ssim=last.val_ssim if last else None, last_val_psnr=last.val_psnr if last else None,
                last_loss=last.loss if last else None)
    return data


def list_runs(s: Session, page: int = 1, per_page: int = 25) -> Page:
    """Newest first, each with its last epoch's metrics."""
    total = s.scalar(select(func.count()).select_from(TrainingRun))
    runs = list(s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())
                          .offset((page - 1) * per_page).limit(per_page)))
    last_epoch = (select(EpochMetric.run_id, func.max(EpochMetric.epoch).label("epoch"))
                  .where(EpochMetric.run_id.in_([r.id for r in runs])).group_by(EpochMetric.run_id).subquery())
    lasts = {e.run_id: e for e in s.scalars(select(EpochMetric).join(
        last_epoch, (EpochMetric.run_id == last_epoch.c.run_id) & (EpochMetric.epoch == last_epoch.c.epoch)))}
    return Page([run_view(r, lasts.get(r.id)) for r in runs], page, per_page, total)


def get_run(s: Session, run_id: int) -> TrainingRun | None:
    return s.get(TrainingRun, run_id)


def epochs(s: Session, run_id: int) -> list[dict]:
    rows = s.scalars(select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch))
    return [{"epoch": e.epoch, **{k: (e.metrics or {}).get(k) for k in EPOCH_FIELDS},
             "loss": e.loss, "val_ssim": e.val_ssim, "val_psnr": e.val_psnr} for e in rows]


def run_files(storage, r: TrainingRun) -> list[dict]:
    """The checkpoint and model files the run has written (names fixed by the trainer, under runs/<id>/)."""
    folder = storage.run_dir(r.id)
    found = []
    for name in FILES:
        path = folder / name
        if path.is_file():
            st = path.stat()
            found.append({"name": name, "bytes": st.st_size,
                          "written_at": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(),
                          "epoch": r.checkpoint_epoch if name == "checkpoint.pt" else r.epochs_done})
    return found


def run_detail(s: Session, storage, r: TrainingRun, log_lines: int = 30) -> dict:
    """Everything the run page shows; ``revision`` changes whenever any of it does (the page polls it)."""
    history = epochs(s, r.id)
    data = run_view(r, None)
    if history:
        data.update(last_val_ssim=history[-1]["val_ssim"], last_val_psnr=history[-1]["val_psnr"],
                    last_loss=history[-1]["loss"])
    version = s.scalar(select(ModelVersion).where(ModelVersion.training_run_id == r.id))
    log = log_tail(storage.run_dir(r.id), log_lines)
    data.update(config=r.config, epochs=history, files=run_files(storage, r), log_tail=log,
                model_version={"id": version.id, "name": version.name, "active": version.active} if version else None,
                best_val_ssim=max((e["val_ssim"] for e in history if e["val_ssim"] is not None), default=None))
    data["revision"] = "|".join(map(str, (r.status, r.epochs_done, r.checkpoint_epoch, r.cancel_requested,
                                          r.attempts, len(log), log[-1] if log else "")))
    return data
