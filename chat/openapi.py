"""The OpenAPI 3.1 description of the HTTP API, and a page for people generated from it.

`GET /api/openapi.json` serves the document; `GET /api/docs` renders the same document
as plain HTML on the server (no template, no script, no CDN; every value escaped).
Both are built once per configuration from the Python data in this module, which follows
docs/API.md; tests/test_openapi.py keeps its paths and methods in step with the routes.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from typing import Any

from flask import Blueprint, Response, current_app
from markupsafe import Markup, escape

from .compat import CHANNEL_CHAR, MAX_CHANNEL_LENGTH

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]

DOCUMENT_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"

# --------------------------------------------------------------------------- building blocks

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
ROOM_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}(~[a-z0-9][a-z0-9_.-]{0,31})?$"
TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"
# A boolean given as a string (forms, or JSON): 1/true/on, 0/false/off or empty, any case.
BOOL_STRING = r"^([01]|[Tt][Rr][Uu][Ee]|[Oo][Nn]|[Ff][Aa][Ll][Ss][Ee]|[Oo][Ff][Ff])?$"
DIGITS = r"^[0-9]{1,18}$"
# An http(s) URL with a host, or a path on this site (`/...`, not `//...`); empty is none.
LINK_PATTERN = r"^([Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+([/?#][\S]*)?|/([^/\s][\S]*)?)?$"
MAX_SEQ = 2**62
MAX_QUERY_INT = 10**18 - 1
MAX_PATH_INT = 2**63 - 1

ERROR_CODES: dict[str, str] = {
    "invalid_json": "The body is not valid JSON, or not a JSON object.",
    "missing_field": "A required field is missing (`field` names it).",
    "invalid_field": "A field has the wrong type, length or value (`field` names it).",
    "invalid_name": "A user or room name breaks the name rule (`field` names it).",
    "invalid_parameter": "A query parameter is not a whole number or out of range "
                         "(`field` names it).",
    "not_authenticated": "No credential, an `Authorization` header that is not "
                         "`Bearer <token>`, or an account that no longer exists.",
    "invalid_token": "The bearer token (or `access_token`) is unknown, revoked or expired.",
    "invalid_credentials": "Unknown user or wrong password (the same answer for both).",
    "forbidden": "Not allowed for this caller.",
    "cross_site_request": "A cookie-authenticated state change from another site "
                          "(`Sec-Fetch-Site` or `Origin`).",
    "registration_closed": "Open registration is off (`CHAT_OPEN_REGISTRATION`).",
    "not_a_member": "The caller is not a member of the room.",
    "invite_required": "A private room: a member must add the caller.",
    "direct_message_room": "A direct-message room has exactly its two members.",
    "not_the_sender": "Only a message's sender may change it.",
    "not_found": "No such URL (a path segment that does not match, e.g. a `seq` that is "
                 "not a whole number), or no such token.",
    "room_not_found": "No such room, or one the caller may not see (a private room they "
                      "are not in; another pair's direct messages).",
    "user_not_found": "No such user (`field`: `username`).",
    "message_not_found": "No `message` event at that seq, or one already deleted.",
    "username_taken": "The username is taken (`field`: `username`).",
    "room_exists": "A room with that name exists (`field`: `name`).",
    "message_too_large": "`text` is over the byte limit (`field`: `text`).",
    "too_large": "The request body is over the size limit.",
    "unsupported_media_type": "The body's content type is not accepted here.",
    "too_many_requests": "Too many typing updates; see `Retry-After`.",
    "webhook_not_found": "No such webhook (in this room), or it was deleted.",
    "signature_required": "A signed webhook, and no `X-Chat-Signature`.",
    "bad_signature": "`X-Chat-Signature` is malformed or does not match the body.",
    "signature_expired": "The signature's `t` is more than 300 seconds off the server's "
                         "clock.",
    "invalid_channel": "A flask-sse channel name that is empty, over 200 characters, has a "
                       "control character, or starts with the reserved `chat:` or `__` "
                       "(`field`: `channel`).",
    "channel_not_found": "A channel outside `CHAT_SSE_CHANNELS` (`field`: `channel`).",
    "broker_unavailable": "The broker cannot be reached; nothing was published.",
    "internal_error": "A fault on the server.",
}

STATUS_TEXT = {
    400: "Bad input.",
    401: "Not authenticated.",
    403: "Not allowed.",
    404: "Not found.",
    409: "Conflict.",
    413: "Too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
    500: "Server fault.",
    503: "Unavailable.",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The schema, or JSON null (optional fields take null for absent)."""
    out = dict(schema)
    kind = out.get("type")
    out["type"] = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    return out


def text_field(max_length: int, description: str, *, min_length: int = 0,
               pattern: str = NO_NUL, optional: bool = False, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", "maxLength": max_length, "pattern": pattern,
                      "description": description, **extra}
    if min_length:
        schema["minLength"] = min_length
    return nullable(schema) if optional else schema


def name_schema(description: str, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": 32, "pattern": NAME_PATTERN,
            "description": description, **extra}


