"""Rooms and messages endpoints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import validation as v
from .auth import require_principal
from .errors import ApiError
from .extension import chat_service
from .service import HISTORY_MAX

bp = Blueprint("rooms", __name__, url_prefix="/api/rooms")


@bp.post("")
def create_room() -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    name = v.name(body)
    title = v.string(body, "title", required=False, max_length=200) or ""
    private = v.boolean(body, "private")
    return jsonify(chat_service().create_room(principal, name, title, private)), 201


@bp.get("")
def list_rooms() -> dict[str, Any]:
    return {"rooms": chat_service().list_rooms(require_principal())}


@bp.post("/<room>/join")
def join(room: str) -> dict[str, Any]:
    principal = require_principal()
    return chat_service().join_room(principal, v.room_ref(room))


@bp.post("/<room>/leave")
def leave(room: str) -> dict[str, Any]:
    principal = require_principal()
    chat_service().leave_room(principal, v.room_ref(room))
    return {"ok": True}


@bp.get("/<room>/members")
def members(room: str) -> dict[str, Any]:
    return chat_service().room_members(require_principal(), v.room_ref(room))


@bp.post("/<room>/members")
def add_member(room: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    username = v.name(body, "username")
    result = chat_service().add_member(principal, v.room_ref(room), username)
    return jsonify(result), 201 if result["added"] else 200


@bp.post("/<room>/messages")
def post_message(room: str) -> tuple[Response, int]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    text = message_text(body)
    message, created = chat_service().post_message(
        principal, v.room_ref(room), text, message_key(body)
    )
    return jsonify(message), 201 if created else 200


@bp.post("/<room>/read")
def mark_read(room: str) -> dict[str, Any]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    seq = v.integer(body, "seq")
    return chat_service().mark_read(principal, v.room_ref(room), seq)


@bp.patch("/<room>/messages/<int:seq>")
def edit_message(room: str, seq: int) -> dict[str, Any]:
    principal = require_principal()
    body = v.read_body(form_ok=True)
    return chat_service().edit_message(principal, v.room_ref(room), seq, message_text(body))


@bp.delete("/<room>/messages/<int:seq>")
def delete_message(room: str, seq: int) -> tuple[str, int]:
    principal = require_principal()
    chat_service().delete_message(principal, v.room_ref(room), seq)
    return "", 204


@bp.post("/<room>/typing")
def typing(room: str) -> dict[str, Any]:
    principal = require_principal()
    body = v.read_body(form_ok=True, empty_ok=True)
    return chat_service().typing(principal, v.room_ref(room), v.boolean(body, "typing", True))


@bp.get("/<room>/presence")
def presence(room: str) -> dict[str, Any]:
    return chat_service().room_presence(require_principal(), v.room_ref(room))


@bp.get("/<room>/messages")
def history(room: str) -> dict[str, Any]:
    principal = require_principal()
    before = v.query_int("before", minimum=1)
    after = v.query_int("after", minimum=0)
    limit = v.query_int("limit", default=50, minimum=1, maximum=HISTORY_MAX)
    assert limit is not None
    messages = chat_service().history(principal, v.room_ref(room), before, after,
                                      limit)
    return {"messages": messages}


def message_key(body: dict[str, Any]) -> str | None:
    """The sender's idempotency key: `client_msg_id`, or else the Idempotency-Key header."""
    key = v.string(body, "client_msg_id", required=False, max_length=64)
    if not key and request.headers.get("Idempotency-Key"):
        key = v.string({"Idempotency-Key": request.headers["Idempotency-Key"]},
                       "Idempotency-Key", max_length=64)
    return key or None


def message_text(body: dict[str, Any]) -> str:
    """The text of a message: not blank, at most CHAT_MAX_MESSAGE_BYTES of UTF-8."""
    text = body.get("text")
    if text is None:
        raise ApiError(400, "missing_field", "'text' is required.", "text")
    if not isinstance(text, str):
        raise ApiError(400, "invalid_field", "'text' must be a string.", "text")
    if not text.strip():
        raise ApiError(400, "invalid_field", "'text' must not be blank.", "text")
    if "\0" in text:
        raise ApiError(400, "invalid_field", "'text' must not contain NUL.", "text")
    limit = current_app.config["CHAT_MAX_MESSAGE_BYTES"]
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_field", "'text' is not valid Unicode.", "text") from None
    if size > limit:
        raise ApiError(413, "message_too_large",
                       f"'text' is {size} bytes; the limit is {limit}.", "text")
    return text
