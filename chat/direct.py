"""What is sent to a person: direct messages."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from . import validation as v
from .auth import require_principal
from .extension import chat_service
from .rooms import message_key, message_text

bp = Blueprint("direct", __name__, url_prefix="/api/users")


@bp.post("/<name>/messages")
def send_direct(name: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    text = message_text(body)
    message, created = chat_service().send_direct(
        principal, v.check_name(name, "username"), text, message_key(body)
    )
    return jsonify(message), 201 if created else 200