def obj(properties: dict[str, Schema], required: Iterable[str] | None = None,
        description: str | None = None, *, closed: bool = True) -> Schema:
    """An object schema; `required` defaults to every property."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties if required is None else required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def json_boolean(description: str, default: bool) -> Schema:
    return {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": BOOL_STRING}],
            "default": default, "description": description}


def form_boolean(description: str, default: bool) -> Schema:
    return {"type": "string", "pattern": BOOL_STRING, "default": "1" if default else "0",
            "description": description}


def json_seq(description: str) -> Schema:
    return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                      {"type": "string", "pattern": DIGITS}],
            "description": description}


def form_seq(description: str) -> Schema:
    return {"type": "string", "pattern": DIGITS, "description": description}


INT = {"type": "integer", "minimum": 0}
SEQ = {"type": "integer", "minimum": 1}
TIME = {"type": "string", "pattern": TIME_PATTERN,
        "description": "ISO 8601 UTC with milliseconds and `Z`."}
USERNAME = {"type": "string", "pattern": NAME_PATTERN}

# --------------------------------------------------------------------------- schemas

_EVENT_BASE: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1,
           "description": "Unique across all timelines; increases with `seq` within one."},
    "channel": {"type": "string", "description": "The timeline: `room:<name>` or "
                                                 "`user:<name>`."},
    "room": {"type": ["string", "null"],
             "description": "The room's name; `null` in a personal timeline."},
    "seq": {**SEQ, "description": "Dense per timeline, from 1."},
    "sender": {"type": ["string", "null"], "description": "Who caused it; `null` for none."},
    "text": {"type": "null", "description": "`null` except on messages and edits."},
    "created_at": TIME,
    "client_msg_id": {"type": "null", "description": "A message's key; else `null`."},
}
_EVENT_REQUIRED = [*_EVENT_BASE, "type"]


def event_schema(type_: str, description: str, extra: dict[str, Schema],
                 required: Iterable[str] = (), **overrides: Schema) -> Schema:
    props = {**_EVENT_BASE, **overrides,
             "type": {"type": "string", "const": type_, "description": "The event type."},
             **extra}
    return obj(props, [*_EVENT_REQUIRED, *required], description)


def _schemas() -> dict[str, Schema]:
    room_state = {
        "last_seq": {**INT, "description": "The room's newest seq (0 when empty)."},
        "unread": {**INT, "description": "Messages from others after `read_seq`, not "
                                         "deleted; 0 for non-members."},
        "mentions": {**INT, "description": "Messages after `read_seq` that mention the "
                                           "caller; 0 for non-members."},
    }
    schemas: dict[str, Schema] = {
        "Error": obj(
            {"error": obj({
                "code": {"type": "string", "description": "Match on this; see each "
                                                          "response for the codes."},
                "message": {"type": "string", "description": "Human text; may change."},
                "field": {"type": "string", "description": "The one input that was "
                          "wrong: a body field, a query parameter, or `room` / `name` / "
                          "`username` for a path segment."},
            }, ["code", "message"])},
            description="Every error under `/api/`.",
        ),
        "User": obj({
            "id": {"type": "integer", "minimum": 1},
            "username": USERNAME,
            "display_name": {"type": "string",
                             "description": "The username when none was set."},
            "is_admin": {"type": "boolean"},
            "created_at": TIME,
        }, description="A user."),
        "Token": obj({
            "id": {"type": "integer", "minimum": 1},
            "name": {"type": "string"},
            "kind": {"type": "string", "const": "api"},
            "created_at": TIME,
            "expires_at": {"type": "null", "description": "API tokens do not expire."},
        }, description="An API token, without its secret."),
        "NewToken": obj({
            "id": {"type": "integer", "minimum": 1},
            "name": {"type": "string"},
            "kind": {"type": "string", "const": "api"},
            "created_at": TIME,
            "expires_at": {"type": "null"},
            "token": {"type": "string", "pattern": r"^chat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$",
                      "description": "The secret, shown only in this response. Opaque: "
                                     "`chat_<keyid>_<secret>`."},
        }, description="A new API token with its secret."),
        "Room": obj({
            "name": {"type": "string", "pattern": ROOM_PATTERN,
                     "description": "The room's name; `<a>~<b>` for a direct-message room."},
            "kind": {"type": "string", "enum": ["room", "dm"]},
            "title": {"type": "string"},
            "private": {"type": "boolean"},
            **room_state,
            "member": {"type": "boolean", "description": "Whether the caller is a member."},
            "read_seq": {"type": ["integer", "null"], "minimum": 0,
                         "description": "The caller's read marker; `null` when not a "
                                        "member (and in the create response)."},
            "created_at": TIME,
            "with": {**USERNAME, "description": "Direct-message rooms only: the other user."},
        }, ["name", "kind", "title", "private", "last_seq", "unread", "mentions", "member",
            "read_seq", "created_at"], "A room, as the caller sees it."),
        "Ok": obj({"ok": {"type": "boolean", "const": True}}),
        "ReadState": obj({
            "room": {"type": "string", "pattern": ROOM_PATTERN},
            "read_seq": INT,
            **{k: v for k, v in room_state.items() if k != "last_seq"},
        }, description="A room read marker after `POST .../read`."),
        "NotificationsReadState": obj({
            "room": {"type": "null"},
            "read_seq": INT,
            "unread": {**INT, "description": "Notifications after the marker."},
        }, description="The notifications read marker after `POST /api/notifications/read`."),
        "MessageEvent": event_schema(
            "message", "A message. `edited_at` once edited; once deleted `text` is `null`, "
            "`deleted` is `true` and there is no `edited_at`. A webhook's message has "
            "`bot: true` and `webhook` (the webhook's name).",
            {"edited_at": TIME, "deleted": {"type": "boolean", "const": True},
             "bot": {"type": "boolean", "const": True,
                     "description": "Posted through an incoming webhook."},
             "webhook": {"type": "string", "description": "The webhook's name."}},
            text={"type": ["string", "null"]},
            client_msg_id={"type": ["string", "null"],
                           "description": "The sender's idempotency key, else `null`."},
            room={"type": "string", "pattern": ROOM_PATTERN},
            sender={"type": "string", "description": "The author's username; for a "
                    "webhook's message the payload's `username` or else the webhook's "
                    "name."},
        ),
        "MemberJoinedEvent": event_schema(
            "member.joined", "A user joined, or was added (`by`).",
            {"user": {**USERNAME, "description": "Who joined."},
             "by": {**USERNAME, "description": "Who added them, when not themselves."}},
            ["user"], room={"type": "string", "pattern": ROOM_PATTERN}),
        "MemberLeftEvent": event_schema(
            "member.left", "A user left.", {"user": USERNAME}, ["user"],
            room={"type": "string", "pattern": ROOM_PATTERN}),
        "MessageUpdatedEvent": event_schema(
            "message.updated", "A message was edited (`text`: the new text; `null` once the "
                               "message is deleted).",
            {"target_seq": SEQ, "edited_at": TIME}, ["target_seq", "edited_at"],
            text={"type": ["string", "null"]},
            room={"type": "string", "pattern": ROOM_PATTERN}),
        "MessageDeletedEvent": event_schema(
            "message.deleted", "A message was deleted.",
            {"target_seq": SEQ, "deleted": {"type": "boolean", "const": True}},
            ["target_seq", "deleted"], room={"type": "string", "pattern": ROOM_PATTERN}),
        "NotificationEvent": event_schema(
            "notification", "A notification in a user's timeline; `kind: mention` for a "
                            "mention, with `ref` pointing at the message.",
            {"kind": {"type": "string", "enum": ["notification", "mention"]},
             "title": {"type": "string"},
             "body": {"type": ["string", "null"]},
             "url": {"type": ["string", "null"]},
             "level": {"type": "string", "enum": ["info", "success", "warning", "error"]},
             "ref": obj({"room": {"type": "string", "pattern": ROOM_PATTERN}, "seq": SEQ},
                        description="Mentions only: the message.")},
            ["kind", "title", "body", "url", "level"], room={"type": "null"}),
        "ReadEvent": event_schema(
            "read", "A read marker moved (`room`: the room, or `null` for the "
                    "notifications marker; `mentions` on room markers only).",
            {"read_seq": INT, "unread": INT, "mentions": INT}, ["read_seq", "unread"],
            room={"type": ["string", "null"]}, sender={"type": "null"}),
    }
    event_types = ["MessageEvent", "MemberJoinedEvent", "MemberLeftEvent",
                   "MessageUpdatedEvent", "MessageDeletedEvent", "NotificationEvent",
                   "ReadEvent"]
    schemas["Event"] = {
        "description": "A stored timeline event, as history, notifications, the send and "
                       "notify calls and the streams show it.",
        "oneOf": [ref(name) for name in event_types],
        "discriminator": {"propertyName": "type", "mapping": {
            schemas[name]["properties"]["type"]["const"]: f"#/components/schemas/{name}"
            for name in event_types}},
    }
    schemas["Typing"] = obj({
        "room": {"type": "string", "pattern": ROOM_PATTERN},
        "typing": {"type": "boolean"},
        "sent": {"type": "boolean", "description": "`false` for a repeat of the same state "
                                                   "within a second (not sent again)."},
    })
    schemas["Presence"] = obj({
        "room": {"type": "string", "pattern": ROOM_PATTERN},
        "online": {"type": "array", "items": USERNAME, "description": "Sorted by name."},
        "count": INT,
        "members": {**INT, "description": "How many members the room has."},
    })
    schemas["Members"] = obj({
        "room": {"type": "string", "pattern": ROOM_PATTERN},
        "online": {**INT, "description": "How many of them are online."},
        "members": {"type": "array", "description": "By name.", "items": obj({
            "username": USERNAME, "display_name": {"type": "string"},
            "online": {"type": "boolean"}})},
    })
    schemas["MemberAdded"] = obj({
        "room": {"type": "string", "pattern": ROOM_PATTERN},
        "username": USERNAME,
        "added": {"type": "boolean", "description": "`false` when already a member."},
    })
    schemas["Notifications"] = obj({
        "notifications": {"type": "array", "items": ref("NotificationEvent"),
                          "description": "Oldest first."},
        "read_seq": {**INT, "description": "The notifications read marker (0 at first)."},
        "unread": {**INT, "description": "Notifications after the marker (all, not only "
                                         "this page)."},
    })
    webhook = {
        "id": {"type": "integer", "minimum": 1},
        "room": {"type": "string", "pattern": ROOM_PATTERN},
        "name": {"type": "string"},
        "signed": {"type": "boolean", "description": "Deliveries need `X-Chat-Signature`."},
        "created_at": TIME,
    }
    schemas["Webhook"] = obj(webhook, description="An incoming webhook, without its "
                                                  "secrets.")
    schemas["NewWebhook"] = obj({
        **webhook,
        "url": {"type": "string", "pattern": r"^/hooks/wh_[0-9a-f]{16}_[A-Za-z0-9_-]+$",
                "description": "The secret URL that posts (a path on this service); shown "
                               "only in this response."},
        "signing_secret": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                           "description": "Signed webhooks only: the HMAC key, shown only "
                                          "in this response."},
    }, [*webhook, "url"], "A new webhook, with its URL (and signing secret) shown once.")
    checks = {"type": "string", "enum": ["ok", "unavailable"]}
    schemas["Readiness"] = obj({
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": obj({"database": checks, "broker": checks,
                       "worker": {"type": "string", "const": "shutting down"}},
                      ["database", "broker"]),
    }, description="What `/readyz` checked.")
    # What the streams carry in `data:` (described, not validated: see the stream paths).
    ready_room = obj({"room": {"type": "string", "pattern": ROOM_PATTERN},
                      "kind": {"type": "string", "enum": ["room", "dm"]},
                      **room_state, "read_seq": INT})
    schemas["StreamReady"] = obj({
        "cursor": {"type": "string", "description": "Where the stream starts."},
        "rooms": {"type": "array", "items": ready_room},
        "channel": {"type": "string", "description": "User streams only: `user:<name>`."},
        "notifications": obj({"unread": INT, "read_seq": INT},
                             description="User streams only."),
    }, ["cursor", "rooms"], "`event: ready`, first; its `id:` is the cursor.")
    schemas["StreamReset"] = obj({
        "reason": {"type": "string",
                   "enum": ["malformed_cursor", "unknown_cursor", "too_far_behind"]},
        "cursor": {"type": "string"},
    }, description="`event: reset`, right after `ready` on a failed resume.")
    schemas["StreamTyping"] = obj({
        "channel": {"type": "string"}, "room": {"type": "string", "pattern": ROOM_PATTERN},
        "type": {"type": "string", "const": "typing"}, "user": USERNAME,
        "typing": {"type": "boolean"},
        "expires_in": {"type": "integer", "enum": [0, 6],
                       "description": "Seconds; 0 for `typing: false`."},
    }, description="`event: typing`: ephemeral, no `id:`.")
    schemas["StreamPresence"] = obj({
        "channel": {"type": "string"}, "room": {"type": "string", "pattern": ROOM_PATTERN},
        "type": {"type": "string", "const": "presence"}, "user": USERNAME,
        "online": {"type": "boolean"},
    }, description="`event: presence`: ephemeral, no `id:`.")
    return schemas


# --------------------------------------------------------------------------- responses


def error_response(status: int, codes: dict[str, str],
                   headers: dict[str, Schema] | None = None) -> Schema:
    """A documented error status: the error body, its code limited to `codes`."""
    lines = [STATUS_TEXT[status]] + [f"`{code}`: {text}" for code, text in codes.items()]
    response: Schema = {
        "description": "\n\n".join(lines),
        "content": {"application/json": {"schema": {
            "allOf": [ref("Error"), {"properties": {"error": {"properties": {
                "code": {"enum": list(codes)}}}}}],
        }}},
    }
    if headers:
        response["headers"] = headers
    return response


def errors(*specs: tuple[int, str] | tuple[int, str, str]) -> dict[str, Schema]:
    """(status, code[, text]) → the responses for those statuses."""
    by_status: dict[int, dict[str, str]] = {}
    for spec in specs:
        status, code = spec[0], spec[1]
        text = spec[2] if len(spec) == 3 else ERROR_CODES[code]  # type: ignore[misc]
        by_status.setdefault(status, {})[code] = text
    out = {}
    for status in sorted(by_status):
        headers = None
        if status == 429:
            headers = {"Retry-After": {
                "description": "Whole seconds to wait, at least 1.", "required": True,
                "schema": {"type": "integer", "minimum": 1}}}
        out[str(status)] = error_response(status, by_status[status], headers)
    return out


def ok(description: str, schema: Schema | None = None, status: int = 200,
       headers: dict[str, Schema] | None = None,
       media_type: str = "application/json") -> dict[str, Schema]:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return {str(status): response}


AUTH = ((401, "not_authenticated"), (401, "invalid_token"))
CSRF = ((403, "cross_site_request"),)
BODY = ((415, "unsupported_media_type"), (400, "invalid_json"), (413, "too_large"))
SERVER = ((500, "internal_error"),)
BAD_ROOM = ((400, "invalid_name", "The `room` path segment breaks the name rule, or is a "
                                  "direct-message room with its names out of order "
                                  "(`field`: `room`)."),
            (404, "not_found", "The path does not match a route (e.g. a `room` with a `/`)."))
ROOM_ACCESS = ((404, "room_not_found"), (403, "not_a_member"))


# --------------------------------------------------------------------------- parameters

def path_param(name: str, schema: Schema, description: str, example: Any) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema, "example": example}


ROOM_PARAM = path_param(
    "room", {"type": "string", "minLength": 1, "maxLength": 65, "pattern": ROOM_PATTERN},
    "A room name, or a direct-message room `<a>~<b>` (the two user names in sorted "
    "order).", "general")
USER_PARAM = path_param("name", {**name_schema("A user name.")}, "A user name.", "bob")
SEQ_PARAM = path_param(
    "seq", {"type": "integer", "minimum": 0, "maximum": MAX_PATH_INT},
    "The message's seq in the room. Not a whole number: `404 not_found`.", 1)
TOKEN_PARAM = path_param(
    "token_id", {"type": "integer", "minimum": 0, "maximum": MAX_PATH_INT},
    "The token's numeric `id`. Not a number: `404 not_found`.", 1)


def query_int(name: str, minimum: int, description: str, maximum: int = MAX_QUERY_INT,
              default: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    # An empty value (`?limit=`) counts as absent.
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True,
            "schema": schema, "description": description + " Empty means absent."}


CHANNEL_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_CHANNEL_LENGTH,
                  "pattern": f"^{CHANNEL_CHAR}*$", "not": {"pattern": "^(chat:|__)"}}


def frame_field(max_length: int, description: str) -> Schema:
    """An SSE field's text: one line, no NUL."""
    return {"type": ["string", "null"], "maxLength": max_length,
            "pattern": r"^[^\r\n\x00]*$", "description": description}


