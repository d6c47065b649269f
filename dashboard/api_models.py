"""JSON API for the model registry, under ``/api/v1`` (same token rules as the batch API): versions, add a
model file, activate, roll back, and compare two versions on the same batch."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, request, url_for

from scheduler.compare import compare_batches
from scheduler.control import BatchStateError
from shared.registry import NothingToRollBack, activate_model, rollback_model

from . import model_queries as mq
from .api_training import request_values
from .context import current
from .model_registry import start_comparison
from .model_uploads import ModelUploadError, add_uploaded_model, limit_model_upload
from .run_requests import TRUE
from .security import api_write

bp = Blueprint("api_models", __name__)


@bp.before_request
def _bound_uploads():
    if request.endpoint == "api_models.add":
        limit_model_upload(current().config.max_model_bytes)


def _version(s, version_id: int) -> dict:
    found = mq.get_version(s, version_id)
    if found is None:
        abort(404, description=f"no model version {version_id}")
    return found


@bp.get("/models")
def list_models():
    with current().db.session() as s:
        return jsonify(models=mq.list_versions(s), activations=mq.activations(s), rollback_to=mq.rollback_target(s))


@bp.get("/models/<int:version_id>")
def get_model(version_id: int):
    with current().db.session() as s:
        return jsonify(_version(s, version_id))


@bp.post("/models")
@api_write
def add():
    try:
        version_id, created = add_uploaded_model(current(), request.files.get("file"), request.form.get("name"),
                                                 (request.form.get("activate") or "").lower() in TRUE)
    except ModelUploadError as exc:
        abort(exc.status, description=str(exc))
    with current().db.session() as s:
        data = _version(s, version_id)
    data["created"] = created
    return jsonify(data), 201 if created else 200, {"Location": url_for("api_models.get_model", version_id=version_id)}


@bp.post("/models/<int:version_id>/activate")
@api_write
def activate(version_id: int):
    with current().db.session() as s:
        try:
            activate_model(s, version_id)
        except LookupError as exc:
            abort(404, description=str(exc))
    with current().db.session() as s:
        return jsonify(_version(s, version_id))


@bp.post("/models/rollback")
@api_write
def rollback():
    with current().db.session() as s:
        try:
            version_id = rollback_model(s).id
        except NothingToRollBack as exc:
            abort(409, description=str(exc))
    with current().db.session() as s:
        return jsonify(_version(s, version_id))


@bp.post("/models/compare")
@api_write
def compare():
    values = request_values()
    values = values if hasattr(values, "get") else {}
    try:
        batch_id, version_id = int(values.get("batch_id")), int(values.get("model_version_id"))
    except (TypeError, ValueError):
        abort(400, description="send batch_id and model_version_id (integers): the batch to re-run and the "
                               "model version to re-run it with")
    try:
        rerun_id, created, sent = start_comparison(current(), batch_id, version_id)
    except LookupError as exc:
        abort(404, description=str(exc))
    except BatchStateError as exc:
        abort(409, description=str(exc))
    body = {"id": rerun_id, "parent_batch_id": batch_id, "model_version_id": version_id, "created": created,
            "sent": sent, "url": url_for("models.comparison", rerun_id=rerun_id, _external=True),
            "batch_url": url_for("api.get_batch", batch_id=rerun_id, _external=True)}
    return jsonify(body), 201 if created else 200, {"Location": url_for("api_models.comparison", rerun_id=rerun_id)}


@bp.get("/models/compare/<int:rerun_id>")
def comparison(rerun_id: int):
    with current().db.session() as s:
        try:
            return jsonify(compare_batches(s, rerun_id))
        except LookupError as exc:
            abort(404, description=str(exc))
