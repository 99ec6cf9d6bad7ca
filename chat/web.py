"""The browser chat page, and the security headers every response carries."""

from __future__ import annotations

import secrets

from flask import Blueprint, Flask, Response, g, render_template

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> Response:
    g.csp_nonce = secrets.token_urlsafe(16)
    response = Response(render_template("index.html", nonce=g.csp_nonce))
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{g.csp_nonce}'; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response
