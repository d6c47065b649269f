"""HTML pages for the model registry (blueprint ``models``): versions, activate and roll back, add a model
file, and compare two versions on the same batch. Thin views over ``model_queries``, ``shared.registry`` and
``scheduler.rerun``, ``scheduler.compare``."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from scheduler.compare import compare_batches
from scheduler.control import BatchStateError
from scheduler.enqueue import enqueue_batch
from scheduler.rerun import rerun_with_model
from shared.registry import NothingToRollBack, activate_model, rollback_model

from . import model_queries as mq
from .context import current
from .model_uploads import ModelUploadError, add_uploaded_model, limit_model_upload
from .queries import Page, clamp_page
from .queue import QueueUnreachable
from .security import check_csrf, login_required

bp = Blueprint("models", __name__)


@bp.before_request
def _bound_uploads():
    if request.endpoint == "models.add":
        limit_model_upload(current().config.max_model_bytes)


bp.before_request(check_csrf)  # after the limit: the CSRF check reads the (bounded) form
COMPARE_PER_PAGE = 50


def _page(error: str | None = None, status: int = 200):
    with current().db.session() as s:
        context = {"versions": mq.list_versions(s), "history": mq.activations(s),
                   "rollback_to": mq.rollback_target(s), "batches": mq.comparable_batches(s),
                   "comparisons": mq.comparisons(s)}
    return render_template("models.html", error=error, config=current().config, **context), status


@bp.get("/models")
def index():
    return _page()


@bp.post("/models/<int:version_id>/activate")
@login_required
def activate(version_id: int):
    with current().db.session() as s:
        try:
            v = activate_model(s, version_id)
        except LookupError:
            abort(404, description=f"There is no model version {version_id}.")
        flash(f"Model {v.id} ({v.name}) is active: new batches use it; batches already submitted keep theirs.")
    return redirect(url_for("models.index"), 303)


@bp.post("/models/rollback")
@login_required
def rollback():
    with current().db.session() as s:
        try:
            v = rollback_model(s)
            flash(f"Rolled back: model {v.id} ({v.name}) is active again.")
        except NothingToRollBack as exc:
            flash(str(exc))
    return redirect(url_for("models.index"), 303)


@bp.post("/models/add")
@login_required
def add():
    try:
        version_id, created = add_uploaded_model(current(), request.files.get("file"), request.form.get("name"),
                                                 bool(request.form.get("activate")))
    except ModelUploadError as exc:
        return _page(str(exc), exc.status)
    flash(f"Model {version_id} {'added' if created else 'was already registered'}.")
    return redirect(url_for("models.index") + f"#model-{version_id}", 303)


def start_comparison(state, batch_id: int, version_id: int) -> tuple[int, bool, bool]:
    """The re-run of ``batch_id`` with ``version_id`` (made and sent once); returns (id, created, sent)."""
    rerun_id, created = rerun_with_model(state.db, batch_id, version_id)
    sent = True
    if created:
        try:
            enqueue_batch(state.db, state.queue.send, rerun_id, state.settings.chunk_size)
        except QueueUnreachable:
            sent = False
    return rerun_id, created, sent


@bp.post("/models/compare")
@login_required
def compare():
    try:
        batch_id, version_id = int(request.form.get("batch_id", "")), int(request.form.get("model_version_id", ""))
    except ValueError:
        return _page("Choose a batch and a model version to compare.", 400)
    try:
        rerun_id, _created, sent = start_comparison(current(), batch_id, version_id)
    except LookupError as exc:
        return _page(str(exc), 404)
    except BatchStateError as exc:
        return _page(str(exc), 409)
    if not sent:
        flash("The re-run is recorded, but the queue is not reachable: it starts once the workers are up.")
    return redirect(url_for("models.comparison", rerun_id=rerun_id), 303)


def study_link(found: dict) -> str | None:
    """The compare page's "Start a MOS study of the two": the study form, preset to the parent batch and both
    versions (the study re-runs its sampled images with the other version itself)."""
    if "study.new" not in current_app.view_functions:
        return None
    versions = [v for v in (found["a"]["model_version_id"], found["b"]["model_version_id"]) if v is not None]
    return url_for("study.new", batch_ids=[found["a"]["batch_id"]], model_version_ids=versions)


def _comparison_context(s, rerun_id: int) -> dict:
    try:
        found = compare_batches(s, rerun_id)
    except LookupError as exc:
        abort(404, description=str(exc))
    page, _ = clamp_page(request.args.get("page"), None, COMPARE_PER_PAGE, COMPARE_PER_PAGE)
    rows = found["images"]
    return {"cmp": found, "rows": rows[(page - 1) * COMPARE_PER_PAGE: page * COMPARE_PER_PAGE],
            "page": Page([], page, COMPARE_PER_PAGE, len(rows)), "study_url": study_link(found)}


@bp.get("/models/compare/<int:rerun_id>")
def comparison(rerun_id: int):
    with current().db.session() as s:
        context = _comparison_context(s, rerun_id)
    return render_template("model_compare.html", poll_ms=current().config.poll_ms, **context)


@bp.get("/models/compare/<int:rerun_id>/live")
def comparison_live(rerun_id: int):
    with current().db.session() as s:
        context = _comparison_context(s, rerun_id)
    return render_template("_compare_live.html", **context)
