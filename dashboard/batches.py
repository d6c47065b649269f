"""HTML pages for batches: the list, the upload form, a batch (live progress, results, per-image table), the
comparison viewer, and the retry/cancel buttons. Thin views over ``queries`` and ``uploads``."""
from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from shared.models import MODES

from . import queries
from .actions import BatchStateError, batch_action, submit_request
from .context import current
from .security import check_csrf, login_required
from .uploads import UploadError

bp = Blueprint("batches", __name__)
bp.before_request(check_csrf)
STATUS_FILTERS = ("", "failed", "done", "running", "queued", "cancelled")
GRID_PER_PAGE = 12


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


@bp.get("/")
def index():
    page, per_page = queries.clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = queries.list_batches(s, page, per_page)
    return render_template("batches.html", found=found)


@bp.get("/batches/new")
def new():
    return render_template("upload.html", modes=MODES, config=current().config, error=None, form={})


@bp.post("/batches/new")
@login_required
def create():
    try:
        batch_id, sent = submit_request()
    except UploadError as exc:
        if wants_json():
            return jsonify(error=str(exc), status=exc.status), exc.status
        return render_template("upload.html", modes=MODES, config=current().config, error=str(exc),
                               form=request.form), exc.status
    url = url_for("batches.batch_page", batch_id=batch_id)
    if not sent:
        flash("The batch is recorded, but the queue is not reachable: it starts once the workers are up.")
    if wants_json():
        return jsonify(id=batch_id, url=url, sent=sent), 201
    return redirect(url, 303)


def _batch_context(s, batch_id: int) -> dict:
    batch = queries.get_batch(s, batch_id)
    if batch is None:
        abort(404, description=f"There is no batch {batch_id}.")
    status = request.args.get("status", "")
    if status not in STATUS_FILTERS:
        status = ""
    page, per_page = queries.clamp_page(request.args.get("page"), request.args.get("per_page"), 50, 500)
    gpage, _ = queries.clamp_page(request.args.get("gpage"), None, GRID_PER_PAGE, GRID_PER_PAGE)
    return {"batch": queries.batch_detail(s, batch),
            "images": queries.image_page(s, batch_id, page, per_page, status or None),
            "grid": queries.image_page(s, batch_id, gpage, GRID_PER_PAGE, "done"),
            "histogram": queries.gain_histogram(s, batch_id), "status_filter": status,
            "status_filters": STATUS_FILTERS,
            "query": {k: v for k, v in request.args.items() if k in ("page", "per_page", "status", "gpage")}}


@bp.get("/batches/<int:batch_id>")
def batch_page(batch_id: int):
    with current().db.session() as s:
        context = _batch_context(s, batch_id)
        return render_template("batch.html", poll_ms=current().config.poll_ms, **context)


@bp.get("/batches/<int:batch_id>/live")
def batch_live(batch_id: int):
    """The part of the batch page below the progress bar, re-fetched by the page while the batch runs."""
    with current().db.session() as s:
        context = _batch_context(s, batch_id)
        return render_template("_batch_results.html", **context)


@bp.get("/batches/<int:batch_id>/images/<int:job_id>")
def compare(batch_id: int, job_id: int):
    with current().db.session() as s:
        batch = queries.get_batch(s, batch_id)
        job = queries.image_in_batch(s, batch_id, job_id) if batch else None
        if job is None:
            abort(404, description=f"Batch {batch_id} has no image {job_id}.")
        prev_id, next_id = queries.neighbours(s, job)
        return render_template("compare.html", batch=queries.batch_view(batch), image=queries.image_view(job),
                               job=job, prev_id=prev_id, next_id=next_id)


@bp.post("/batches/<int:batch_id>/retry")
@login_required
def retry(batch_id: int):
    return _act("retry", batch_id, "{n} image{s} queued again.")


@bp.post("/batches/<int:batch_id>/cancel")
@login_required
def cancel(batch_id: int):
    return _act("cancel", batch_id, "Batch cancelled: {n} image{s} will not be processed.")


def _act(action: str, batch_id: int, done: str):
    try:
        n = batch_action(action, batch_id)
        flash(done.format(n=n, s="s" if n != 1 else ""))
    except BatchStateError as exc:
        flash(str(exc))
    return redirect(url_for("batches.batch_page", batch_id=batch_id), 303)
