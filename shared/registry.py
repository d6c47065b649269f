"""Model versions: register, add a file to storage, activate, roll back, and pick the model for a new batch.

A batch records its model version when it is created, so activating or rolling back changes what *new*
batches use; batches in flight keep theirs. Every activation is kept (``ModelActivation``) with the version
it replaced, which is what a roll back returns to.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import ModelActivation, ModelVersion
from .storage import atomic_copy


class NothingToRollBack(LookupError):
    """No earlier active version is recorded."""


def register_model(session: Session, path: Path, name: str | None = None, *, activate: bool = False,
                   training_run_id: int | None = None, storage_root: Path | None = None) -> ModelVersion:
    """Record a model file where it is (idempotent on its sha256); ``add_model_file`` copies it into storage.

    A file under ``storage_root`` is recorded relative to it, so workers on other machines that mount the
    storage elsewhere find it; the shipped model is recorded by its installed path.
    """
    from .inference import file_sha256, load_model  # torch, only to register a file (not to read the registry)
    from .nets import count_parameters

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
    version = ModelVersion(name=(name or path.stem)[:200], path=stored, sha256=sha, arch=meta.arch,
                           metrics=meta.meta.get("metrics", {}), training_run_id=training_run_id,
                           parameters=count_parameters(meta.net))
    session.add(version)
    session.flush()
    if activate:
        activate_model(session, version.id)
    return version


def add_model_file(session: Session, storage, src: Path, name: str | None = None, *,
                   activate: bool = False) -> tuple[ModelVersion, bool]:
    """Check that ``src`` is a loadable Sharpen model file, copy it into ``<storage>/models/`` under its
    sha256 (never the user's file name) and register it by that path relative to the storage root, so every
    worker that mounts the storage finds it. Returns (version, created); a file already registered is not
    copied again. Raises ``ModelFileError`` for a file that is not a Sharpen model.

    Used by ``sharpen models add`` and by the dashboard's upload (page and API).
    """
    from .inference import file_sha256, load_model

    src = Path(src)
    sha = file_sha256(src)
    existing = session.scalar(select(ModelVersion).where(ModelVersion.sha256 == sha))
    if existing is None:
        load_model(src, "cpu")  # ModelFileError unless it is a Sharpen model of a known architecture
        dst = storage.models_dir / f"added-{sha[:16]}.pt"
        if not dst.is_file() or file_sha256(dst) != sha:
            atomic_copy(src, dst)
            dst.chmod(0o644)
        version = register_model(session, dst, name or Path(src).stem, storage_root=storage.root)
    else:
        version = existing
    if activate:
        activate_model(session, version.id)
    return version, existing is None


def activate_model(session: Session, version_id: int, reason: str = "activate") -> ModelVersion:
    """Make ``version_id`` the one new batches use; recorded with the version it replaces (the shipped default
    when none was active yet, so a roll back can always return to it)."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise LookupError(f"no model version {version_id}")
    previous = session.scalar(select(ModelVersion.id).where(ModelVersion.active.is_(True)))
    if previous is None and reason != "default":
        previous = active_model(session).id
    if previous == version_id:
        return version
    session.execute(update(ModelVersion).where(ModelVersion.id != version_id).values(active=False))
    version.active = True
    session.add(ModelActivation(model_version_id=version_id, previous_version_id=previous, reason=reason))
    session.flush()
    return version


def rollback_model(session: Session) -> ModelVersion:
    """Activate again the version that was active before the current one (recorded as a roll back, so a
    second roll back returns to the version rolled back from). Raises ``NothingToRollBack``."""
    last = session.scalar(select(ModelActivation).order_by(ModelActivation.id.desc()).limit(1))
    if last is None or last.previous_version_id is None:
        raise NothingToRollBack("no earlier active model version is recorded: nothing to roll back to")
    return activate_model(session, last.previous_version_id, reason="rollback")


def active_model(session: Session) -> ModelVersion:
    """The active version; the shipped default is registered and activated when none is."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.active.is_(True)))
    if version is None:
        from .inference import default_model_path

        version = register_model(session, default_model_path(), "shipped default")
        activate_model(session, version.id, reason="default")
    return version