LIMIT = query_int("limit", 1, "How many, 1–200 (above 200 is refused, not clamped).",
                  maximum=200, default=50)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Used as `client_msg_id` when the body has none (an empty key means "
                   "none); then it must be ≤ 64 characters after trimming "
                   "(`400 invalid_field`, field `Idempotency-Key`). Ignored when the body "
                   "has a `client_msg_id`.",
    "schema": {"type": "string"},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID", "in": "header", "required": False,
    "description": "Resume after this cursor (the last `id:` seen). Wins over "
                   "`last_event_id`.",
    "schema": {"type": "string"},
}
LAST_EVENT_ID_QUERY = {
    "name": "last_event_id", "in": "query", "required": False,
    "description": "Resume after this cursor on a first connect (EventSource cannot set "
                   "`Last-Event-ID` then).",
    "schema": {"type": "string"},
}


# --------------------------------------------------------------------------- request bodies

def body(json_schema: Schema, form_schema: Schema | None = None, *, required: bool = True,
         example: Any = None, description: str | None = None) -> Schema:
    """A request body: JSON, and where accepted a form (urlencoded or multipart)."""
    content: Schema = {"application/json": {"schema": json_schema}}
    if example is not None:
        content["application/json"]["example"] = example
    if form_schema is not None:
        content["application/x-www-form-urlencoded"] = {"schema": form_schema}
        content["multipart/form-data"] = {"schema": form_schema}
    out: Schema = {"required": required, "content": content}
    accepted = "JSON (`application/json` or any `+json` type)"
    if form_schema is not None:
        accepted += " or a form (`application/x-www-form-urlencoded`, `multipart/form-data`)"
    text = f"{accepted}." + ("" if required else " May be empty.")
    out["description"] = f"{description} {text}" if description else text
    return out


def message_text(max_bytes: int) -> Schema:
    return text_field(
        max_bytes, f"Not blank, no NUL, at most {max_bytes} bytes of UTF-8 "
                   "(`CHAT_MAX_MESSAGE_BYTES`); stored as sent (not trimmed). Over the "
                   "byte limit: `413 message_too_large`.",
        min_length=1, pattern=NOT_BLANK)


def message_body(max_bytes: int) -> Schema:
    text = message_text(max_bytes)
    client_msg_id = text_field(
        64, "The sender's idempotency key (≤ 64 after trimming; empty means none): the "
            "same key from the same sender in the same room again returns the original "
            "with 200.", optional=True)
    json_schema = obj({"text": text, "client_msg_id": client_msg_id}, ["text"], closed=False)
    form_schema = obj({"text": text, "client_msg_id": {**client_msg_id, "type": "string"}},
                      ["text"], closed=False)
    return body(json_schema, form_schema, example={"text": "hi", "client_msg_id": "a1"})


# --------------------------------------------------------------------------- operations

def op(op_id: str, tag: str, summary: str, description: str,
       responses: dict[str, Schema], *, params: Iterable[Schema] = (),
       request: Schema | None = None, security: list[Schema] | None = None) -> Schema:
    operation: Schema = {"operationId": op_id, "tags": [tag], "summary": summary,
                         "description": description}
    if params:
        operation["parameters"] = list(params)
    if request is not None:
        operation["requestBody"] = request
    operation["responses"] = dict(sorted(responses.items()))
    if security is not None:
        operation["security"] = security
    return operation


def merge(*parts: dict[str, Schema]) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for part in parts:
        out.update(part)
    return out


PUBLIC: list[Schema] = []
STREAM_SECURITY = [{"bearerAuth": []}, {"streamToken": []}, {"sessionCookie": []}]
SESSION_COOKIE_HEADER = {"Set-Cookie": {
    "description": "`chat_session=<token>; HttpOnly; SameSite=Lax; Path=/; Max-Age=...` "
                   "(and `Secure` with `CHAT_SECURE_COOKIES`).",
    "required": True, "schema": {"type": "string"}}}
NO_STORE = {"Cache-Control": {"required": True,
                             "schema": {"type": "string", "const": "no-store"}}}
STREAM_HEADERS = {
    "Cache-Control": {"required": True, "schema": {"type": "string", "const": "no-cache"}},
    "X-Accel-Buffering": {"required": True, "schema": {"type": "string", "const": "no"}},
}
STREAM_FORMAT = (
    "`text/event-stream`, one line of JSON per `data:`, `\\n` line ends, never ending on "
    "its own. At once: `: stream open` and `retry: <CHAT_RETRY_MS>`. Then `event: ready` "
    "(schema `StreamReady`; its `id:` is the cursor), `event: reset` on a failed resume "
    "(`StreamReset`), missed events when resuming, then live ones. Stored events "
    "(`message`, `message.updated`, `message.deleted`, `member.joined`, `member.left`, "
    "`notification`, `read`; data: `Event`) carry an `id:`, the stream's cursor after "
    "them; ephemeral ones (`typing`: `StreamTyping`, `presence`: `StreamPresence`) carry "
    "none. A `:` heartbeat comment after `CHAT_HEARTBEAT_SECONDS` idle. Clients should "
    "ignore event types they do not know."
)


