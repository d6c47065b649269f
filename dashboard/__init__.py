"""The web dashboard. ``create_app(settings=None, config=None)`` is the Flask app factory.

HTML views (blueprints ``batches``, ``workers``, ``auth``, ``training``, ``models``) and the JSON API (``api``,
``api_training``, ``api_models``, under ``/api/v1``) are separate modules over query modules (``queries.py``,
``training_queries.py``, ``model_queries.py``). Later blueprints (``study``) register the same way and use the
same state, security and templates.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Flask, current_app, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shared.config import Settings
from shared.db import Database
from shared.storage import Storage

from .config import DashboardConfig, check_exposure, secret_key
from .context import DashboardState
from .formatting import FILTERS
from .queue import Queue
from .security import add_security_headers, csrf_token, logged_in, token_required
from .uploads import UploadRequest


# The top bar, in order; an entry shows once its blueprint is registered (studies, training, models come next).
NAV = [("batches.index", "Batches"), ("batches.new", "New batch"), ("study.index", "Studies"),
       ("training.index", "Training"), ("models.index", "Models"), ("workers.index", "Workers")]


def create_app(settings: Settings | None = None, config: DashboardConfig | None = None) -> Flask:
    settings = settings or Settings.from_env()
    config = config or DashboardConfig.from_env()
    check_exposure(settings.dashboard_host, config)
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config.update(
        SECRET_KEY=secret_key(settings, config),
        MAX_CONTENT_LENGTH=config.max_upload_bytes,
        MAX_FORM_PARTS=config.max_files + 50,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        JSON_SORT_KEYS=False,
    )
    app.extensions["sharpen"] = DashboardState(settings, config, Database(settings),
                                               Storage(settings.storage_root), Queue(settings))

    from . import (api, api_models, api_training, auth, batches, model_registry, study_api, study_pages, training,
                   workers)
    for module in (batches, workers, auth, study_pages, training, model_registry):
        app.register_blueprint(module.bp)
    for module in (api, study_api, api_training, api_models):
        app.register_blueprint(module.bp, url_prefix="/api/v1")

    app.jinja_env.globals.update(csrf_token=csrf_token, logged_in=logged_in, token_required=token_required,
                                 nav_items=lambda: [(e, label) for e, label in NAV if e in app.view_functions])
    app.jinja_env.filters.update(FILTERS)
    app.after_request(add_security_headers)
    app.register_error_handler(HTTPException, _error)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app


def _error(exc: HTTPException):
    """JSON errors under /api/ and for a page's script (Accept: application/json), a page elsewhere; always
    the right status and a message a person can read."""
    message = exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge) and message == RequestEntityTooLarge.description:
        limit = current_app.config["MAX_CONTENT_LENGTH"] / 2 ** 20
        message = f"the upload is larger than the {limit:.0f} MiB allowed (SHARPEN_MAX_UPLOAD_MB)"
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        response = jsonify(error=message, status=exc.code)
    else:
        response = make_response(render_template("error.html", code=exc.code, name=exc.name, message=message))
    response.status_code = exc.code
    if exc.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sharpen"'
    return response
