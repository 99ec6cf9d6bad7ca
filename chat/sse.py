"""The text/event-stream wire format: frames that no input can forge."""

from __future__ import annotations

import re

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