def stream_ok(carries: str) -> dict[str, Schema]:
    return {"200": {
        "description": f"The stream: {carries} {STREAM_FORMAT}",
        "headers": STREAM_HEADERS,
        "content": {"text/event-stream": {
            "schema": {"type": "string", "description": "Server-Sent Events."},
            "x-sse-events": {
                "ready": ref("StreamReady"), "reset": ref("StreamReset"),
                "message": ref("MessageEvent"), "message.updated": ref("MessageUpdatedEvent"),
                "message.deleted": ref("MessageDeletedEvent"),
                "member.joined": ref("MemberJoinedEvent"),
                "member.left": ref("MemberLeftEvent"),
                "notification": ref("NotificationEvent"), "read": ref("ReadEvent"),
                "typing": ref("StreamTyping"), "presence": ref("StreamPresence"),
            },
        }},
    }}


def _paths(max_bytes: int) -> dict[str, dict[str, Schema]]:
    register_body = body(obj({
        "username": name_schema("The name rule: 1–32 of `a-z0-9_.-`, starting with a "
                                "letter or digit."),
        "password": text_field(200, "8–200 characters, not trimmed.", min_length=8),
        "display_name": text_field(80, "≤ 80 characters; default: the username.",
                                   optional=True),
    }, ["username", "password"], closed=False),
        example={"username": "alice", "password": "correct horse", "display_name": "Alice"})
    register_body["description"] = "JSON only (`application/json` or any `+json` type)."
    login_json = obj({
        "username": text_field(64, "≤ 64 characters."),
        "password": text_field(200, "≤ 200 characters, not trimmed."),
    }, closed=False)
    token_json = obj({"name": text_field(80, "A label, ≤ 80; default `token`.",
                                         optional=True)}, [], closed=False)
    room_json = obj({
        "name": name_schema("The room's name (the name rule)."),
        "title": text_field(200, "≤ 200 characters; default `\"\"`.", optional=True),
        "private": json_boolean("A private room: members add others.", False),
    }, ["name"], closed=False)
    room_form = obj({
        "name": room_json["properties"]["name"],
        "title": {**room_json["properties"]["title"], "type": "string"},
        "private": form_boolean("A private room: members add others.", False),
    }, ["name"], closed=False)
    member_json = obj({"username": name_schema("The user to add.")}, closed=False)
    read_desc = "The new read marker: a whole number, at most the room's `last_seq` " \
                "(larger: `400 invalid_field`). A lower one changes nothing."
    typing_desc = "Whether the caller is typing."
    notify_props = {
        "title": text_field(200, "1–200 characters.", min_length=1, pattern=NOT_BLANK),
        "body": text_field(4000, "≤ 4000 characters; empty means none.", optional=True),
        "url": text_field(2000, "≤ 2000 characters: an `http`/`https` URL with a host, or "
                                "a path on this site (`/...`, not `//...`); empty means "
                                "none.", pattern=LINK_PATTERN, optional=True),
        "level": {"type": ["string", "null"], "enum": ["info", "success", "warning", "error",
                                                       "", None],
                  "default": "info", "description": "Empty means `info`."},
    }
    notify_form = {k: {**v, "type": "string"} for k, v in notify_props.items()}
    notify_form["level"] = {**notify_props["level"], "type": "string",
                            "enum": ["info", "success", "warning", "error", ""]}
    notifications_read_desc = "A whole number, at most the last seq of the caller's " \
                              "personal timeline (larger: `400 invalid_field`)."
    webhook_json = obj({
        "name": text_field(80, "1–80 characters: the webhook's name, shown on its messages.",
                           min_length=1, pattern=NOT_BLANK),
        "signed": json_boolean("Deliveries must be signed (`X-Chat-Signature`).", False),
    }, ["name"], closed=False)
    webhook_form = obj({"name": webhook_json["properties"]["name"],
                        "signed": form_boolean("Deliveries must be signed.", False)},
                       ["name"], closed=False)
    hook_username = text_field(80, "The name the message shows (≤ 80 after trimming); "
                                   "default: the webhook's name.", optional=True)
    hook_json = obj({"text": message_text(max_bytes), "username": hook_username}, ["text"],
                    closed=False)
    hook_form = {
        **obj({"text": message_text(max_bytes),
               "username": {**hook_username, "type": "string"},
               "payload": {"type": "string", "contentMediaType": "application/json",
                           "description": "The JSON body (`{text, username?}`) as one "
                                          "form field, as Slack clients send it; wins over "
                                          "the other fields."}}, [], closed=False),
        "anyOf": [{"required": ["payload"]}, {"required": ["text"]}],
    }
    hook_request = body(hook_json, hook_form, example={"text": "build 42 passed",
                                                       "username": "ci"})
    room_webhooks = "Members only: any member may create, list or delete the room's webhooks."

    paths: dict[str, dict[str, Schema]] = {
        "/api/users": {"post": op(
            "registerUser", "Identity", "Register",
            "When open registration is on (`CHAT_OPEN_REGISTRATION`). Does not log in.",
            merge(ok("The new user.", ref("User"), 201), errors(
                (403, "registration_closed", ERROR_CODES["registration_closed"]
                 + " Checked first."),
                *BODY, (400, "missing_field"), (400, "invalid_field"), (400, "invalid_name"),
                (409, "username_taken"), *SERVER)),
            request=register_body, security=PUBLIC)},
        "/api/session": {
            "post": op(
                "logIn", "Identity", "Log in (browser session)",
                "Each log in opens a new session; its token is the "
                "`chat_session` cookie (it also works as a bearer token).",
                merge(ok("The user, with the session cookie.", ref("User"),
                         headers=SESSION_COOKIE_HEADER), errors(
                    (401, "invalid_credentials"), *BODY, (400, "missing_field"),
                    (400, "invalid_field"), *SERVER)),
                request=body(login_json, login_json,
                             example={"username": "alice", "password": "correct horse"}),
                security=PUBLIC),
            "delete": op(
                "logOut", "Identity", "Log out",
                "Clears the cookie. A session caller's session is revoked (its streams "
                "end); a bearer token is left alone.",
                merge(ok("Logged out.", ref("Ok"), headers={"Set-Cookie": {
                    "description": "Clears `chat_session`.", "required": True,
                    "schema": {"type": "string"}}}), errors(*AUTH, *CSRF, *SERVER))),
        },
        "/api/me": {"get": op(
            "getMe", "Identity", "The current user", "",
            merge(ok("The caller.", ref("User")), errors(*AUTH, *SERVER)))},
        "/api/tokens": {
            "post": op(
                "createToken", "Identity", "New API token",
                "For the current user (a session or a token). The secret is shown once.",
                merge(ok("The token with its secret.", ref("NewToken"), 201), errors(
                    *AUTH, *CSRF, *BODY, (400, "invalid_field"), *SERVER)),
                request=body(token_json, required=False, example={"name": "ci"},
                             description="JSON, or an empty body.")),
            "get": op(
                "listTokens", "Identity", "The caller's API tokens",
                "Oldest first, without secrets; sessions are not listed.",
                merge(ok("The tokens.", obj({"tokens": {"type": "array",
                                                        "items": ref("Token")}})),
                      errors(*AUTH, *SERVER))),
        },
        "/api/tokens/{token_id}": {"delete": op(
            "revokeToken", "Identity", "Revoke an API token",
            "Every stream opened with it ends, on every worker. Admins may revoke any "
            "user's API token.",
            merge(ok("Revoked; empty body.", status=204), errors(
                *AUTH, *CSRF, (404, "not_found", "Not one of the caller's API tokens "
                                                 "(admins: not any user's), or not a "
                                                 "number."), *SERVER)),
            params=[TOKEN_PARAM])},
        "/api/rooms": {
            "post": op(
                "createRoom", "Rooms", "Create a room",
                "The creator is a member; the room joins the creator's open user streams.",
                merge(ok("The room (`member: true`, `read_seq: null`).", ref("Room"), 201),
                      errors(*AUTH, *CSRF, *BODY, (400, "missing_field"),
                             (400, "invalid_name"), (400, "invalid_field"),
                             (409, "room_exists"), *SERVER)),
                request=body(room_json, room_form,
                             example={"name": "general", "title": "General"})),
            "get": op(
                "listRooms", "Rooms", "Rooms the caller can see",
                "Every public room and every private room the caller is in, by name, then "
                "the caller's direct-message rooms, by name.",
                merge(ok("The rooms.", obj({"rooms": {"type": "array",
                                                      "items": ref("Room")}})),
                      errors(*AUTH, *SERVER))),
        },
        "/api/rooms/{room}/join": {"post": op(
            "joinRoom", "Rooms", "Join a public room",
            "Stores `member.joined` and sets the read marker to it; joining again stores "
            "nothing and answers the same. Any body is ignored.",
            merge(ok("The room (`member: true`).", ref("Room")), errors(
                *AUTH, *CSRF, *BAD_ROOM, (404, "room_not_found"),
                (403, "invite_required", "A private room (an admin who is not a member)."),
                (403, "direct_message_room"), *SERVER)),
            params=[ROOM_PARAM])},
        "/api/rooms/{room}/leave": {"post": op(
            "leaveRoom", "Rooms", "Leave a room",
            "Stores `member.left`; the caller's streams of the room end. Any body is "
            "ignored.",
            merge(ok("Left.", ref("Ok")), errors(
                *AUTH, *CSRF, *BAD_ROOM, *ROOM_ACCESS, (403, "direct_message_room"),
                *SERVER)),
            params=[ROOM_PARAM])},
        "/api/rooms/{room}/members": {
            "get": op(
                "listMembers", "Rooms", "The room's members",
                "Members only. By name, each with whether they are online now.",
                merge(ok("The members.", ref("Members")), errors(
                    *AUTH, *BAD_ROOM, *ROOM_ACCESS, *SERVER)),
                params=[ROOM_PARAM]),
            "post": op(
                "addMember", "Rooms", "Add a member",
                "Any member may add another user; a `member.joined` `{user, by}` is stored.",
                merge(ok("Added.", ref("MemberAdded"), 201),
                      ok("Already a member (`added: false`); nothing stored.",
                         ref("MemberAdded")),
                      errors(*AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS,
                             (403, "direct_message_room"), (404, "user_not_found"),
                             (400, "missing_field"), (400, "invalid_name",
                                                      "`username` or the `room` path "
                                                      "segment breaks the name rule."),
                             (400, "invalid_field"), *SERVER)),
                params=[ROOM_PARAM],
                request=body(member_json, member_json, example={"username": "bob"})),
        },
        "/api/rooms/{room}/messages": {
            "post": op(
                "sendMessage", "Messages", "Send a message",
                "Members only. Stored, then sent to streams; each member it mentions "
                "(`@name`) gets a notification.",
                merge(ok("The new message.", ref("MessageEvent"), 201),
                      ok("A message with this key from this sender in this room exists: "
                         "the original as it is now; nothing stored or sent.",
                         ref("MessageEvent")),
                      errors(*AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS,
                             (400, "missing_field"),
                             (400, "invalid_field", "`text`, `client_msg_id` or "
                                                    "`Idempotency-Key` is wrong."),
                             (413, "message_too_large"), *SERVER)),
                params=[ROOM_PARAM, IDEMPOTENCY_KEY], request=message_body(max_bytes)),
            "get": op(
                "getHistory", "Messages", "History",
                "Members only; every stored event of the room (filter on `type`), oldest "
                "first. Without `after`: the newest `limit` (below `before`); with it: "
                "the first `limit` after it.",
                merge(ok("The events.", obj({"messages": {"type": "array",
                                                          "items": ref("Event")}})),
                      errors(*AUTH, *BAD_ROOM, *ROOM_ACCESS, (400, "invalid_parameter"),
                             *SERVER)),
                params=[ROOM_PARAM,
                        query_int("before", 1, "Only events with `seq < before`."),
                        query_int("after", 0, "Only events with `seq > after`."), LIMIT]),
        },
        "/api/rooms/{room}/messages/{seq}": {
            "patch": op(
                "editMessage", "Messages", "Edit a message",
                "Its sender only. Keeps `id`, `seq`, `created_at`; sets `edited_at`; "
                "stores and sends `message.updated`.",
                merge(ok("The message as it is now.", ref("MessageEvent")),
                      errors(*AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS,
                             (404, "message_not_found"), (403, "not_the_sender"),
                             (400, "missing_field"), (400, "invalid_field"),
                             (413, "message_too_large"), *SERVER)),
                params=[ROOM_PARAM, SEQ_PARAM],
                request=body(obj({"text": message_text(max_bytes)}, closed=False),
                             obj({"text": message_text(max_bytes)}, closed=False),
                             example={"text": "hi, edited"})),
            "delete": op(
                "deleteMessage", "Messages", "Delete a message",
                "Its sender only. The text is removed from the store (also from earlier "
                "`message.updated` events); `message.deleted` is stored and sent.",
                merge(ok("Deleted; empty body.", status=204),
                      errors(*AUTH, *CSRF, *BAD_ROOM, *ROOM_ACCESS,
                             (404, "message_not_found"), (403, "not_the_sender"), *SERVER)),
                params=[ROOM_PARAM, SEQ_PARAM]),
        },
        "/api/rooms/{room}/read": {"post": op(
            "markRead", "Rooms", "Move the read marker",
            "Members only (direct-message rooms too). Never moves back. When it moves, a "
            "`read` event goes to the caller's user streams.",
            merge(ok("The state after it.", ref("ReadState")), errors(
                *AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS, (400, "missing_field"),
                (400, "invalid_field"), *SERVER)),
            params=[ROOM_PARAM],
            request=body(obj({"seq": json_seq(read_desc)}, closed=False),
                         obj({"seq": form_seq(read_desc)}, closed=False),
                         example={"seq": 1}))},
        "/api/rooms/{room}/typing": {"post": op(
            "sendTyping", "Rooms", "Typing indicator",
            "Members only. An ephemeral `typing` event to the room's streams; never "
            "stored. Rate limit: a burst of 5 per user, refilled at one a second.",
            merge(ok("Sent, or (`sent: false`) a repeat within a second.", ref("Typing")),
                  errors(*AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS,
                         (400, "invalid_field"), (429, "too_many_requests"), *SERVER)),
            params=[ROOM_PARAM],
            request=body(obj({"typing": json_boolean(typing_desc, True)}, [], closed=False),
                         obj({"typing": form_boolean(typing_desc, True)}, [], closed=False),
                         required=False, example={"typing": True},
                         description="JSON, a form, or an empty body."))},
        "/api/rooms/{room}/presence": {"get": op(
            "getPresence", "Rooms", "Who is online in the room",
            "Members only. A user is online while one of their streams is open.",
            merge(ok("The online members.", ref("Presence")), errors(
                *AUTH, *BAD_ROOM, *ROOM_ACCESS, *SERVER)),
            params=[ROOM_PARAM])},
        "/api/users/{name}/messages": {"post": op(
            "sendDirectMessage", "Direct messages and notifications", "Send a direct message",
            "Stored in the DM room `<a>~<b>` of the caller and `name` (made on first use); "
            "as sending to a room otherwise.",
            merge(ok("The new message.", ref("MessageEvent"), 201),
                  ok("The original message with this key.", ref("MessageEvent")),
                  errors(*AUTH, *CSRF, *BODY, (400, "missing_field"),
                         (400, "invalid_field", "`text`, `client_msg_id`, "
                                                "`Idempotency-Key`, or `username`: "
                                                "`name` is the caller."),
                         (400, "invalid_name", "`name` breaks the name rule "
                                               "(`field`: `username`)."),
                         (404, "user_not_found"),
                         (404, "not_found", "The path does not match a route."),
                         (413, "message_too_large"), *SERVER)),
            params=[USER_PARAM, IDEMPOTENCY_KEY], request=message_body(max_bytes))},
        "/api/users/{name}/notifications": {"post": op(
            "notifyUser", "Direct messages and notifications", "Notify a user",
            "Only `name` itself or an admin. The `notification` event is stored in the "
            "user's timeline and sent to their user streams.",
            merge(ok("The stored notification.", ref("NotificationEvent"), 201),
                  errors(*AUTH, *CSRF, *BODY,
                         (403, "forbidden", "Not `name` and not an admin (whether or not "
                                            "the user exists)."),
                         (404, "user_not_found"),
                         (404, "not_found", "The path does not match a route."),
                         (400, "invalid_name", "`name` breaks the name rule "
                                               "(`field`: `username`)."),
                         (400, "missing_field"), (400, "invalid_field"), *SERVER)),
            params=[USER_PARAM],
            request=body(obj(notify_props, ["title"], closed=False),
                         obj(notify_form, ["title"], closed=False),
                         example={"title": "Deploy finished", "body": "v1.2 is live",
                                  "url": "https://ci.example/run/7", "level": "success"}))},
        "/api/notifications": {"get": op(
            "listNotifications", "Direct messages and notifications",
            "The caller's notifications",
            "Mentions included, oldest first: the newest `limit` (below `before`).",
            merge(ok("The notifications and the unread count.", ref("Notifications")),
                  errors(*AUTH, (400, "invalid_parameter"), *SERVER)),
            params=[query_int("before", 1, "Only notifications with `seq < before`."),
                    LIMIT])},
        "/api/notifications/read": {"post": op(
            "markNotificationsRead", "Direct messages and notifications",
            "Move the notifications read marker",
            "Never moves back. When it moves, a `read` event goes to the caller's user "
            "streams.",
            merge(ok("The state after it.", ref("NotificationsReadState")), errors(
                *AUTH, *CSRF, *BODY, (400, "missing_field"), (400, "invalid_field"),
                *SERVER)),
            request=body(obj({"seq": json_seq(notifications_read_desc)}, closed=False),
                         obj({"seq": form_seq(notifications_read_desc)}, closed=False),
                         example={"seq": 1}))},
        "/api/rooms/{room}/webhooks": {
            "post": op(
                "createWebhook", "Webhooks", "Create an incoming webhook",
                room_webhooks + " The URL's secret is stored hashed; the URL and the "
                "signing secret are shown only in this response.",
                merge(ok("The webhook, with its URL.", ref("NewWebhook"), 201),
                      errors(*AUTH, *CSRF, *BODY, *BAD_ROOM, *ROOM_ACCESS,
                             (400, "missing_field"), (400, "invalid_field"), *SERVER)),
                params=[ROOM_PARAM],
                request=body(webhook_json, webhook_form,
                             example={"name": "ci", "signed": False})),
            "get": op(
                "listWebhooks", "Webhooks", "The room's webhooks",
                room_webhooks + " Never their secrets.",
                merge(ok("The webhooks.", obj({"webhooks": {"type": "array",
                                                            "items": ref("Webhook")}})),
                      errors(*AUTH, *BAD_ROOM, *ROOM_ACCESS, *SERVER)),
                params=[ROOM_PARAM]),
        },
        "/api/rooms/{room}/webhooks/{webhook_id}": {"delete": op(
            "deleteWebhook", "Webhooks", "Delete a webhook",
            room_webhooks + " Its URL stops working at once.",
            merge(ok("Deleted; empty body.", status=204),
                  errors(*AUTH, *CSRF, *BAD_ROOM, *ROOM_ACCESS, (404, "webhook_not_found"),
                         *SERVER)),
            params=[ROOM_PARAM, path_param(
                "webhook_id", {"type": "integer", "minimum": 0, "maximum": MAX_PATH_INT},
                "The webhook's `id`. Not a number: `404 not_found`.", 1)])},
        "/hooks/{token}": {"post": op(
            "deliverWebhook", "Webhooks", "Post through a webhook",
            "The secret URL (from `POST /api/rooms/{room}/webhooks`) is the credential. "
            "Stores a message in the webhook's room, as a bot (`bot: true`, `webhook`, and "
            "`sender`: `username` or the webhook's name), and streams it like any message. "
            "A Slack-style body: JSON `{text, username?}`, or a form with a field `payload` "
            "holding that JSON, or plain form fields `text` and `username`.",
            merge(ok("The new message.", ref("MessageEvent"), 201),
                  ok("The original message for this `Idempotency-Key` on this webhook; "
                     "nothing stored or sent.", ref("MessageEvent")),
                  errors((404, "webhook_not_found"),
                         (404, "not_found", "The path does not match a route."),
                         (401, "signature_required"), (401, "bad_signature"),
                         (401, "signature_expired"), *BODY,
                         (400, "invalid_json", "The body, or the form field `payload` "
                                               "(`field`: `payload`), is not a JSON "
                                               "object."),
                         (400, "missing_field"),
                         (400, "invalid_field", "`text`, `username` or "
                                                "`Idempotency-Key`."),
                         (413, "message_too_large"), *SERVER)),
            params=[
                path_param("token", {"type": "string", "minLength": 1},
                           "The secret part of the webhook's URL, `wh_<keyid>_<secret>`.",
                           "wh_5f1c0e9a2b3d4c6e_Qm9vLXNlY3JldC1leGFtcGxl"),
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "description": "≤ 40 characters: the same key on the same webhook again "
                                "answers 200 with the original message.",
                 "schema": {"type": "string", "maxLength": 40}},
                {"name": "X-Chat-Signature", "in": "header", "required": False,
                 "description": "Required by signed webhooks: `t=<unix time>,v1=<hex "
                                "HMAC-SHA256 of \"<t>.<raw body>\" keyed with the signing "
                                "secret>`; several `v1=` may be given; `t` at most 300 "
                                "seconds off.",
                 "schema": {"type": "string"}},
            ],
            request=hook_request, security=PUBLIC)},
        "/healthz": {"get": op(
            "healthz", "Operations", "Liveness", "The process answers.",
            merge(ok("Alive.", obj({"status": {"type": "string", "const": "ok"}})),
                  errors(*SERVER)),
            security=PUBLIC)},
        "/readyz": {"get": op(
            "readyz", "Operations", "Readiness",
            "The database and the broker answer, and the worker is not shutting down.",
            merge(ok("Ready.", ref("Readiness"), headers=NO_STORE),
                  {"503": {"description": "Not ready: a check failed (`unavailable`), or "
                                          "the worker is stopping (`worker`).",
                           "headers": NO_STORE,
                           "content": {"application/json": {"schema": ref("Readiness")}}}},
                  errors(*SERVER)),
            security=PUBLIC)},
        "/metrics": {"get": op(
            "metrics", "Operations", "Prometheus metrics",
            "The Prometheus text format, summed over every gunicorn worker. It shows no "
            "names: keep it off the public internet at the proxy if counts are private.",
            merge(ok("The metrics.", {"type": "string"}, media_type="text/plain"),
                  errors(*SERVER)),
            security=PUBLIC)},
        "/api/stream": {"get": op(
            "streamMine", "Streams", "The caller's stream",
            "The personal timeline (notifications, `read`) plus every room and DM room "
            "the caller is in; rooms joined later join the open stream.",
            merge(stream_ok("the caller's user stream."), errors(*AUTH, *SERVER)),
            params=[LAST_EVENT_ID, LAST_EVENT_ID_QUERY], security=STREAM_SECURITY)},
        "/api/users/{name}/stream": {"get": op(
            "streamUser", "Streams", "A user's stream",
            "As `/api/stream`, for `name`: that user or an admin (an admin's view leaves "
            "out the user's direct-message rooms).",
            merge(stream_ok("that user's stream."), errors(
                *AUTH, (400, "invalid_name", "`name` breaks the name rule (`field`: "
                                             "`name`)."),
                (403, "forbidden", "Another user's stream, and not an admin."),
                (404, "user_not_found"),
                (404, "not_found", "The path does not match a route."), *SERVER)),
            params=[{**USER_PARAM}, LAST_EVENT_ID, LAST_EVENT_ID_QUERY],
            security=STREAM_SECURITY)},
        "/api/rooms/{room}/stream": {"get": op(
            "streamRoom", "Streams", "A room's stream",
            "One room or DM room, for its members; ends when the caller leaves.",
            merge(stream_ok("the room's events."), errors(
                *AUTH, *BAD_ROOM, *ROOM_ACCESS, *SERVER)),
            params=[ROOM_PARAM, LAST_EVENT_ID, LAST_EVENT_ID_QUERY],
            security=STREAM_SECURITY)},
        "/stream": {
            "get": op(
                "streamChannel", "flask-sse", "A flask-sse channel's stream",
                "flask-sse's own URL and query, for its existing EventSource clients: the "
                "events that `sse.publish(data, type=, id=, retry=, channel=)` of the "
                "`flask-sse` package sends into the shared Redis, and those of "
                "`POST /api/channels/{channel}/events`. Live only, as with flask-sse: "
                "nothing is stored, `Last-Event-ID` is ignored. Logged-in callers may read "
                "the channels of `CHAT_SSE_CHANNELS` (default: all); those of "
                "`CHAT_SSE_PUBLIC_CHANNELS` (default: none) need no login, but a "
                "credential that is sent must be good. Pages of "
                "`CHAT_SSE_CORS_ORIGINS` may read it from their own site.",
                merge({"200": {
                    "description": "The stream. Once subscribed: `: stream open` and "
                                   "`retry: <CHAT_RETRY_MS>`; then each published event "
                                   "as flask-sse frames it (`event:` its type, `data:` "
                                   "the text or the JSON of the data, `id:` and "
                                   "`retry:` if given), but a type or id that would "
                                   "break the frame drops that event; a `:` heartbeat "
                                   "after `CHAT_HEARTBEAT_SECONDS` idle.",
                    "headers": STREAM_HEADERS,
                    "content": {"text/event-stream": {"schema": {
                        "type": "string", "description": "Server-Sent Events."}}}}},
                    errors(*AUTH, (400, "invalid_channel"), (404, "channel_not_found"),
                           *SERVER)),
                params=[{"name": "channel", "in": "query", "required": False,
                         "description": "The Redis channel flask-sse publishes to; absent "
                                        "or empty: `sse`, flask-sse's default.",
                         "schema": CHANNEL_SCHEMA}],
                security=[*STREAM_SECURITY, {}]),
        },
        "/api/channels/{channel}/events": {"post": op(
            "publishToChannel", "flask-sse", "Publish to a flask-sse channel",
            "Admins only. Sends the event to the Redis channel exactly as flask-sse's "
            "`sse.publish()` would (`{data, type?, id?, retry?}` as JSON), so readers of "
            "`GET /stream?channel=` here and flask-sse's own `/stream` both get it. Live "
            "only: nothing is stored, and a reader that is not connected misses it.",
            merge(ok("Sent to whoever reads the channel now.", obj({
                "channel": {"type": "string"},
                "message": obj({"data": {}, "type": {"type": "string"},
                                "id": {"type": "string"},
                                "retry": {"type": "integer", "minimum": 1}}, ["data"]),
            }), 202),
                errors(*AUTH, *CSRF, (403, "forbidden", "The caller is not an admin."),
                       *BODY, (400, "missing_field"),
                       (400, "invalid_field", "`type`, `id` or `retry`."),
                       (400, "invalid_channel"), (404, "channel_not_found"),
                       (404, "not_found", "The path does not match a route."),
                       (503, "broker_unavailable"), *SERVER)),
            params=[path_param("channel", CHANNEL_SCHEMA, "The Redis channel.", "news")],
            request=body(obj({
                "data": {"description": "Any JSON value: a string is sent as it is, "
                                        "anything else as its JSON."},
                "type": frame_field(100, "The event type (`event:`); empty or null: "
                                         "none, so readers see a `message`."),
                "id": frame_field(200, "The event id (`id:`); empty or null: none."),
                "retry": {"type": ["integer", "null"], "minimum": 1,
                          "maximum": 86400000,
                          "description": "The reconnect delay to announce, in ms."},
            }, ["data"], closed=False), obj({
                "data": {"type": "string", "description": "The text to send."},
                "type": {**frame_field(100, "The event type."), "type": "string"},
                "id": {**frame_field(200, "The event id."), "type": "string"},
                "retry": {"type": "string", "pattern": r"^([1-9][0-9]{0,7})?$",
                          "description": "Milliseconds, 1–86400000; empty: none."},
            }, ["data"], closed=False), example={"data": {"build": 42, "state": "passed"},
                                                  "type": "build"}))},
        DOCUMENT_PATH: {"get": op(
            "getOpenApiDocument", "Documentation", "This OpenAPI document", "",
            merge(ok("The OpenAPI 3.1 document.", {"type": "object"}), errors(*SERVER)),
            security=PUBLIC)},
        DOCS_PATH: {"get": op(
            "getApiDocs", "Documentation", "This reference as a web page",
            "Generated on the server from the OpenAPI document; no script.",
            merge(ok("The page.", {"type": "string"}, media_type="text/html"),
                  errors(*SERVER)),
            security=PUBLIC)},
    }
    return paths


