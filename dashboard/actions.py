"""The writes that the pages and the JSON API share: submit the request's upload, retry, cancel.

Each view decides only how to answer (JSON and a status code, or a flash message and a redirect)."""
from __future__ import annotations

from flask import abort, request

from scheduler.control import BatchStateError, cancel_batch, retry_failed

from .context import current
from .uploads import submit_upload

__all__ = ["BatchStateError", "batch_action", "submit_request"]


def submit_request() -> tuple[int, bool]:
    """The batch made from this request's files (fields ``files`` and ``references``) and form; returns
    (batch id, whether it was sent to the queue now). Raises UploadError."""
    return submit_upload(current(), request.files.getlist("files"), request.files.getlist("references"),
                         request.form)


def batch_action(action: str, batch_id: int) -> int:
    """``retry`` the batch's failed and cancelled images, or ``cancel`` those not started; returns how many
    images it changed. 404 for an unknown batch; BatchStateError when the batch's state forbids it."""
    st = current()
    try:
        if action == "retry":
            return retry_failed(st.db, st.queue.send, batch_id, st.settings.chunk_size)
        return cancel_batch(st.db, batch_id)
    except LookupError:
        abort(404, description=f"There is no batch {batch_id}.")
