"""What is sent to a person: direct messages and notifications."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify

from . import validation as v
from .auth import require_principal
from .errors import ApiError
from .extension import chat_service
from .rooms import message_key, message_text
from .service import HISTORY_MAX, NOTIFICATION_LEVELS

bp = Blueprint("direct", __name__, url_prefix="/api/users")
notifications_bp = Blueprint("notifications", __name__, url_prefix="/api/notifications")


@bp.post("/<name>/messages")
def send_direct(name: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    text = message_text(body)
    message, created = chat_service().send_direct(
        principal, v.check_name(name, "username"), text, message_key(body)
    )
    return jsonify(message), 201 if created else 200


@bp.post("/<name>/notifications")
def notify(name: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    title = v.string(body, "title", max_length=200, min_length=1)
    text = v.string(body, "body", required=False, max_length=4000) or None
    url = _link(v.string(body, "url", required=False, max_length=2000) or None)
    level = v.string(body, "level", required=False, max_length=16) or "info"
    if level not in NOTIFICATION_LEVELS:
        raise ApiError(400, "invalid_field",
                       f"'level' is one of {', '.join(NOTIFICATION_LEVELS)}.", "level")
    assert title is not None
    note = chat_service().notify(principal, v.check_name(name, "username"), title, text, url,
                                 level)
    return jsonify(note), 201


@notifications_bp.get("")
def list_notifications() -> dict[str, Any]:
    principal = require_principal()
    before = v.query_int("before", minimum=1)
    limit = v.query_int("limit", default=50, minimum=1, maximum=HISTORY_MAX)
    assert limit is not None
    return chat_service().notifications(principal, before, limit)


@notifications_bp.post("/read")
def mark_notifications_read() -> dict[str, Any]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    return chat_service().mark_notifications_read(principal, v.integer(body, "seq"))


def _link(url: str | None) -> str | None:
    """A notification's link: http(s) or a path on this site, never javascript: and co."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # for example an unmatched "[" in the host
        raise ApiError(400, "invalid_field", "'url' is not a valid URL.", "url") from None
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if not parts.scheme and not parts.netloc and url.startswith("/") and \
            not url.startswith("//"):
        return url
    raise ApiError(400, "invalid_field", "'url' must be an http(s) URL or a path.", "url")
