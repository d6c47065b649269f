"""A model file uploaded to the registry (page or API) → ``shared.registry.add_model_file``, as ``sharpen
models add`` does: checked to be a loadable Sharpen model, copied into ``<storage>/models/`` and recorded by
its path relative to the storage root.

The request body is bounded by ``SHARPEN_MAX_MODEL_MB`` (``limit_model_upload``, before anything is read)
and spooled to a file under the storage root by the request parser; the copy to check is streamed too.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from flask import abort, request

from shared.registry import add_model_file

CHUNK = 1 << 20


class ModelUploadError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def limit_model_upload(max_bytes: int) -> None:
    """Lower this request's body limit to the model limit: a larger body is refused with 413, unread."""
    if request.content_length is not None and request.content_length > max_bytes:
        abort(413, description=f"the upload is larger than the {max_bytes / 2 ** 20:.0f} MiB allowed for a model "
                               "file (SHARPEN_MAX_MODEL_MB)")
    request.max_content_length = max_bytes  # a body without a length is cut off there


def add_uploaded_model(state, upload, name: str | None, activate: bool) -> tuple[int, bool]:
    """Register the uploaded file; returns (version id, created). ModelUploadError says what is wrong."""
    from shared.inference import ModelFileError  # torch: loaded by the dashboard only when a model is uploaded

    if upload is None or not upload.filename:
        raise ModelUploadError("no model file sent: a multipart field 'file' with a Sharpen model (.pt)")
    shown = PurePosixPath(upload.filename.replace("\\", "/")).name[:200] or "model.pt"
    folder = state.storage.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".model-", suffix=".pt") as tmp:
        shutil.copyfileobj(upload.stream, tmp, CHUNK)
        tmp.flush()
        if tmp.tell() == 0:
            raise ModelUploadError(f"{shown}: the file is empty")
        try:
            with state.db.session() as s:
                version, created = add_model_file(s, state.storage, Path(tmp.name),
                                                  (name or "").strip()[:200] or Path(shown).stem, activate=activate)
                return version.id, created
        except ModelFileError as exc:
            reason = str(exc).replace(tmp.name, shown)
            raise ModelUploadError(reason if shown in reason else f"{shown}: {reason}") from None