DESCRIPTION = """\
A real-time chat and notification service: rooms, direct messages, notifications, and \
Server-Sent Events streams that resume exactly where they stopped.

Responses are JSON, except `204 No Content` and the streams (`text/event-stream`). \
Errors are `{"error": {"code", "message", "field"?}}`: match on `code`; `field` names the \
one input that was wrong. An unknown URL under `/api/` is `404 not_found`; a known URL \
with the wrong method is `405 method_not_allowed` with an `Allow` header.

Authentication, the first present wins: `Authorization: Bearer <token>` (if present it \
decides: another scheme or an empty token is `401 not_authenticated`, a bad token \
`401 invalid_token`); on stream URLs only, `?access_token=<token>`; the session cookie \
`chat_session` (from `POST /api/session`). A cookie-authenticated request other than \
GET/HEAD/OPTIONS from another site (`Sec-Fetch-Site` not `same-origin`/`none`, or an \
`Origin` whose host differs) is `403 cross_site_request`.

Names of users and rooms: 1–32 characters of `a-z`, `0-9`, `_`, `.`, `-`, starting with a \
letter or digit. A direct-message room is `<a>~<b>`, the two names in sorted order. Times \
are ISO 8601 UTC with milliseconds and `Z`. String fields are trimmed (not passwords, not \
message text) and must not contain NUL; optional ones take `null` for absent. Booleans: \
JSON `true`/`false` or the strings `1`/`true`/`on`, `0`/`false`/`off`/empty (any case). \
Request bodies over max(1 MiB, 8 × `CHAT_MAX_MESSAGE_BYTES`) are `413 too_large`."""


