"""Who may write, CSRF protection for the HTML forms, and the security headers of every response.

- ``SHARPEN_API_TOKEN`` unset (loopback only): anyone on this machine may write.
- set: the API wants ``Authorization: Bearer <token>``; the pages want a session made by the login form.
- Every HTML form carries a per-session CSRF token; a POST without the right one is refused (400).
- An API write sent by a browser from another origin is refused (403), so a web page cannot post to a
  dashboard on 127.0.0.1 even when no token is set.
"""
from __future__ import annotations

import hmac
import secrets
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, redirect, request, session, url_for

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _token() -> str:
    from .context import current
    return current().config.api_token


def token_required() -> bool:
    return bool(_token())


def bearer_ok() -> bool:
    header = request.headers.get("Authorization", "")
    sent = header[7:] if header.lower().startswith("bearer ") else ""
    return bool(sent) and hmac.compare_digest(sent.encode(), _token().encode())


def check_login_token(sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), _token().encode())


def logged_in() -> bool:
    return not token_required() or session.get("authenticated") is True


def refuse_cross_origin() -> None:
    """A write sent by a browser from a page of another site is refused (403)."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        abort(403, description="cross-origin writes are not accepted")


def api_write(view):
    """An API route that changes something: bearer token when one is set; same origin when sent by a browser."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        refuse_cross_origin()
        if token_required():
            if not request.headers.get("Authorization"):
                abort(401, description="this dashboard needs an API token: send 'Authorization: Bearer TOKEN'")
            if not bearer_ok():
                abort(401, description="wrong API token")
        return view(*args, **kwargs)
    return wrapped


def login_required(view):
    """An HTML route that changes something: with a token set, only for a logged-in session."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not logged_in():
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def csrf_token() -> str:
    """The session's CSRF token (made on first use); templates put it in every form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    """before_request for the HTML blueprints: every POST carries the session's token."""
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf", "")
    if not (sent and expected and hmac.compare_digest(sent.encode(), expected.encode())):
        abort(400, description="missing or wrong CSRF token: reload the page and try again")


def safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme) is followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("batches.index")


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response
