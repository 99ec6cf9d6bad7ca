"""flask-sse compatibility: its stream URL, fed by what its publishers send into Redis.

Apps built on the `flask-sse` package publish with `sse.publish(data, type=..., channel=...)`,
which sends a JSON message to the Redis pub/sub channel of that name (default "sse"), and
their EventSource clients read `GET /stream?channel=<name>`. This module serves that URL:
the per-worker hub subscribes to the channel once for all its clients (flask-sse opens a
Redis connection per client), frames each message once and safely, and heartbeats keep
idle connections open through proxies.

Delivery follows flask-sse's model: live only. These events are not stored, so there is
no history and no resume (Last-Event-ID is ignored, as flask-sse ignores it); durable
messages belong in rooms and notifications.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import metrics
from . import validation as v
from .accounts import Principal
from .auth import current_principal, require_principal
from .errors import ApiError
from .extension import chat_extension
from .hub import BROKER_PREFIX, COMPAT_PREFIX, Hub, LiveEvent, Subscriber
from .sse import flask_sse_message
from .streams import Pump, event_stream_response

log = logging.getLogger(__name__)

bp = Blueprint("compat", __name__)

DEFAULT_CHANNEL = "sse"  # flask-sse's default
MAX_CHANNEL_LENGTH = 200
# 1-200 characters, no control characters (C0, DEL, C1); chat/openapi.py states the same.
CHANNEL_CHAR = r"[^\x00-\x1f\x7f-\x9f]"
CHANNEL_RE = re.compile(f"{CHANNEL_CHAR}{{1,{MAX_CHANNEL_LENGTH}}}")
# Redis channels this service or Redis itself use: never served or published to.
RESERVED_PREFIXES = (BROKER_PREFIX, "__")
MAX_RETRY_MS = 24 * 3600 * 1000


def check_channel(name: str) -> str:
    """A flask-sse channel name this service may serve, or a 4xx."""
    if not CHANNEL_RE.fullmatch(name):
        raise ApiError(400, "invalid_channel",
                       f"A channel name is 1-{MAX_CHANNEL_LENGTH} characters, none of them "
                       "a control character.", "channel")
    if name.startswith(RESERVED_PREFIXES):
        raise ApiError(400, "invalid_channel",
                       "Channel names starting with 'chat:' or '__' are reserved.", "channel")
    if not _matches(name, current_app.config["CHAT_SSE_CHANNELS"]):
        raise ApiError(404, "channel_not_found", "No such channel here.", "channel")
    return name


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@bp.get("/stream")
def stream() -> Response:
    """flask-sse's stream: `?channel=` (default "sse")."""
    channel = check_channel(request.args.get("channel") or DEFAULT_CHANNEL)
    config = current_app.config
    if _matches(channel, config["CHAT_SSE_PUBLIC_CHANNELS"]):
        # Open to anyone; a credential that is sent must still be good.
        principal = current_principal(allow_query_token=True)
    else:
        principal = require_principal(allow_query_token=True)
    ext = chat_extension()
    compat = CompatStream(channel, principal, ext.hub, config,
                          request.environ.get("gunicorn.socket"))
    return event_stream_response(compat.frames())


@bp.after_request
def _cors(response: Response) -> Response:
    """Pages of the sites in CHAT_SSE_CORS_ORIGINS may read /stream (without cookies: a
    cross-site reader sends ?access_token= or reads a public channel). An EventSource
    that resumes sends Last-Event-ID, which the browser asks leave for first (OPTIONS)."""
    if request.endpoint != "compat.stream":
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["CHAT_SSE_CORS_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET"
            response.headers["Access-Control-Allow-Headers"] = "Last-Event-ID, Cache-Control"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.post("/api/channels/<path:channel>/events")
def publish(channel: str) -> tuple[Response, int]:
    """Publish one event to a flask-sse channel, as `sse.publish()` would (admins only)."""
    principal = require_principal()
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "Only an admin may publish to a channel.")
    channel = check_channel(channel)
    body = v.read_body(form_ok=True)
    if "data" not in body:
        raise ApiError(400, "missing_field", "'data' is required.", "data")
    data = body["data"]
    type_ = _frame_field(body, "type", 100)
    event_id = _frame_field(body, "id", 200)
    retry = v.integer(body, "retry", minimum=1, maximum=MAX_RETRY_MS) \
        if body.get("retry") not in (None, "") else None
    payload = flask_sse_message(data, type_, event_id, retry)
    try:
        chat_extension().broker.publish(channel, payload)
    except Exception as exc:  # nothing stores these events: say so rather than drop them
        log.warning("publish to flask-sse channel %s failed: %s", channel, exc)
        raise ApiError(503, "broker_unavailable",
                       "The broker cannot be reached; nothing was published.") from None
    message: dict[str, Any] = {"data": data}
    message.update({k: val for k, val in (("type", type_), ("id", event_id),
                                           ("retry", retry)) if val})
    return jsonify({"channel": channel, "message": message}), 202


def _frame_field(body: dict[str, Any], field: str, max_length: int) -> str | None:
    value = v.string(body, field, required=False, max_length=max_length, strip=False)
    if not value:
        return None
    if "\r" in value or "\n" in value:
        raise ApiError(400, "invalid_field", f"'{field}' must be one line.", field)
    return value


class CompatStream(Pump):
    """One flask-sse client: the channel's live events, heartbeats, nothing stored."""

    __slots__ = ("channel",)

    def __init__(self, channel: str, principal: Principal | None, hub: Hub, config: Any,
                 sock: Any = None) -> None:
        # The credential is checked again by the hub's access sweep and ends with a
        # revocation; no viewer, as reading a channel is not being online in the chat.
        super().__init__(hub, config, Subscriber(
            max_queue=int(config["CHAT_CLIENT_QUEUE_SIZE"]),
            credential_key=principal.key_id if principal else None,
            user_id=principal.user_id if principal else None, sock=sock))
        self.channel = channel

    def describe(self) -> str:
        return f"flask-sse stream of {self.channel}"

    def opening(self) -> Iterator[bytes]:
        # Subscribed (and confirmed by the broker) before the first byte: a client that
        # has seen the stream open gets everything published after that.
        self.hub.attach(self.sub, {COMPAT_PREFIX + self.channel: None})
        yield self.open_comment()

    def render(self, items: list[Any]) -> bytes:
        events = [item for item in items if type(item) is LiveEvent]
        metrics.TALLY.delivered += len(events)
        return b"".join(event.body + b"\n" for event in events)
