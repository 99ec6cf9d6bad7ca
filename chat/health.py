"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from .extension import chat_extension

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Response:
    """The database and the broker answer; 503 otherwise (and while shutting down)."""
    ext = chat_extension()
    checks: dict[str, str] = {}
    for name, ping in (("database", ext.store.ping), ("broker", ext.broker.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is logged
            log.warning("readyz: %s is not reachable: %s", name, type(exc).__name__)
            checks[name] = "unavailable"
    if ext.hub.closing:
        checks["worker"] = "shutting down"
    ready = all(value == "ok" for value in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response
