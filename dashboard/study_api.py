"""The studies part of the JSON API, ``/api/v1`` (in ``static/openapi.json``). Thin over ``dashboard.studies``.

- ``/studies…``: create, read, close/reopen, results, CSV. Writes need the bearer token when one is set, like
  every API write; the share link is shown only to a client that may write (it lets anyone rate).
- ``/rate/<share>/…``: what a rater sends. The share token is the credential (no API token): join with a
  name or code, answer one's own trials, fetch the pictures by opaque trial tokens. Writes from a browser on
  another origin are refused.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request, url_for

from .context import current
from .queries import clamp_page
from .security import api_write, bearer_ok, refuse_cross_origin, token_required
from .studies import StudyError, get_study, parse_spec, set_open, start_study
from .studies.raters import CRITERIA, SCALE, join_study, next_trial, progress, record_answer, study_by_share
from .studies.results import ratings_csv, study_results
from .studies.stimuli import SLOTS, trial_picture
from .studies.views import list_studies, study_detail

bp = Blueprint("study_api", __name__)


@bp.errorhandler(StudyError)
def _study_error(exc: StudyError):
    return jsonify(error=str(exc), status=exc.status), exc.status


def _json_object() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="send a JSON object (Content-Type: application/json)")
    return data


def share_url(study) -> str | None:
    """The raters' link, for a client that may write (no token set, or the right one sent)."""
    if token_required() and not bearer_ok():
        return None
    return url_for("study.rate_welcome", share=study.share_token, _external=True)


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


@bp.get("/studies")
def list_all():
    page, per_page = clamp_page(request.args.get("page"), request.args.get("per_page"), 25, 200)
    with current().db.session() as s:
        found = list_studies(s, page, per_page)
    return jsonify(studies=found.items, **found.meta())


@bp.post("/studies")
@api_write
def create():
    if request.is_json:
        spec = parse_spec(_json_object())
    else:
        spec = parse_spec(request.form, request.form)
    study_id, sent = start_study(current(), spec)
    with current().db.session() as s:
        study = get_study(s, study_id)
        data = study_detail(s, study)
        data.update(share_url=share_url(study), sent=sent)
    return jsonify(data), 201, {"Location": url_for("study_api.get_one", study_id=study_id)}


@bp.get("/studies/<int:study_id>")
def get_one(study_id: int):
    with current().db.session() as s:
        study = get_study(s, study_id)
        data = study_detail(s, study)
        data["share_url"] = share_url(study)
    return jsonify(data)


@bp.post("/studies/<int:study_id>/close")
@api_write
def close(study_id: int):
    return jsonify(id=study_id, status=set_open(current().db, study_id, False).status)


@bp.post("/studies/<int:study_id>/reopen")
@api_write
def reopen(study_id: int):
    return jsonify(id=study_id, status=set_open(current().db, study_id, True).status)


@bp.get("/studies/<int:study_id>/results")
def results(study_id: int):
    with current().db.session() as s:
        return jsonify(study_results(s, get_study(s, study_id), include_flagged=_flag("include_flagged")))


@bp.get("/studies/<int:study_id>/ratings.csv")
def ratings(study_id: int):
    with current().db.session() as s:
        text = ratings_csv(s, get_study(s, study_id))
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="sharpen-study-{study_id}-ratings.csv"'})


def next_for_rater(share: str, study_id: int, kind: str, rater_id: int) -> dict | None:
    """The next trial as a client needs it: its token, size and picture URLs (nothing about its condition)."""
    trial = next_trial(current().db, study_id, rater_id)
    if trial is None:
        return None
    if kind == "triplet":
        pictures = {slot: url_for("study_api.picture_slot", share=share, token=trial.token, slot=slot)
                    for slot in SLOTS}
    else:
        pictures = {"image": url_for("study_api.picture", share=share, token=trial.token)}
    return {"trial": trial.token, "position": trial.position, "width": trial.width, "height": trial.height,
            "pictures": pictures}


def _rater_state(share: str, rater_id: int) -> dict:
    with current().db.session() as s:
        study = study_by_share(s, share)
        done = progress(s, rater_id)
        kind, study_id = study.kind, study.id
    return {"study": {"name": study.name, "kind": kind, "status": study.status},
            "criteria": [{"key": k, "label": label} for k, label in CRITERIA[kind]],
            "scale": [{"score": n, "label": label} for n, label in SCALE],
            "answered": done.answered, "total": done.total,
            "next": next_for_rater(share, study_id, kind, rater_id)}


@bp.post("/rate/<share>/raters")
def join(share: str):
    refuse_cross_origin()
    rater_id, new = join_study(current().db, share, _json_object().get("name"))
    return jsonify(_rater_state(share, rater_id)), 201 if new else 200


@bp.post("/rate/<share>/ratings")
def rate(share: str):
    refuse_cross_origin()
    data = _json_object()
    sent = data.get("scores") if "scores" in data else {"quality": data.get("score")}
    if not isinstance(sent, dict):
        abort(400, description="scores must be an object of criterion: score")
    with current().db.session() as s:
        kind = study_by_share(s, share).kind
    if kind != "acr" and "scores" not in data:
        abort(400, description="this study scores " + ", ".join(k for k, _ in CRITERIA[kind]) + ": send scores")
    rater_id = record_answer(current().db, share, data.get("trial"), sent, rater_name=data.get("rater"))
    return jsonify(_rater_state(share, rater_id)), 201


def _send_picture(share: str, token: str, slot: str | None):
    st = current()
    path = trial_picture(st.db, st.storage, share, token, slot)
    # no file name, no modification time, no ETag: nothing in the response tells which condition this is
    return Response(path.read_bytes(), mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})


@bp.get("/rate/<share>/pictures/<token>")
def picture(share: str, token: str):
    return _send_picture(share, token, None)


@bp.get("/rate/<share>/pictures/<token>/<slot>")
def picture_slot(share: str, token: str, slot: str):
    return _send_picture(share, token, slot)
