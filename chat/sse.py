"""The text/event-stream wire format: frames that no input can forge."""

from __future__ import annotations

import json
import re
from typing import Any

_FORBIDDEN = re.compile(r"[\r\n\0]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class FrameError(ValueError):
    """A field value would break the frame (CR, LF or NUL in event or id)."""


def _check(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise FrameError(f"SSE {name} must not contain CR, LF or NUL")
    return value


def encode_body(event: str | None, data: str | None) -> bytes:
    """The `event:` and `data:` lines of a frame, without its id or its closing blank line."""
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {_check('event', event)}\n")
    if data is not None:
        # Every line break in the data becomes a new data: line; the client joins them with LF.
        for line in _LINE_BREAK.split(data):
            parts.append(f"data: {line}\n")
    return "".join(parts).encode("utf-8")


def encode_id(event_id: str) -> bytes:
    """An `id:` line."""
    return f"id: {_check('id', event_id)}\n".encode()


def encode_event(
    event: str | None = None,
    data: str | None = None,
    event_id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """A whole frame, closed by a blank line."""
    frame = encode_body(event, data)
    if event_id is not None:
        frame += encode_id(event_id)
    if retry_ms is not None:
        frame += f"retry: {int(retry_ms)}\n".encode()
    return frame + b"\n"


def encode_comment(text: str = "") -> bytes:
    """A comment frame; clients ignore it, proxies see traffic."""
    safe = _LINE_BREAK.sub(" ", text).replace("\0", "")
    return f":{' ' + safe if safe else ''}\n\n".encode()


# -- flask-sse's Redis messages -----------------------------------------------------------
# The flask-sse package publishes each event to a Redis channel as the JSON object
# {"data": <any JSON>, "type"?: str, "id"?: str, "retry"?: int} (its Message.to_dict()).


def flask_sse_message(data: Any, type_: str | None = None, event_id: str | None = None,
                      retry_ms: int | None = None) -> bytes:
    """The Redis payload flask-sse's `sse.publish()` would send for this event."""
    message: dict[str, Any] = {"data": data}
    if type_:
        message["type"] = type_
    if event_id:
        message["id"] = event_id
    if retry_ms:
        message["retry"] = retry_ms
    return json.dumps(message).encode()


def flask_sse_frame(payload: bytes) -> tuple[str | None, bytes]:
    """A flask-sse Redis payload as (event type, frame without its closing blank line).

    The frame says what flask-sse's own stream would say, but safely: a type or id that
    would break the frame raises FrameError instead of forging lines, and text data is
    split on the line breaks EventSource knows (CR, LF, CRLF), so the client reads back
    exactly the text that was published. Raises ValueError for anything but such a message.
    """
    message = json.loads(payload)
    if not isinstance(message, dict) or "data" not in message:
        raise ValueError("not a flask-sse message: no 'data'")
    data = message["data"]
    text = data if isinstance(data, str) else json.dumps(data)
    type_ = _optional_text(message.get("type"), "type")
    event_id = _optional_text(message.get("id"), "id")
    frame = encode_body(type_, text)
    if event_id:
        frame += encode_id(event_id)
    retry = message.get("retry")
    if isinstance(retry, int) and not isinstance(retry, bool) and retry > 0:
        frame += f"retry: {retry}\n".encode()
    return type_, frame


def _optional_text(value: Any, name: str) -> str | None:
    """flask-sse leaves a field out when it is falsy; other scalars become their text."""
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, bool | int | float | str):
        return _check(name, str(value))
    raise ValueError(f"flask-sse '{name}' must be a string")
