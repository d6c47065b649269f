"""JSON API for training runs, under ``/api/v1`` beside the batch API (same token rules: reads open, writes
need the bearer token when one is set): options, list, create, one run, cancel."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, request, url_for

from trainer.runs import RunStateError, cancel_run

from . import training_queries as tq
from .context import current
from .queries import clamp_page
from .run_requests import RunRequestError, parse_run_request, queue_run, run_options
from .security import api_write

bp = Blueprint("api_training", __name__)


def request_values():
    """The fields of a write: a JSON object, or form fields."""
    if request.is_json:
        return request.get_json(silent=True)
    return request.form


def run_or_404(s, run_id: int):
    run = tq.get_run(s, run_id)
    if run is None:
        abort(404, description=f"no training run {run_id}")
    return run


@bp.get("/runs/options")
def options():
    st = current()
    with st.db.session() as s:
        return jsonify(run_options(s, st.config.data_roots))


@bp.get("/runs")
def list_runs():
    page, per_page = clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = tq.list_runs(s, page, per_page)
    return jsonify(runs=found.items, **found.meta())


@bp.post("/runs")
@api_write
def create_run():
    st = current()
    try:
        with st.db.session() as s:
            req = parse_run_request(request_values(), s, st.config.data_roots)
    except RunRequestError as exc:
        abort(400, description=str(exc))
    run_id, sent = queue_run(st, req)
    with st.db.session() as s:
        data = tq.run_detail(s, st.storage, tq.get_run(s, run_id))
    data.update(sent=sent, url=url_for("training.run_page", run_id=run_id, _external=True))
    return jsonify(data), 201, {"Location": url_for("api_training.get_run", run_id=run_id)}


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int):
    st = current()
    with st.db.session() as s:
        return jsonify(tq.run_detail(s, st.storage, run_or_404(s, run_id)))


@bp.post("/runs/<int:run_id>/cancel")
@api_write
def cancel(run_id: int):
    try:
        outcome = cancel_run(current().db, run_id)
    except LookupError as exc:
        abort(404, description=str(exc))
    except RunStateError as exc:
        abort(409, description=str(exc))
    return jsonify(run_id=run_id, outcome=outcome,
                   status="cancelled" if outcome == "cancelled" else "running", cancel_requested=True)
