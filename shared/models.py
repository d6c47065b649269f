"""ORM models: the database is the source of truth for batches, images, models and training runs.

Statuses are plain strings (portable across SQLite and PostgreSQL): ``queued``, ``running``, ``done``,
``failed``, and ``cancelled`` (a batch, and its images that had not started, when a user cancels it; a training
run a user stopped, its last checkpoint kept). A
failed image or run always carries a message a person can read.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        TypeDecorator, UniqueConstraint, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
CANCELLED = "cancelled"
MODES = ("restore", "paired", "synthetic")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend: SQLite stores naive text, so convert on the way in and out."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    __tablename__ = "model_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    arch: Mapped[str] = mapped_column(String(50))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_run.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    parameters: Mapped[int | None] = mapped_column(Integer, nullable=True)   # learnable weights, counted on register


class ModelActivation(Base):
    """Each time a version became the active one (the registry's history; roll back returns to ``previous``)."""
    __tablename__ = "model_activation"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"), nullable=True)
    reason: Mapped[str] = mapped_column(String(40), default="activate")   # activate | rollback | better | default
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Batch(Base):
    __tablename__ = "batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    sigma: Mapped[float | None] = mapped_column(Float, nullable=True)       # synthetic mode
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"), nullable=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mean_ssim: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_psnr: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_input_ssim: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_input_psnr: Mapped[float | None] = mapped_column(Float, nullable=True)
    megapixels: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # a re-run of another batch's images with another model version (``scheduler.rerun``: a comparison, a study)
    parent_batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id", name="fk_batch_parent_batch_id"),
                                                        nullable=True, index=True)

    images: Mapped[list["ImageJob"]] = relationship(back_populates="batch", order_by="ImageJob.position")
    model_version: Mapped[ModelVersion | None] = relationship()
    __table_args__ = (CheckConstraint(f"mode in {MODES}", name="ck_batch_mode"),)


class ImageJob(Base):
    __tablename__ = "image_job"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    original_name: Mapped[str] = mapped_column(String(500))
    input_path: Mapped[str] = mapped_column(String(1000))
    reference_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    output_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ssim: Mapped[float | None] = mapped_column(Float, nullable=True)
    psnr: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_ssim: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_psnr: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    batch: Mapped[Batch] = relationship(back_populates="images")
    __table_args__ = (
        Index("ix_image_job_batch_status", "batch_id", "status"),
        Index("ix_image_job_status_lease", "status", "lease_expires_at"),
        UniqueConstraint("batch_id", "position", name="uq_image_job_batch_position"),
    )


class TrainingRun(Base):
    __tablename__ = "training_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    run_dir: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    epochs_total: Mapped[int] = mapped_column(Integer, default=0)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    activate_if_better: Mapped[bool] = mapped_column(Boolean, default=False)
    activated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # set by a user's cancel: the trainer stops at its next step boundary (status cancelled), keeping its checkpoint
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    checkpoint_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)  # epoch of the last checkpoint

    epochs: Mapped[list["EpochMetric"]] = relationship(back_populates="run", order_by="EpochMetric.epoch")
    model_version: Mapped[ModelVersion | None] = relationship(
        foreign_keys="ModelVersion.training_run_id", viewonly=True, uselist=False)


class EpochMetric(Base):
    __tablename__ = "epoch_metric"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_run.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_ssim: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_psnr: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    run: Mapped[TrainingRun] = relationship(back_populates="epochs")
    __table_args__ = (UniqueConstraint("run_id", "epoch", name="uq_epoch_metric_run_epoch"),)


# MOS studies (dashboard/studies): people rate stimuli made from finished batches; see shared/study_design.py.
STUDY_KINDS = ("acr", "triplet")    # one image rated 1–5; Blurry | Sharpened | Ground truth, three criteria
PREPARING, OPEN, CLOSED = "preparing", "open", "closed"   # a study also ends ``failed`` (nothing left to rate)


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=PREPARING)
    seed: Mapped[int] = mapped_column(Integer)                       # the image sample and the raters' orders
    n_images: Mapped[int] = mapped_column(Integer)
    share_token: Mapped[str] = mapped_column(String(64), unique=True)  # the raters' link: their only credential
    settings: Mapped[dict] = mapped_column(JSON, default=dict)        # batches, versions, quality rules
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (CheckConstraint(f"kind in {STUDY_KINDS}", name="ck_study_kind"),)


class StudyCondition(Base):
    """What a stimulus is: the blurred input, one model version's output, or the reference."""
    __tablename__ = "study_condition"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))                    # input, model, reference
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"), nullable=True)
    label: Mapped[str] = mapped_column(String(200))
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_study_condition_position"),)


class StudyImage(Base):
    """One sampled photo (an image of a source batch); ``dropped`` says why it is left out, if it is."""
    __tablename__ = "study_image"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    image_job_id: Mapped[int] = mapped_column(ForeignKey("image_job.id", ondelete="CASCADE"))
    dropped: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_study_image_position"),)


class StudyStimulus(Base):
    """A thing to rate: a photo in a condition, or a gold item (``gold`` high or low, no condition).

    Its file is ``file_kind`` of ``image_job_id``: the source image, or its re-run through another model
    version (an image of a derived batch); a low gold item is that file strongly blurred."""
    __tablename__ = "study_stimulus"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    study_image_id: Mapped[int] = mapped_column(ForeignKey("study_image.id", ondelete="CASCADE"))
    condition_id: Mapped[int | None] = mapped_column(ForeignKey("study_condition.id", ondelete="CASCADE"),
                                                     nullable=True)
    gold: Mapped[str | None] = mapped_column(String(10), nullable=True)
    image_job_id: Mapped[int] = mapped_column(ForeignKey("image_job.id", ondelete="CASCADE"))
    file_kind: Mapped[str] = mapped_column(String(20))               # input, output, reference


class StudyRater(Base):
    __tablename__ = "study_rater"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100))               # casefolded: the same person comes back
    seed: Mapped[int] = mapped_column(Integer)                       # of this rater's order
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (UniqueConstraint("study_id", "name_key", name="uq_study_rater_name"),)


class StudyTrial(Base):
    """One showing of a stimulus to a rater, at ``position`` in their order; ``token`` names it in URLs."""
    __tablename__ = "study_trial"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("study_rater.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("study_stimulus.id", ondelete="CASCADE"))
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    token: Mapped[str] = mapped_column(String(32), unique=True)
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (UniqueConstraint("rater_id", "position", name="uq_study_trial_rater_position"),)


class StudyScore(Base):
    """A rater's answer to a trial on one criterion (``quality``; or clarity, edges, naturalness)."""
    __tablename__ = "study_score"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("study_trial.id", ondelete="CASCADE"))
    criterion: Mapped[str] = mapped_column(String(20))
    score: Mapped[int] = mapped_column(Integer)
    __table_args__ = (CheckConstraint("score >= 1 AND score <= 5", name="ck_study_score_range"),
                      UniqueConstraint("trial_id", "criterion", name="uq_study_score_trial_criterion"))
