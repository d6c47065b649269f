"""HTML pages for MOS studies (blueprint ``study``): the list, the new-study form, a study's page with its
results, and the raters' pages behind the share link (``/r/<share>``: a name, then one stimulus at a time).

Thin views over ``dashboard.studies``. Every form carries the CSRF token. Creating, closing and reopening
need a login when a token is set; the raters' pages need only the share link, and a rater is remembered by
the session (or found again by name).
"""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from shared.models import OPEN, StudyRater

from .context import current
from .queries import clamp_page
from .security import check_csrf, logged_in, login_required
from .studies import StudyError, get_study, parse_spec, set_open, start_study
from .studies.raters import (CRITERIA, SCALE, join_study, next_trial, progress, record_answer, study_by_share,
                             trials_per_rater)
from .studies.results import study_results
from .studies.stimuli import SLOTS
from .studies.views import finished_batches, list_studies, model_versions, study_detail

bp = Blueprint("study", __name__)
bp.before_request(check_csrf)
SLOT_LABELS = {"blurry": "Blurry", "sharpened": "Sharpened", "truth": "Ground truth"}


@bp.get("/studies")
def index():
    page, per_page = clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = list_studies(s, page, per_page)
    return render_template("studies.html", found=found)


def _form_page(form: dict, error: str | None = None, status: int = 200):
    with current().db.session() as s:
        batches, versions = finished_batches(s), model_versions(s)
    return render_template("study_new.html", batches=batches, versions=versions, form=form, error=error), status


def _form_values(values, default_seed: str = "") -> dict:
    return {"batch_ids": values.getlist("batch_ids", type=int),
            "model_version_ids": values.getlist("model_version_ids", type=int),
            "n_images": values.get("n_images", "20"), "seed": values.get("seed") or default_seed,
            "kind": values.get("kind", "acr"), "name": values.get("name", "")}


@bp.get("/studies/new")
def new():
    """The form; ``?batch_ids=…&model_version_ids=…`` preselects (e.g. from a comparison of two versions)."""
    return _form_page(_form_values(request.args, str(secrets.randbelow(100_000))))


@bp.post("/studies/new")
@login_required
def create():
    f = request.form
    try:
        study_id, sent = start_study(current(), parse_spec(f, f))
    except StudyError as exc:
        return _form_page(_form_values(f), str(exc), exc.status)
    if not sent:
        flash("The study is recorded, but the queue is not reachable: its re-runs start once the workers are up.")
    return redirect(url_for("study.study_page", study_id=study_id), 303)


@bp.get("/studies/<int:study_id>")
def study_page(study_id: int):
    include = request.args.get("include_flagged") == "1"
    with current().db.session() as s:
        try:
            study = get_study(s, study_id)
        except StudyError as exc:
            abort(404, description=str(exc))
        detail = study_detail(s, study)
        results = study_results(s, study, include_flagged=include)
        share = url_for("study.rate_welcome", share=study.share_token, _external=True) if logged_in() else None
    return render_template("study.html", study=detail, results=results, share_url=share, include_flagged=include,
                           criteria_labels=dict(c for kind in CRITERIA.values() for c in kind) | {"overall": "Overall"})


def _set_open(study_id: int, open_: bool):
    try:
        study = set_open(current().db, study_id, open_)
        flash(f"Study {study_id} is {study.status}.")
    except StudyError as exc:
        if exc.status == 404:
            abort(404, description=str(exc))
        flash(str(exc))
    return redirect(url_for("study.study_page", study_id=study_id), 303)


@bp.post("/studies/<int:study_id>/close")
@login_required
def close(study_id: int):
    return _set_open(study_id, False)


@bp.post("/studies/<int:study_id>/reopen")
@login_required
def reopen(study_id: int):
    return _set_open(study_id, True)


# ---------- the raters' side: the share link is all they have ----------

def _rater_page(template: str, status: int = 200, **context):
    return render_template(template, scale=SCALE, **context), status


def _session_rater(s, study) -> int | None:
    """The rater this browser joined the study as (sessions are keyed by the study's share token, which is
    unique for ever, and checked against the database)."""
    rater_id = (session.get("raters") or {}).get(study.share_token)
    if rater_id is None:
        return None
    rater = s.get(StudyRater, rater_id)
    return rater.id if rater is not None and rater.study_id == study.id else None


def _study_or_page(s, share: str):
    try:
        return study_by_share(s, share), None
    except StudyError as exc:
        return None, _rater_page("rate_message.html", exc.status, title="Not found", message=str(exc))


@bp.get("/r/<share>")
def rate_welcome(share: str):
    with current().db.session() as s:
        study, page = _study_or_page(s, share)
        if page:
            return page
        rater_id = _session_rater(s, study)
        done = progress(s, rater_id) if rater_id else None
        return _rater_page("rate_welcome.html", study=study, share=share, done=done,
                           n_trials=trials_per_rater(s, study), error=None, name="")


@bp.post("/r/<share>")
def rate_join(share: str):
    try:
        rater_id, _new = join_study(current().db, share, request.form.get("name"))
    except StudyError as exc:
        with current().db.session() as s:
            study, page = _study_or_page(s, share)
            if page:
                return page
            return _rater_page("rate_welcome.html", exc.status, study=study, share=share, done=None,
                               n_trials=trials_per_rater(s, study), error=str(exc),
                               name=request.form.get("name", ""))
    session["raters"] = {**(session.get("raters") or {}), share: rater_id}
    return redirect(url_for("study.rate", share=share), 303)


@bp.get("/r/<share>/rate")
def rate(share: str):
    with current().db.session() as s:
        study, page = _study_or_page(s, share)
        if page:
            return page
        rater_id = _session_rater(s, study)
        if rater_id is None:
            return redirect(url_for("study.rate_welcome", share=share), 303)
        kind, study_id, status = study.kind, study.id, study.status
        done = progress(s, rater_id)
    if done.done:
        return _rater_page("rate_message.html", title="Thank you", done=done,
                           message=f"That was the last one: all {done.total} are rated. You can close this page.")
    if status != OPEN:
        return _rater_page("rate_message.html", 409, title="Closed", done=done,
                           message="This study is closed: it takes no more ratings. Thank you for your help.")
    trial = next_trial(current().db, study_id, rater_id)
    if kind == "triplet":
        pictures = [(SLOT_LABELS[slot], url_for("study_api.picture_slot", share=share, token=trial.token, slot=slot))
                    for slot in SLOTS]
    else:
        pictures = [(None, url_for("study_api.picture", share=share, token=trial.token))]
    return _rater_page("rate.html", share=share, kind=kind, trial=trial, done=done, pictures=pictures,
                       criteria=CRITERIA[kind])


@bp.post("/r/<share>/rate")
def rate_post(share: str):
    with current().db.session() as s:
        study, page = _study_or_page(s, share)
        if page:
            return page
        rater_id, kind = _session_rater(s, study), study.kind
    if rater_id is None:
        return redirect(url_for("study.rate_welcome", share=share), 303)
    sent = {k: request.form.get(k) for k, _ in CRITERIA[kind]}
    try:
        record_answer(current().db, share, request.form.get("trial", ""), sent, rater_id=rater_id)
    except StudyError as exc:
        if exc.status == 400:  # a score missing (a triplet row left empty): the same trial again, saying so
            flash(str(exc))
        # 409 (answered already: a double click; or the study closed meanwhile), 404 (not this rater's trial):
        # the rating page shows what comes next
    return redirect(url_for("study.rate", share=share), 303)
