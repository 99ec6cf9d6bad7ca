"""Stream positions and the opaque `id:` strings that encode them.

A single-channel stream's cursor is its seq in decimal. A multi-channel stream's cursor
holds every channel's position as `<channel id>.<seq>` pairs in base 36, joined by `_`
and sorted by channel id, for example `1.0_2.rs_a.1`.
"""

from __future__ import annotations

import re
from bisect import insort
from collections.abc import Mapping

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


def encode_positions(positions: Mapping[int, int]) -> str:
    """Encode {channel id: seq} as a multi-channel cursor."""
    return "_".join(f"{_b36(cid)}.{_b36(seq)}" for cid, seq in sorted(positions.items()))


class Positions(dict[int, int]):
    """{channel id: seq} that keeps its cursor text up to date one pair at a time, as a
    stream re-encodes it for every event it sends."""

    __slots__ = ("_pairs", "_order")

    def __init__(self, initial: Mapping[int, int] | None = None) -> None:
        super().__init__(initial or {})
        # Built on the first encode(): a one-room stream never needs them.
        self._pairs: dict[int, str] | None = None
        self._order: list[int] | None = None

    def __setitem__(self, cid: int, seq: int) -> None:
        if self._pairs is not None and self._order is not None:
            if cid not in self:
                insort(self._order, cid)
            self._pairs[cid] = f"{_b36(cid)}.{_b36(seq)}"
        super().__setitem__(cid, seq)

    def __delitem__(self, cid: int) -> None:
        super().__delitem__(cid)
        if self._pairs is not None and self._order is not None:
            self._order.remove(cid)
            del self._pairs[cid]

    def pop(self, cid: int, *default: int) -> int:  # type: ignore[override]
        if cid in self:
            seq = self[cid]
            del self[cid]
            return seq
        return super().pop(cid, *default)

    def encode(self) -> str:
        if self._pairs is None or self._order is None:
            self._order = sorted(self)
            self._pairs = {cid: f"{_b36(cid)}.{_b36(seq)}" for cid, seq in self.items()}
        pairs = self._pairs
        return "_".join([pairs[cid] for cid in self._order])


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
