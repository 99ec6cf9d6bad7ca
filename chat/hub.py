"""Per-worker fan-out: the broker's only subscriber in this process, feeding the bounded
queues of the local stream connections.

Each event is decoded and encoded to SSE bytes once, whatever the number of local
connections that receive it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .broker import Broker
from .concurrency import event_type
from .presence import Presence
from .sse import FrameError, encode_body, encode_id, flask_sse_frame

log = logging.getLogger(__name__)

BROKER_PREFIX = "chat:"
CONTROL_CHANNEL = "_control"
# The hub's name for a flask-sse channel: "sse:" + the Redis channel that flask-sse
# publishers use, unprefixed (see chat/compat.py).
COMPAT_PREFIX = "sse:"


def broker_channel(name: str) -> str:
    """The broker channel carrying a hub channel."""
    if name.startswith(COMPAT_PREFIX):
        return name[len(COMPAT_PREFIX):]
    return BROKER_PREFIX + name


def pack(channel: str, channel_id: int | None, seq: int | None, type_: str, data: str) -> bytes:
    """The broker payload: a small JSON header line (with when it was published, for the
    delivery-lag metric), then the event data (JSON text)."""
    header = json.dumps({"ch": channel, "cid": channel_id, "seq": seq, "t": type_,
                         "ts": time.time()})
    return header.encode() + b"\n" + data.encode()


@dataclass(slots=True)
class LiveEvent:
    """An event as it arrives from the broker, encoded once for every local stream."""

    channel: str
    channel_id: int | None
    seq: int | None
    type: str
    body: bytes
    stored_at: float | None = None  # wall-clock time of the publish, just after the commit
    _single: bytes | None = None

    def frame(self) -> bytes:
        """The frame for a one-channel stream, whose id is the seq (built once)."""
        if self._single is None:
            tail = encode_id(str(self.seq)) if self.seq is not None else b""
            self._single = self.body + tail + b"\n"
        return self._single


@dataclass(slots=True)
class Control:
    """An instruction for streams, carried by the broker, never stored or sent to clients."""

    channel: str
    op: str
    args: dict[str, Any]


class Sync:
    """Ask a stream to catch up from the store (after a broker reconnect or a lost publish)."""

    __slots__ = ()


SYNC = Sync()


# Every idle stream waits on one of these.
_EVENT = event_type()
_QUEUE_CREATION = threading.Lock()


@dataclass(eq=False, slots=True)
class Subscriber:
    """The hub's side of one stream connection: its channels and its bounded queue."""

    max_queue: int
    credential_key: str | None = None
    user_id: int | None = None
    room_id: int | None = None  # set for a one-room stream: it needs that membership
    viewer_id: int | None = None  # who is connected: online while the stream is open
    sock: socket.socket | None = None
    # A tuple: most streams have one or a few channels, and it changes rarely.
    channels: tuple[str, ...] = ()
    # Made on the first push: an idle stream does without one.
    queue: deque[Any] | None = None
    wakeup: Any = field(default_factory=_EVENT)
    closed: bool = False
    close_reason: str = ""
    write_started: float = 0.0
    # When the stream last wrote; the hub's sweeper wakes it when a heartbeat is due, so an
    # idle stream waits with no timer of its own.
    last_write: float = field(default_factory=time.monotonic)

    def push(self, item: Any) -> bool:
        """Queue an item; a full queue means the client stopped reading: cut it (it will
        resume from the store). Returns False if this push dropped the stream."""
        if self.closed:
            return True
        queue = self.queue
        if queue is None:
            with _QUEUE_CREATION:
                if self.queue is None:
                    self.queue = deque()
            queue = self.queue
        if len(queue) >= self.max_queue:
            self.abort("slow_client")
            return False
        queue.append(item)
        self.wakeup.set()
        return True

    def take(self, timeout: float | None = None) -> list[Any]:
        """Wait (up to timeout, if given) for a wake-up; return all queued items (maybe
        none: a heartbeat may be due)."""
        if not self.queue:
            self.wakeup.wait(timeout)
        self.wakeup.clear()
        queue = self.queue
        items = []
        while queue:
            items.append(queue.popleft())
        return items

    def end(self, reason: str) -> None:
        """Finish the stream cleanly at its next wake-up (a complete response)."""
        self.closed = True
        self.close_reason = reason
        if self.queue is not None:
            self.queue.clear()
        self.wakeup.set()

    def abort(self, reason: str) -> None:
        """Cut the connection now, even if a write to it is blocked."""
        self.end(reason)
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


