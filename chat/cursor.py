"""Stream positions and the opaque `id:` strings that encode them.

A single-channel stream's cursor is its seq in decimal. A multi-channel stream's cursor
holds every channel's position as `<channel id>.<seq>` pairs in base 36, joined by `_`
and sorted by channel id, for example `1.0_2.rs_a.1`.
"""

from __future__ import annotations

import re

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIR = re.compile(r"^([0-9a-z]{1,12})\.([0-9a-z]{1,12})$")
MAX_CURSOR_LENGTH = 8192


class CursorError(ValueError):
    """The cursor cannot be read."""


def _b36(number: int) -> str:
    if number == 0:
        return "0"
    digits = []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_DIGITS[rest])
    return "".join(reversed(digits))


def encode_positions(positions: dict[int, int]) -> str:
    """Encode {channel id: seq} as a multi-channel cursor."""
    return "_".join(f"{_b36(cid)}.{_b36(seq)}" for cid, seq in sorted(positions.items()))


def decode_positions(cursor: str) -> dict[int, int]:
    """Read a multi-channel cursor; raises CursorError if it is not one."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError("empty or oversized cursor")
    positions: dict[int, int] = {}
    for part in cursor.split("_"):
        match = _PAIR.match(part)
        if not match:
            raise CursorError(f"malformed cursor part {part[:20]!r}")
        cid, seq = int(match.group(1), 36), int(match.group(2), 36)
        if cid in positions:
            raise CursorError("channel repeated in cursor")
        positions[cid] = seq
    return positions


def encode_seq(seq: int) -> str:
    """A single-channel cursor."""
    return str(seq)


def decode_seq(cursor: str) -> int:
    """Read a single-channel cursor; raises CursorError if it is not one."""
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
        raise CursorError("a room stream's cursor is a decimal seq")
    return int(cursor)