def _package_version() -> str:
    try:
        return metadata.version("chat")
    except metadata.PackageNotFoundError:
        return "0.1.0"


@lru_cache(maxsize=8)
def build_document(max_message_bytes: int = 16384) -> dict[str, Any]:
    """The OpenAPI document (built once per message limit; treat it as read-only)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chat service API",
            "version": _package_version(),
            "summary": "Rooms, direct messages, notifications and SSE streams.",
            "description": DESCRIPTION,
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [
            {"name": "Identity", "description": "Accounts, sessions and API tokens."},
            {"name": "Rooms", "description": "Rooms, membership, read markers, typing, "
                                             "presence."},
            {"name": "Messages", "description": "Sending, history, edits and deletes."},
            {"name": "Direct messages and notifications",
             "description": "What is sent to a person."},
            {"name": "Webhooks", "description": "Incoming webhooks: a secret URL that "
                                                "posts into one room as a bot."},
            {"name": "Streams", "description": "Server-Sent Events "
                                               "(`text/event-stream`)."},
            {"name": "flask-sse", "description": "For apps built on the `flask-sse` "
                                                 "package: its stream URL, and publishing "
                                                 "to its channels over HTTP."},
            {"name": "Operations", "description": "Health checks and metrics for load "
                                                  "balancers and monitoring."},
            {"name": "Documentation", "description": "This document and its page."},
        ],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": _paths(max_message_bytes),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "chat token",
                    "description": "`Authorization: Bearer chat_<keyid>_<secret>`: an API "
                                   "token (`POST /api/tokens`, or the CLI `create-token`) "
                                   "or a session's value.",
                },
                "sessionCookie": {
                    "type": "apiKey", "in": "cookie", "name": "chat_session",
                    "description": "The browser session from `POST /api/session`. State "
                                   "changes are checked for cross-site requests.",
                },
                "streamToken": {
                    "type": "apiKey", "in": "query", "name": "access_token",
                    "description": "Stream URLs only (EventSource cannot set headers); "
                                   "ignored elsewhere.",
                },
            },
        },
    }


def _message_limit() -> int:
    """The document depends on the configuration only through the message size limit."""
    return int(current_app.config.get("CHAT_MAX_MESSAGE_BYTES", 16384))


@lru_cache(maxsize=8)
def _document_bytes(max_message_bytes: int) -> bytes:
    return json.dumps(build_document(max_message_bytes), ensure_ascii=False).encode()


@bp.get(DOCUMENT_PATH)
def openapi_document() -> Response:
    response = Response(_document_bytes(_message_limit()), mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache"
    return response


# --------------------------------------------------------------------------- the HTML page

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;
color:#1d1d1f;background:#fff}
@media (prefers-color-scheme:dark){body{color:#e8e8e8;background:#18181a}
a{color:#8ab4f8}table,th,td{border-color:#444}code,pre{background:#26262a}}
h1{font-size:1.6rem}h2{margin-top:2.5rem;border-bottom:1px solid #8884}
h3{margin-top:2rem}h3 .method{font-family:ui-monospace,monospace;padding:.1rem .4rem;
border-radius:.3rem;background:#8882;margin-right:.4rem}
code,pre{font-family:ui-monospace,monospace;font-size:.9em;background:#f3f3f5;
border-radius:.2rem}code{padding:0 .2rem}pre{padding:.5rem;overflow:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{font-weight:600}.req{color:#b3261e}.muted{opacity:.75}
ul.toc{columns:2}ul.schema{margin:.2rem 0;padding-left:1.2rem}
"""