HeadsReader = Callable[[list[int]], dict[int, int]]
# Given streams, returns those whose credential or membership no longer holds.
AccessChecker = Callable[[list[Subscriber]], Iterable[Subscriber]]


class Hub:
    """Subscribes the broker to a channel while at least one local stream needs it."""

    def __init__(
        self,
        broker: Broker,
        heads: HeadsReader,
        resync_seconds: float = 5.0,
        write_timeout: float = 30.0,
        heartbeat: float = 15.0,
        check_access: AccessChecker | None = None,
        access_seconds: float = 60.0,
        background: bool = True,
        presence: Presence | None = None,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self._heads = heads
        self._check_access = check_access
        self.access_seconds = access_seconds
        self._last_access_check = time.monotonic()
        self.resync_seconds = resync_seconds
        self.write_timeout = write_timeout
        self.heartbeat = heartbeat
        self._lock = threading.RLock()
        self._by_channel: dict[str, set[Subscriber]] = {}
        self._channel_ids: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._subscribers: set[Subscriber] = set()
        # Without background (unit tests), sweep() runs only when called.
        self._started = not background
        self._closing = False
        self.slow_clients_dropped = 0
        broker.bind(self._on_message, self._on_reconnect)

    # -- streams ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    def attach(self, sub: Subscriber, channels: dict[str, int | None]) -> None:
        """Register a stream for channels ({name: id}, no id for a channel that is not
        stored); returns once the broker delivers them, so a catch-up from the store after
        this misses nothing."""
        self._start()
        with self._lock:
            self._subscribers.add(sub)
        self.add_channels(sub, channels)
        metrics.OPEN_STREAMS.inc()
        if self.presence is not None and sub.viewer_id is not None:
            self.presence.opened(sub.viewer_id)

    def add_channels(self, sub: Subscriber, channels: dict[str, int | None]) -> None:
        """Add channels to an attached stream; returns once the broker delivers them."""
        added: list[str] = []
        with self._lock:
            for name, cid in channels.items():
                if name in sub.channels:
                    continue
                sub.channels += (name,)
                if cid is not None:
                    self._channel_ids[name] = cid
                self._by_channel.setdefault(name, set()).add(sub)
                added.append(broker_channel(name))
            # Asked under the lock, so the broker's subscriptions always follow this hub's
            # counts; asked for every channel, not only new ones, so a second stream also
            # waits until the first one's subscription is confirmed.
            confirmation = self.broker.subscribe(added) if added else None
        if confirmation is not None and not confirmation.wait(5.0):
            log.warning("hub: broker did not confirm %d channels in time", len(added))

    def remove_channels(self, sub: Subscriber, names: Iterable[str]) -> None:
        """Remove channels from a stream; the broker drops a channel no stream needs."""
        gone: list[str] = []
        with self._lock:
            for name in names:
                if name not in sub.channels:
                    continue
                sub.channels = tuple(c for c in sub.channels if c != name)
                subs = self._by_channel.get(name)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_channel[name]
                        self._seen.pop(name, None)
                        self._channel_ids.pop(name, None)
                        gone.append(broker_channel(name))
            if gone:
                self.broker.unsubscribe(gone)

    def detach(self, sub: Subscriber) -> None:
        """Forget a stream that ended."""
        self.remove_channels(sub, list(sub.channels))
        with self._lock:
            if sub not in self._subscribers:
                return
            self._subscribers.discard(sub)
        metrics.OPEN_STREAMS.dec()
        if self.presence is not None and sub.viewer_id is not None:
            self.presence.closed(sub.viewer_id)

    def note_position(self, channel: str, seq: int) -> None:
        """A stream has read channel up to seq from the store."""
        if seq > self._seen.get(channel, 0) and channel in self._by_channel:
            self._seen[channel] = seq

    def connection_count(self) -> int:
        return len(self._subscribers)

    def end_credential(self, key_id: str, reason: str) -> int:
        """End every local stream opened with that credential."""
        ended = 0
        for sub in list(self._subscribers):
            if sub.credential_key == key_id:
                sub.end(reason)
                ended += 1
        return ended

    def shutdown(self) -> None:
        """End every stream cleanly (a complete response) so clients reconnect elsewhere."""
        self._closing = True
        for sub in list(self._subscribers):
            sub.end("shutdown")

    # -- the broker side ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.broker.subscribe([BROKER_PREFIX + CONTROL_CHANNEL]).wait(5.0)
        threading.Thread(target=self._sweep_forever, name="hub-sweeper", daemon=True).start()

    def _on_message(self, broker_name: str, payload: bytes) -> None:
        if not broker_name.startswith(BROKER_PREFIX):
            self._on_compat(COMPAT_PREFIX + broker_name, payload)
            return
        try:
            head, _, data = payload.partition(b"\n")
            header = json.loads(head)
            channel, type_ = header["ch"], header["t"]
            if type_ == "_control":
                args = json.loads(data)
                self._on_control(Control(channel, str(args.get("op", "")), args))
                return
            seq = header.get("seq")
            event = LiveEvent(
                channel, header.get("cid"), seq, type_, encode_body(type_, data.decode()),
                header.get("ts"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("hub: dropped a malformed payload on %s: %s", broker_name, exc)
            return
        subs = self._by_channel.get(channel)
        if not subs:
            return
        if seq is not None and seq > self._seen.get(channel, 0):
            self._seen[channel] = seq
        self._fan_out(channel, subs, event)

    def _on_compat(self, channel: str, payload: bytes) -> None:
        """A message a flask-sse publisher (or POST /api/channels/.../events) sent."""
        subs = self._by_channel.get(channel)
        if not subs:
            return
        try:
            type_, body = flask_sse_frame(payload)
        except (ValueError, FrameError) as exc:
            log.warning("hub: dropped a malformed flask-sse message on %s: %s",
                        channel[len(COMPAT_PREFIX):], exc)
            return
        self._fan_out(channel, subs, LiveEvent(channel, None, None, type_ or "message", body))

    def _fan_out(self, channel: str, subs: set[Subscriber], event: LiveEvent) -> None:
        for sub in list(subs):
            if not sub.push(event):
                self.slow_clients_dropped += 1
                metrics.SLOW_CLIENTS_DROPPED.inc()
                log.info("hub: dropped a slow stream on %s", channel)

    def _on_control(self, control: Control) -> None:
        if control.op == "end_credential":
            self.end_credential(str(control.args.get("key_id")), "revoked")
            return
        if control.op == "member_left":
            for sub in list(self._by_channel.get(control.channel, ())):
                if sub.room_id is not None and sub.user_id == control.args.get("user_id"):
                    sub.end("left_room")
            return
        for sub in list(self._by_channel.get(control.channel, ())):
            sub.push(control)

    def _on_reconnect(self) -> None:
        for sub in list(self._subscribers):
            sub.push(SYNC)
        # A revocation or a leave may have been published while the broker was away.
        self._last_access_check = 0.0

    # -- housekeeping ---------------------------------------------------------------------

    def _sweep_forever(self) -> None:
        tick = min(1.0, self.heartbeat / 2)
        if self.resync_seconds > 0:
            tick = min(tick, self.resync_seconds)
        while not self._closing:
            time.sleep(tick)
            try:
                self.sweep()
            except Exception:
                log.exception("hub: sweep failed")

    _last_resync = 0.0

    def sweep(self) -> None:
        """Wake streams that owe a heartbeat; drop streams whose write is stuck; catch up
        channels whose store moved past what the broker delivered (a publish lost to a
        broker outage or a crashed worker); end streams that lost their access."""
        now = time.monotonic()
        metrics.TALLY.flush()
        if self.presence is not None:
            self.presence.tick()
        for sub in list(self._subscribers):
            if sub.write_started:
                if now - sub.write_started > self.write_timeout:
                    log.info("hub: dropping a stream whose write is stuck")
                    sub.abort("write_timeout")
                    self.slow_clients_dropped += 1
                    metrics.SLOW_CLIENTS_DROPPED.inc()
            elif now - sub.last_write >= self.heartbeat:
                sub.wakeup.set()
        if self._check_access is not None and now - self._last_access_check >= \
                self.access_seconds:
            self._last_access_check = now
            subs = [sub for sub in list(self._subscribers) if not sub.closed]
            for sub in self._check_access(subs) if subs else ():
                sub.end("access_revoked")
        if self.resync_seconds <= 0 or now - self._last_resync < self.resync_seconds:
            return
        self._last_resync = now
        with self._lock:
            ids = {name: cid for name, cid in self._channel_ids.items() if name in self._by_channel}
        if not ids:
            return
        heads = self._heads(list(ids.values()))
        for name, cid in ids.items():
            head = heads.get(cid, 0)
            if head > self._seen.get(name, 0):
                self._seen[name] = head
                for sub in list(self._by_channel.get(name, ())):
                    sub.push(SYNC)
