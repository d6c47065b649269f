"""The JSON API, ``/api/v1`` (described in ``static/openapi.json``, served at ``/api/v1/openapi.json``).

Reads are open; writes need the bearer token when ``SHARPEN_API_TOKEN`` is set (``security.api_write``).
Errors are JSON ``{"error": message, "status": code}`` with the matching HTTP status.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file, stream_with_context, url_for

from . import files, queries
from .actions import BatchStateError, batch_action, submit_request
from .context import current
from .security import api_write
from .uploads import UploadError
from .workers import panel

bp = Blueprint("api", __name__)


def batch_or_404(s, batch_id: int):
    batch = queries.get_batch(s, batch_id)
    if batch is None:
        abort(404, description=f"There is no batch {batch_id}.")
    return batch


def image_or_404(s, batch_id: int, job_id: int):
    batch_or_404(s, batch_id)
    job = queries.image_in_batch(s, batch_id, job_id)
    if job is None:
        abort(404, description=f"batch {batch_id} has no image {job_id}")
    return job


@bp.get("/openapi.json")
def openapi():
    return current_app.send_static_file("openapi.json")


@bp.get("/batches")
def list_batches():
    page, per_page = queries.clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = queries.list_batches(s, page, per_page)
    return jsonify(batches=found.items, **found.meta())


@bp.post("/batches")
@api_write
def submit():
    try:
        batch_id, sent = submit_request()
    except UploadError as exc:
        abort(exc.status, description=str(exc))
    with current().db.session() as s:
        data = queries.batch_detail(s, queries.get_batch(s, batch_id))
    data["sent"] = sent
    data["url"] = url_for("batches.batch_page", batch_id=batch_id, _external=True)
    return jsonify(data), 201, {"Location": url_for("api.get_batch", batch_id=batch_id)}


@bp.get("/batches/<int:batch_id>")
def get_batch(batch_id: int):
    with current().db.session() as s:
        return jsonify(queries.batch_detail(s, batch_or_404(s, batch_id)))


@bp.get("/batches/<int:batch_id>/metrics")
def metrics(batch_id: int):
    page, per_page = queries.clamp_page(request.args.get("page"), request.args.get("per_page"), 1000, 5000)
    with current().db.session() as s:
        data = queries.batch_metrics(s, batch_or_404(s, batch_id), page, per_page)
        data["histogram"] = queries.gain_histogram(s, batch_id) if page == 1 else None
    return jsonify(data)


@bp.post("/batches/<int:batch_id>/retry")
@api_write
def retry(batch_id: int):
    return _act("retry", batch_id, "requeued")


@bp.post("/batches/<int:batch_id>/cancel")
@api_write
def cancel(batch_id: int):
    return _act("cancel", batch_id, "cancelled")


def _act(action: str, batch_id: int, key: str):
    try:
        n = batch_action(action, batch_id)
    except BatchStateError as exc:
        abort(409, description=str(exc))
    return jsonify({"batch_id": batch_id, key: n})


@bp.get("/batches/<int:batch_id>/download")
def download_all(batch_id: int):
    st = current()
    with st.db.session() as s:
        batch = batch_or_404(s, batch_id)
        jobs = queries.done_jobs(s, batch_id)
    if not jobs:
        abort(404, description=f"batch {batch_id} has no finished images yet")
    stream = stream_with_context(files.zip_outputs(st.storage, jobs))
    return Response(stream, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="sharpen-batch-{batch.id}.zip"'})


def _file_or_404(batch_id: int, job_id: int, kind: str, make):
    """(the job, the file ``make(storage, job, kind)`` gives), or 404 with what is missing."""
    if kind not in files.KINDS:
        abort(404, description=f"unknown file kind {kind!r}: one of {', '.join(files.KINDS)}")
    st = current()
    with st.db.session() as s:
        job = image_or_404(s, batch_id, job_id)
    path = make(st.storage, job, kind)
    if path is None:
        abort(404, description=f"image {job_id} has no {kind} file (yet)")
    return job, path


@bp.get("/batches/<int:batch_id>/images/<int:job_id>/<kind>")
def image_file(batch_id: int, job_id: int, kind: str):
    """One image's input, output or reference; ``?view=1`` gives a copy a browser can show."""
    view = bool(request.args.get("view"))
    job, path = _file_or_404(batch_id, job_id, kind, files.display_copy if view else files.stored_path)
    return send_file(path, download_name=files.download_name(job, path), as_attachment=not view, max_age=3600)


@bp.get("/batches/<int:batch_id>/images/<int:job_id>/<kind>/thumbnail")
def thumbnail(batch_id: int, job_id: int, kind: str):
    _, path = _file_or_404(batch_id, job_id, kind, files.thumbnail)
    return send_file(path, mimetype="image/jpeg", max_age=86400)


@bp.get("/workers")
def workers():
    return jsonify(panel(current()))


@bp.errorhandler(UploadError)
def _upload_error(exc: UploadError):
    return jsonify(error=str(exc), status=exc.status), exc.status
