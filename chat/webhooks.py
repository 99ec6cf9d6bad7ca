"""Incoming webhooks: create, list and delete them, and the secret URL that posts."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import validation as v
from .auth import require_principal
from .errors import ApiError
from .extension import chat_service
from .rooms import message_text

bp = Blueprint("webhooks", __name__)


@bp.post("/api/rooms/<room>/webhooks")
def create(room: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    name = v.string(body, "name", max_length=80, min_length=1)
    assert name is not None
    signed = v.boolean(body, "signed")
    return jsonify(chat_service().create_webhook(principal, v.room_ref(room), name,
                                                 signed)), 201


@bp.get("/api/rooms/<room>/webhooks")
def list_all(room: str) -> dict[str, Any]:
    principal = require_principal()
    return {"webhooks": chat_service().list_webhooks(principal, v.room_ref(room))}


@bp.delete("/api/rooms/<room>/webhooks/<int:webhook_id>")
def delete(room: str, webhook_id: int) -> tuple[str, int]:
    principal = require_principal()
    chat_service().delete_webhook(principal, v.room_ref(room), webhook_id)
    return "", 204


@bp.post("/hooks/<token>")
def deliver(token: str) -> tuple[Response, int]:
    """A Slack-style payload: JSON {"text", "username"?}, or a form field `payload`
    holding that JSON (or plain form fields)."""
    raw = request.get_data(cache=True)
    service = chat_service()
    hook = service.webhook_for(token)  # 404 before anything else is read
    service.check_webhook_signature(hook, raw, request.headers.get("X-Chat-Signature"))
    body = _payload()
    text = message_text(body)
    username = v.string(body, "username", required=False, max_length=80) or None
    key = request.headers.get("Idempotency-Key") or None
    if key is not None:
        key = v.string({"Idempotency-Key": key}, "Idempotency-Key", max_length=40)
    message, created = service.post_via_webhook(hook, text, username, key)
    return jsonify(message), 201 if created else 200


def _payload() -> dict[str, Any]:
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") \
            and "payload" in request.form:
        try:
            data = json.loads(request.form["payload"])
        except ValueError:
            raise ApiError(400, "invalid_json", "'payload' is not valid JSON.",
                           "payload") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "'payload' must be a JSON object.", "payload")
        return data
    return v.read_body(form_ok=True)
