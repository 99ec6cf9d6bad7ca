"""Request parsing and validation: every bad input becomes a 4xx with the contract's body."""

from __future__ import annotations

import re
from typing import Any

from flask import request

from .errors import ApiError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def read_body(form_ok: bool = False, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a dict: JSON, or (where allowed) an HTML form."""
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # nested past Python's limit: not a body we accept
            data = None
        if data is None:
            raise ApiError(400, "invalid_json", "The body is not valid JSON.")
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "The body must be a JSON object.")
        return data
    if form_ok and mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    if empty_ok and not request.content_length and not request.stream.read(1):
        return {}
    allowed = "application/json" + (" or a form body" if form_ok else "")
    raise ApiError(415, "unsupported_media_type", f"Send {allowed}.")


def string(
    body: dict[str, Any],
    field: str,
    *,
    required: bool = True,
    max_length: int = 200,
    min_length: int = 0,
    strip: bool = True,
) -> str | None:
    """A string field; None when absent and optional."""
    value = body.get(field)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"'{field}' is required.", field)
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{field}' must be a string.", field)
    if strip:
        value = value.strip()
    if "\0" in value:
        raise ApiError(400, "invalid_field", f"'{field}' must not contain NUL.", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, sent as a JSON escape such as \ud800
        raise ApiError(400, "invalid_field", f"'{field}' is not valid Unicode.", field) from None
    if len(value) < min_length:
        need = "must not be empty" if min_length == 1 else \
            f"needs at least {min_length} characters"
        raise ApiError(400, "invalid_field", f"'{field}' {need}.", field)
    if len(value) > max_length:
        raise ApiError(
            400, "invalid_field", f"'{field}' is longer than {max_length} characters.", field
        )
    return value


def name(body: dict[str, Any], field: str = "name") -> str:
    """A user or room name, by the naming rule."""
    value = string(body, field, max_length=1000, strip=False)
    assert value is not None
    return check_name(value, field)


def check_name(value: str, field: str = "name") -> str:
    """Raise unless value is a valid user or room name."""
    if not NAME_RE.fullmatch(value):
        raise ApiError(
            400,
            "invalid_name",
            "Names are 1-32 characters of a-z, 0-9, '_', '.', '-', starting with a letter "
            "or digit.",
            field,
        )
    return value


def room_ref(value: str, field: str = "room") -> str:
    """A room in a URL: a room name, or a direct-message room `<user>~<user>`."""
    left, sep, right = value.partition("~")
    if sep:
        if not (NAME_RE.fullmatch(left) and NAME_RE.fullmatch(right) and left < right):
            raise ApiError(400, "invalid_name",
                           "A direct-message room is '<user>~<user>', names in order.", field)
        return value
    return check_name(value, field)


def dm_room(a: str, b: str) -> str:
    """The name of the direct-message room of two users."""
    return "~".join(sorted((a, b)))


def boolean(body: dict[str, Any], field: str, default: bool = False) -> bool:
    """A boolean field (JSON true/false; forms may say 1/0, true/false)."""
    value = body.get(field, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "on", "0", "false", "off", ""):
        return value.lower() in ("1", "true", "on")
    raise ApiError(400, "invalid_field", f"'{field}' must be true or false.", field)


def integer(body: dict[str, Any], field: str, *, minimum: int = 0,
            maximum: int = 2**62) -> int:
    """A required whole-number field (forms may send it as digits)."""
    value = body.get(field)
    if value is None:
        raise ApiError(400, "missing_field", f"'{field}' is required.", field)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "invalid_field", f"'{field}' must be a whole number.", field)
    if not minimum <= value <= maximum:
        raise ApiError(400, "invalid_field", f"'{field}' is out of range.", field)
    return value


def query_int(arg: str, *, default: int | None = None, minimum: int = 0,
              maximum: int | None = None) -> int | None:
    """An integer query argument."""
    raw = request.args.get(arg)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "invalid_parameter", f"'{arg}' must be a whole number.", arg)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" between {minimum} and {maximum}" if maximum is not None else f" ≥ {minimum}"
        raise ApiError(400, "invalid_parameter", f"'{arg}' must be{bound}.", arg)
    return value
