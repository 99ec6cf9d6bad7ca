"""Reading text/event-stream in tests: a reference parser and a test-client reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Frame:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


class FrameParser:
    """Incremental parser following the HTML standard's event stream interpretation."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk.decode("utf-8")
        out: list[Frame] = []
        while True:
            idx = min((i for i in (self._buffer.find("\r"), self._buffer.find("\n")) if i >= 0),
                      default=-1)
            if idx < 0:
                return out
            line = self._buffer[:idx]
            skip = 2 if self._buffer[idx:idx + 2] == "\r\n" else 1
            if self._buffer[idx] == "\r" and idx + 1 == len(self._buffer):
                return out  # wait: the LF may follow
            self._buffer = self._buffer[idx + skip:]
            frame = self._line(line)
            if frame is not None:
                out.append(frame)

    def _line(self, line: str) -> Frame | None:
        if line == "":
            if self._id is not None:
                self.last_id = self._id
            if not self._data and self._event is None:
                self._id = None
                return None
            frame = Frame(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = None, [], None
            return frame
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


def parse_frames(stream: bytes) -> list[Frame]:
    return FrameParser().feed(stream + b"\n\n")


class ClientStream:
    """Reads a Flask test-client streaming response frame by frame."""

    def __init__(self, response: Any, ignore: tuple[str, ...] = ("presence",)) -> None:
        """ignore: event types skipped (by default presence, which comes and goes with
        every stream a test opens)."""
        assert response.status_code == 200, response.get_data(as_text=True)
        self.response = response
        self.ignore = ignore
        self._chunks: Iterator[bytes] = iter(response.response)
        self.parser = FrameParser()
        self._pending: list[Frame] = []
        self.ended = False

    def next(self, max_chunks: int = 20) -> Frame | None:
        """The next frame, reading at most max_chunks chunks (heartbeats count); None if
        none came (or the stream ended)."""
        for _ in range(max_chunks):
            if self._pending:
                return self._pending.pop(0)
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.ended = True
                return None
            self._pending.extend(f for f in self.parser.feed(chunk)
                                 if f.event not in self.ignore)
        return self._pending.pop(0) if self._pending else None

    def take(self, count: int, event: str | None = None, max_chunks: int = 40) -> list[Frame]:
        frames: list[Frame] = []
        while len(frames) < count:
            frame = self.next(max_chunks)
            if frame is None:
                break
            if event is None or frame.event == event:
                frames.append(frame)
        return frames

    def close(self) -> None:
        self.response.close()
