"""Log in with the API token (only when ``SHARPEN_API_TOKEN`` is set): a session cookie for the pages."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from .security import check_csrf, check_login_token, safe_next, token_required

bp = Blueprint("auth", __name__)
bp.before_request(check_csrf)


@bp.get("/login")
def login():
    return render_template("login.html", next=safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login_post():
    target = safe_next(request.form.get("next"))
    if not token_required():
        return redirect(target, 303)
    if not check_login_token(request.form.get("token", "")):
        return render_template("login.html", next=target, error="Wrong token: it does not match SHARPEN_API_TOKEN."), 401
    session.clear()
    session.permanent = True
    session["authenticated"] = True
    flash("Logged in.")
    return redirect(target, 303)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("batches.index"), 303)
