"""HTML pages for retraining: the runs list, the form that queues a run on the train queue, a run's page
(live curves, checkpoints, log tail, attempts) and its cancel button. Thin views over ``run_requests`` and
``training_queries``."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from shared.architectures import ARCHITECTURES
from trainer.config import PRESETS, TrainConfig
from trainer.runs import RunStateError, cancel_run

from . import training_queries as tq
from .charts import training_charts
from .context import current
from .data_roots import data_folders
from .queries import clamp_page
from .run_requests import DEFAULT_PRESET, RunRequestError, parse_run_request, queue_run, teachers
from .security import check_csrf, login_required

bp = Blueprint("training", __name__)
bp.before_request(check_csrf)
FORM_DEFAULTS = {"preset": DEFAULT_PRESET, "epochs": "10"}


@bp.get("/training")
def index():
    page, per_page = clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = tq.list_runs(s, page, per_page)
    return render_template("training.html", found=found)


def _form(form, error: str | None = None, status: int = 200):
    st = current()
    with st.db.session() as s:
        teacher_versions = [(v.id, v.name, v.arch) for v in teachers(s)]
    return render_template("training_new.html", folders=data_folders(st.config.data_roots),
                           roots=st.config.data_roots, presets=PRESETS, architectures=ARCHITECTURES,
                           teachers=teacher_versions, defaults=TrainConfig(), form=form, error=error,
                           chosen=form.getlist("data") if hasattr(form, "getlist") else []), status


@bp.get("/training/new")
def new():
    return _form(FORM_DEFAULTS)


@bp.post("/training/new")
@login_required
def create():
    st = current()
    try:
        with st.db.session() as s:
            req = parse_run_request(request.form, s, st.config.data_roots)
    except RunRequestError as exc:
        return _form(request.form, str(exc), 400)
    run_id, sent = queue_run(st, req)
    if not sent:
        flash("The run is recorded, but the queue is not reachable: it starts once the workers are up.")
    return redirect(url_for("training.run_page", run_id=run_id), 303)


def _run_context(s, run_id: int) -> dict:
    run = tq.get_run(s, run_id)
    if run is None:
        abort(404, description=f"There is no training run {run_id}.")
    detail = tq.run_detail(s, current().storage, run)
    return {"run": detail, "charts": training_charts(detail["epochs"])}


@bp.get("/training/runs/<int:run_id>")
def run_page(run_id: int):
    with current().db.session() as s:
        context = _run_context(s, run_id)
    return render_template("run.html", poll_ms=current().config.poll_ms, **context)


@bp.get("/training/runs/<int:run_id>/live")
def run_live(run_id: int):
    """The part of the run page that changes (curves, epochs, files, log), re-fetched while the run goes."""
    with current().db.session() as s:
        context = _run_context(s, run_id)
    return render_template("_run_live.html", **context)


@bp.post("/training/runs/<int:run_id>/cancel")
@login_required
def cancel(run_id: int):
    try:
        outcome = cancel_run(current().db, run_id)
        flash(f"Run {run_id} cancelled." if outcome == "cancelled" else
              f"Run {run_id} is stopping: its trainer stops at the next step and keeps its last checkpoint.")
    except LookupError:
        abort(404, description=f"There is no training run {run_id}.")
    except RunStateError as exc:
        flash(str(exc))
    return redirect(url_for("training.run_page", run_id=run_id), 303)