_CODE_RE = re.compile(r"`([^`]+)`")


def _text(value: str) -> Markup:
    """Escaped text, with `code` spans and paragraphs."""
    paragraphs = [p for p in str(value).split("\n\n") if p.strip()]
    out = []
    for paragraph in paragraphs:
        escaped = str(escape(paragraph))
        out.append("<p>" + _CODE_RE.sub(r"<code>\1</code>", escaped) + "</p>")
    return Markup("".join(out))


def _inline(value: str) -> Markup:
    return Markup(_CODE_RE.sub(r"<code>\1</code>", str(escape(value))))


def _anchor(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-")


def _ref_name(schema: Schema) -> str | None:
    target = schema.get("$ref")
    if isinstance(target, str) and target.startswith("#/components/schemas/"):
        return target.rsplit("/", 1)[1]
    return None


def _constraints(schema: Schema) -> list[str]:
    notes = []
    for key, label in (("minLength", "min length"), ("maxLength", "max length"),
                       ("minimum", "≥"), ("maximum", "≤")):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        notes.append(f"pattern {schema['pattern']}")
    if "format" in schema:
        notes.append(f"format {schema['format']}")
    if "enum" in schema:
        notes.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    if "const" in schema:
        notes.append("always " + json.dumps(schema["const"]))
    if "default" in schema:
        notes.append("default " + json.dumps(schema["default"]))
    return notes


def _type_of(schema: Schema) -> Markup:
    """A short type: a link to a named schema, or the JSON types."""
    name = _ref_name(schema)
    if name:
        return Markup('<a href="#{}">{}</a>').format(_anchor("schema", name), name)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return Markup(" | ").join(_type_of(s) for s in schema[key])
    if "allOf" in schema:
        return Markup(" &amp; ").join(_type_of(s) for s in schema["allOf"]
                                      if _ref_name(s) or "type" in s) or Markup("object")
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    parts = []
    for k in kinds:
        if k == "array" and "items" in schema:
            parts.append(Markup("array of {}").format(_type_of(schema["items"])))
        else:
            parts.append(escape(k))
    return Markup(" | ").join(parts)


def _schema_html(schema: Schema) -> Markup:
    """A schema: its type and constraints, and for objects a table of the properties."""
    parts = [Markup("<p>{}</p>").format(_type_of(schema))]
    notes = _constraints(schema)
    if notes:
        parts.append(Markup('<p class="muted">{}</p>').format("; ".join(notes)))
    if schema.get("description"):
        parts.append(_text(schema["description"]))
    props = schema.get("properties")
    if schema.get("type") == "object" and props:
        parts.append(_properties(schema))
    elif schema.get("type") == "array" and isinstance(schema.get("items"), dict) and \
            schema["items"].get("properties"):
        parts.append(_properties(schema["items"]))
    return Markup("").join(parts)


def _properties(schema: Schema) -> Markup:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        cells = [_inline(prop.get("description", ""))] if prop.get("description") else []
        notes = _constraints(prop)
        if notes:
            cells.append(Markup('<span class="muted">{}</span>').format("; ".join(notes)))
        nested = prop.get("items") if prop.get("type") == "array" else prop
        if isinstance(nested, dict) and nested.get("type") == "object" and \
                nested.get("properties"):
            cells.append(_properties(nested))
        rows.append(Markup("<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>").format(
            name, Markup(' <span class="req">required</span>') if name in required else "",
            _type_of(prop), Markup("<br>").join(cells)))
    closed = "" if schema.get("additionalProperties") is not False else \
        Markup('<p class="muted">No other properties.</p>')
    return Markup("<table><tr><th>field</th><th>type</th><th>about</th></tr>{}</table>{}"
                  ).format(Markup("").join(rows), closed)


def _operation_html(path: str, method: str, operation: Schema,
                    default_security: list[Schema]) -> Markup:
    anchor = _anchor("op", method, path)
    out = [Markup('<section id="{}"><h3><span class="method">{}</span><code>{}</code></h3>'
                  ).format(anchor, method.upper(), path),
           Markup("<p><strong>{}</strong></p>").format(operation.get("summary", ""))]
    if operation.get("description"):
        out.append(_text(operation["description"]))
    security = operation.get("security", default_security)
    if security:
        names = ", ".join(name for requirement in security for name in requirement)
        out.append(Markup('<p>Authentication: {} (<a href="#authentication">how</a>).</p>'
                          ).format(names))
    else:
        out.append(Markup("<p>No authentication.</p>"))
    params = operation.get("parameters", [])
    if params:
        rows = Markup("").join(
            Markup("<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
                   ).format(p["name"], Markup(' <span class="req">required</span>')
                            if p.get("required") else "", p["in"], _type_of(p["schema"]),
                            Markup("<br>").join([_inline(p.get("description", "")),
                                                 escape("; ".join(_constraints(p["schema"])))]))
            for p in params)
        out.append(Markup("<h4>Parameters</h4><table><tr><th>name</th><th>in</th>"
                          "<th>type</th><th>about</th></tr>{}</table>").format(rows))
    request = operation.get("requestBody")
    if request:
        out.append(Markup("<h4>Request body</h4>"))
        out.append(_text(request.get("description", "")))
        for media_type, media in request["content"].items():
            out.append(Markup("<p><code>{}</code></p>").format(media_type))
            out.append(_schema_html(media["schema"]))
            if "example" in media:
                out.append(Markup("<pre>{}</pre>").format(json.dumps(media["example"])))
    out.append(Markup("<h4>Responses</h4>"))
    rows = []
    for status, response in operation["responses"].items():
        content = response.get("content", {})
        kinds = Markup("<br>").join(
            Markup("<code>{}</code>: {}").format(mt, _type_of(m["schema"]))
            for mt, m in content.items()) if content else Markup("no body")
        headers = response.get("headers", {})
        if headers:
            kinds += Markup("<br>headers: ") + Markup(", ").join(
                Markup("<code>{}</code>").format(h) for h in headers)
        rows.append(Markup("<tr><td>{}</td><td>{}</td><td>{}</td></tr>").format(
            status, _text(response["description"]), kinds))
    out.append(Markup("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{}"
                      "</table></section>").format(Markup("").join(rows)))
    return Markup("").join(out)


def render_page(document: dict[str, Any], nonce: str) -> str:
    """The whole reference as one HTML page; every value from the document is escaped."""
    info = document["info"]
    default_security = document.get("security", [])
    toc, sections = [], []
    by_tag: dict[str, list[tuple[str, str, Schema]]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            tag = (operation.get("tags") or ["Other"])[0]
            by_tag.setdefault(tag, []).append((path, method, operation))
    tag_text = {t["name"]: t.get("description", "") for t in document.get("tags", [])}
    order = list(tag_text)
    for tag, operations in sorted(by_tag.items(), key=lambda item: order.index(item[0])
                                  if item[0] in order else len(order)):
        toc.append(Markup('<li><a href="#{}">{}</a><ul>{}</ul></li>').format(
            _anchor("tag", tag), tag, Markup("").join(
                Markup('<li><a href="#{}"><code>{} {}</code></a></li>').format(
                    _anchor("op", method, path), method.upper(), path)
                for path, method, _ in operations)))
        sections.append(Markup('<h2 id="{}">{}</h2>{}').format(
            _anchor("tag", tag), tag, _text(tag_text.get(tag, ""))))
        sections.extend(_operation_html(path, method, operation, default_security)
                        for path, method, operation in operations)
    schemes = document["components"].get("securitySchemes", {})
    auth = Markup("").join(
        Markup("<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>").format(
            name, " ".join(str(scheme.get(k, "")) for k in ("type", "scheme", "in", "name")),
            _inline(scheme.get("description", "")))
        for name, scheme in schemes.items())
    schemas = Markup("").join(
        Markup('<section id="{}"><h3>{}</h3>{}</section>').format(
            _anchor("schema", name), name, _schema_html(schema))
        for name, schema in document["components"]["schemas"].items())
    page = Markup(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title}</title><style nonce="{nonce}">{style}</style></head><body>'
        "<h1>{title} <small>{version}</small></h1>{description}"
        '<p>Machine-readable: <a href="{doc}"><code>{doc}</code></a> (OpenAPI {oas}).</p>'
        '<ul class="toc"><li><a href="#authentication">Authentication</a></li>{toc}'
        '<li><a href="#schemas">Schemas</a></li></ul>'
        '<h2 id="authentication">Authentication</h2>'
        "<table><tr><th>scheme</th><th>kind</th><th>about</th></tr>{auth}</table>"
        '{sections}<h2 id="schemas">Schemas</h2>{schemas}</body></html>'
    ).format(title=info["title"], version=info["version"], nonce=nonce,
             style=Markup(STYLE), description=_text(info.get("description", "")),
             doc=DOCUMENT_PATH, oas=document["openapi"], toc=Markup("").join(toc),
             auth=auth, sections=Markup("").join(sections), schemas=schemas)
    return str(page)


_NONCE_SLOT = "NONCE-SLOT-7f3a"


@lru_cache(maxsize=8)
def _page_parts(max_message_bytes: int) -> tuple[str, str]:
    """The page, rendered once, split where the per-response nonce goes."""
    page = render_page(copy.deepcopy(build_document(max_message_bytes)), _NONCE_SLOT)
    before, _, after = page.partition(f'nonce="{_NONCE_SLOT}"')
    return before, after


@bp.get(DOCS_PATH)
def api_docs() -> Response:
    nonce = secrets.token_urlsafe(16)
    before, after = _page_parts(_message_limit())
    response = Response(f'{before}nonce="{nonce}"{after}', mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response
