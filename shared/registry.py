"""Model versions: register, activate, and pick the model for a new batch."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import ModelVersion


def register_model(session: Session, path: Path, name: str | None = None, *, activate: bool = False,
                   training_run_id: int | None = None, storage_root: Path | None = None) -> ModelVersion:
    """Record a model file (idempotent on its sha256).

    A file under ``storage_root`` is recorded relative to it, so workers on other machines that mount the
    storage elsewhere find it; the shipped model is recorded by its installed path.
    """
    from .inference import file_sha256, load_model  # torch, only to register a file (not to read the registry)

    path = Path(path).absolute()
    sha = file_sha256(path)
    existing = session.scalar(select(ModelVersion).where(ModelVersion.sha256 == sha))
    if existing:
        if activate:
            activate_model(session, existing.id)
        return existing
    meta = load_model(path, "cpu")
    stored = str(path)
    if storage_root is not None and path.is_relative_to(Path(storage_root).absolute()):
        stored = str(path.relative_to(Path(storage_root).absolute()))
    version = ModelVersion(name=name or path.stem, path=stored, sha256=sha, arch=meta.arch,
                           metrics=meta.meta.get("metrics", {}), training_run_id=training_run_id)
    session.add(version)
    session.flush()
    if activate:
        activate_model(session, version.id)
    return version


def activate_model(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise LookupError(f"no model version {version_id}")
    session.execute(update(ModelVersion).where(ModelVersion.id != version_id).values(active=False))
    version.active = True
    return version


def active_model(session: Session) -> ModelVersion:
    """The active version; the shipped default is registered and activated when none is."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.active.is_(True)))
    if version is None:
        from .inference import default_model_path

        version = register_model(session, default_model_path(), "shipped default", activate=True)
    return version
