"""A small text/event-stream client for the end-to-end tests.

The parser follows the HTML standard's event-stream interpretation on raw bytes (lines end
with CRLF, LF or a lone CR, even when a CR and its LF arrive in different reads). A
background thread reads the response and feeds a queue, so every wait in a test has a
timeout and a silent server can never hang the suite.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests


class SSEError(AssertionError):
    """Raised when a stream does not deliver what a test waits for."""


class StreamTimeout(SSEError):
    """No event arrived within the timeout."""


class StreamEnded(SSEError):
    """The response body ended (cleanly or not) while a test waited for an event."""


@dataclass
class Event:
    """One dispatched event."""

    event: str
    data: str
    id: str | None  # the value of an `id:` field inside this frame, None if it had none
    last_event_id: str  # the stream's last event ID after this event (the spec's notion)
    received_at: float  # time.monotonic() when dispatched
    connection: int  # which (re)connection of the client delivered it, from 0

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Comment:
    text: str
    received_at: float
    connection: int


@dataclass
class _End:
    error: BaseException | None
    connection: int


class EventStreamParser:
    """Incremental parser: feed() bytes, get dispatched events and comments back."""

    def __init__(self, connection: int = 0, last_event_id: str = "") -> None:
        self._buf = bytearray()
        self._skip_lf = False  # the previous read ended on a CR; a leading LF belongs to it
        self._first_line = True
        self.connection = connection
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._event_type = ""
        self._data: list[str] = []
        self._id_in_frame: str | None = None
        self._lei_buffer = last_event_id

    def feed(self, chunk: bytes) -> list[Event | Comment]:
        out: list[Event | Comment] = []
        if not chunk:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        scan_from = len(self._buf)  # the buffered tail holds no CR or LF
        self._buf += chunk
        buf = self._buf
        start = 0
        n = len(buf)
        while True:
            cr = buf.find(b"\r", max(start, scan_from))
            lf = buf.find(b"\n", max(start, scan_from))
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            else:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
                else:
                    nxt = cr + 1
                    self._skip_lf = True
            line = bytes(buf[start:end])
            start = nxt
            self._line(line, out)
        del buf[:start]
        return out

    def _line(self, raw: bytes, out: list[Event | Comment]) -> None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        line = raw.decode("utf-8", errors="replace")
        now = time.monotonic()
        if line == "":
            self._dispatch(out, now)
            return
        if line.startswith(":"):
            out.append(Comment(line[1:], now, self.connection))
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self._lei_buffer = value
                self._id_in_frame = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        # any other field is ignored, as the standard says

    def _dispatch(self, out: list[Event | Comment], now: float) -> None:
        self.last_event_id = self._lei_buffer
        id_in_frame, self._id_in_frame = self._id_in_frame, None
        if not self._data:
            self._event_type = ""
            return
        data = "\n".join(self._data)
        out.append(
            Event(
                event=self._event_type or "message",
                data=data,
                id=id_in_frame,
                last_event_id=self.last_event_id,
                received_at=now,
                connection=self.connection,
            )
        )
        self._event_type = ""
        self._data = []


@dataclass
class _Connection:
    session: requests.Session
    response: requests.Response
    sock: socket.socket | None
    thread: threading.Thread | None = None
    closing: bool = False


@dataclass
class SSEClient:
    """An event-stream subscription read by a background thread.

    url: full URL; token: sent as `Authorization: Bearer`; last_event_id: sent as the
    `Last-Event-ID` header on the first connect. With auto_reconnect the client behaves
    like a browser's EventSource: when the body ends it reconnects with the last event ID
    (at most max_reconnects times).
    """

    url: str
    token: str | None = None
    last_event_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    auto_reconnect: bool = False
    max_reconnects: int = 20
    reconnect_delay: float = 0.2
    # Event types kept out of the queue (still recorded in .events and .ignored): by
    # default presence, which comes and goes with every stream a test opens.
    ignore: tuple[str, ...] = ("presence",)

    def __post_init__(self) -> None:
        self.ignored: list[Event] = []
        self.queue: queue.Queue[Event | _End] = queue.Queue()
        self.comments: list[Comment] = []
        self.events: list[Event] = []  # every event ever dispatched, in order
        self.status_code: int | None = None
        self.response_headers: dict[str, str] = {}
        self.first_bytes = b""
        self.chunked: bool | None = None
        self.retry: int | None = None
        self.connections = 0
        self.ended = threading.Event()  # set when the current body ended (not via close)
        self.end_error: BaseException | None = None
        self.ends: list[_End] = []
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    def connect(self) -> SSEClient:
        """Open the stream (raises if the status is not 200) and start reading."""
        conn = self._open(self.last_event_id)
        if self.status_code != 200:
            body = conn.response.content[:2000]
            self._dispose(conn)
            raise SSEError(f"GET {self.url} -> {self.status_code}: {body!r}")
        self._start_reader(conn)
        return self

    def _open(self, last_event_id: str | None) -> _Connection:
        session = requests.Session()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        headers.update(self.headers)
        try:
            resp = session.get(
                self.url,
                headers=headers,
                params=self.params or None,
                stream=True,
                timeout=(self.connect_timeout, self.read_timeout),
            )
        except BaseException:
            session.close()
            raise
        sock = None
        raw_conn = getattr(resp.raw, "_connection", None)
        if raw_conn is not None:
            sock = getattr(raw_conn, "sock", None)
        self.status_code = resp.status_code
        self.response_headers = dict(resp.headers)
        self.chunked = bool(getattr(resp.raw, "chunked", False))
        return _Connection(session=session, response=resp, sock=sock)

    def _start_reader(self, conn: _Connection) -> None:
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                index = self.connections
                self.connections += 1
                self.ended.clear()
                self._conn = conn
                t = threading.Thread(
                    target=self._read_loop, args=(conn, index), name=f"sse-{index}", daemon=True
                )
                conn.thread = t
        if closed:
            self._dispose(conn)
            return
        t.start()

    def _body_chunks(self, resp: requests.Response) -> Iterator[bytes]:
        if self.chunked:
            # requests wraps an unterminated chunked body as ChunkedEncodingError.
            yield from resp.iter_content(chunk_size=None)
        else:
            while True:
                data = resp.raw.read1(65536)
                if not data:
                    return
                yield data

    def _read_loop(self, conn: _Connection, index: int) -> None:
        parser = EventStreamParser(index, self.last_event_id or "")
        error: BaseException | None = None
        try:
            for chunk in self._body_chunks(conn.response):
                if not chunk:
                    continue
                if len(self.first_bytes) < 256 and index == 0:
                    self.first_bytes += chunk[: 256 - len(self.first_bytes)]
                for item in parser.feed(chunk):
                    if isinstance(item, Comment):
                        self.comments.append(item)
                    else:
                        self.last_event_id = item.last_event_id
                        self.events.append(item)
                        if item.event in self.ignore:
                            self.ignored.append(item)
                        else:
                            self.queue.put(item)
                if parser.retry is not None:
                    self.retry = parser.retry
        except BaseException as exc:  # noqa: BLE001 - the thread must never raise
            error = exc
        with self._lock:
            if conn.closing:
                return
            conn.closing = True  # this thread owns the finished connection now
        self._dispose(conn)
        end = _End(error, index)
        self.ends.append(end)
        self.end_error = error
        self.ended.set()
        if self.auto_reconnect and not self._closed and index < self.max_reconnects:
            self._reconnect_later()
        else:
            self.queue.put(end)

    def _reconnect_later(self) -> None:
        deadline = time.monotonic() + 60
        delay = self.reconnect_delay
        while not self._closed and time.monotonic() < deadline:
            time.sleep(delay)
            if self._closed:
                return
            try:
                conn = self._open(self.last_event_id)
            except requests.RequestException:
                delay = min(delay * 2, 2.0)
                continue
            if self.status_code == 200:
                self._start_reader(conn)
                return
            self._dispose(conn)
            delay = min(delay * 2, 2.0)
        self.queue.put(_End(SSEError("could not reconnect"), self.connections))

    def close(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                already_done = conn.closing
                conn.closing = True
        if conn is None:
            return
        if not already_done and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if conn.thread is not None and conn.thread is not threading.current_thread():
            conn.thread.join(15)
        self._dispose(conn)

    def reconnect(self, last_event_id: str | None = None) -> SSEClient:
        """Drop the connection and open a new one sending `Last-Event-ID` (the last id
        seen, unless one is given), as an EventSource does after a network error."""
        self.close()
        if last_event_id is not None:
            self.last_event_id = last_event_id
        kept = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Event):
                kept.append(item)
        for item in kept:
            self.queue.put(item)
        with self._lock:
            self._closed = False
        return self.connect()

    @staticmethod
    def _dispose(conn: _Connection) -> None:
        try:
            conn.response.close()
        finally:
            conn.session.close()
            # A finished stream's connection would otherwise idle in keep-alive until GC.
            if conn.sock is not None:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.sock.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def next_event(self, timeout: float = 10.0) -> Event:
        """The next dispatched event; raises StreamTimeout or StreamEnded."""
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise StreamTimeout(f"no event within {timeout}s from {self.url}") from None
        if isinstance(item, _End):
            self.queue.put(item)  # later waits see the end too
            raise StreamEnded(f"stream {self.url} ended: {item.error!r}")
        return item

    def next_of(self, kinds: set[str] | str, timeout: float = 10.0) -> Event:
        """The next event whose type is in kinds, skipping others, within timeout."""
        if isinstance(kinds, str):
            kinds = {kinds}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamTimeout(f"no {sorted(kinds)} event within {timeout}s")
            ev = self.next_event(left)
            if ev.event in kinds:
                return ev

    def take(self, n: int, timeout: float = 10.0) -> list[Event]:
        """Exactly the next n events (whatever their type) within an overall timeout."""
        deadline = time.monotonic() + timeout
        out: list[Event] = []
        for _ in range(n):
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamTimeout(f"got {len(out)} of {n} events within {timeout}s")
            out.append(self.next_event(left))
        return out

    def wait_ended(self, timeout: float) -> bool:
        return self.ended.wait(timeout)

    def wait_comments(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.comments) >= count:
                return True
            time.sleep(0.05)
        return len(self.comments) >= count
