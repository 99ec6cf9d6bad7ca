"""Publish/subscribe of encoded events between processes.

A broker has one listener per process, started lazily by the first subscription (never at
import and never before gunicorn forks). Delivery is a fast path only: after any
reconnect the broker calls `on_reconnect`, and the streams catch up from the store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import Connection
from redis.retry import Retry

from . import metrics

log = logging.getLogger(__name__)

class Confirmation:
    """Waits until the broker confirms a subscription."""

    def __init__(self, events: list[threading.Event] | None = None) -> None:
        self._events = events or []

    def wait(self, timeout: float = 5.0) -> bool:
        """True once every channel is confirmed; False on timeout (a later reconnect then
        triggers a catch-up)."""
        deadline = time.monotonic() + timeout
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self._events)


MessageHandler = Callable[[str, bytes], None]
ReconnectHandler = Callable[[], None]


class Broker(ABC):
    """Publish bytes to a named channel; deliver the channels this process subscribed to."""

    def __init__(self) -> None:
        self.on_message: MessageHandler = lambda channel, payload: None
        self.on_reconnect: ReconnectHandler = lambda: None
        self.reconnects = 0

    def bind(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self.on_message = on_message
        self.on_reconnect = on_reconnect

    @abstractmethod
    def publish(self, channel: str, payload: bytes) -> None:
        """Send payload to every process subscribed to channel; raises on failure."""

    @abstractmethod
    def subscribe(self, channels: Iterable[str]) -> Confirmation:
        """Start delivering channels (idempotent: the caller counts its users); returns at
        once, with the confirmation to wait for."""

    @abstractmethod
    def unsubscribe(self, channels: Iterable[str]) -> None:
        """Stop delivering channels."""

    def ping(self) -> None:  # noqa: B027 - an in-process broker is always reachable
        """Raise if the broker cannot be reached."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Stop the listener and release connections."""


class MemoryBroker(Broker):
    """In-process delivery: one worker process only."""

    def __init__(self) -> None:
        super().__init__()
        self._channels: set[str] = set()

    def publish(self, channel: str, payload: bytes) -> None:
        if channel in self._channels:
            self.on_message(channel, payload)

    def subscribe(self, channels: Iterable[str]) -> Confirmation:
        self._channels.update(channels)
        return Confirmation()

    def unsubscribe(self, channels: Iterable[str]) -> None:
        self._channels.difference_update(channels)


class RedisBroker(Broker):
    """Redis pub/sub with one subscribing connection per process.

    The listener is the only reader of that connection; other greenlets only write
    SUBSCRIBE/UNSUBSCRIBE to it under a lock and wait for the listener to see the
    confirmation.
    """

    def __init__(self, url: str, health_seconds: float = 5.0, max_backoff: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.health_seconds = health_seconds
        self.max_backoff = max_backoff
        self._publisher = redis.Redis.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._confirmed: dict[str, threading.Event] = {}
        self._conn: Connection | None = None
        self._listener: threading.Thread | None = None
        self._stopped = False
        self.connected = False

    # -- public API -----------------------------------------------------------------------

    def publish(self, channel: str, payload: bytes) -> None:
        self._publisher.publish(channel, payload)

    def subscribe(self, channels: Iterable[str]) -> Confirmation:
        waits: list[threading.Event] = []
        new: list[str] = []
        with self._lock:
            self._ensure_listener()
            for channel in channels:
                if channel not in self._wanted:
                    self._wanted.add(channel)
                    self._confirmed[channel] = threading.Event()
                    new.append(channel)
                waits.append(self._confirmed[channel])
            if new and self._conn is not None:
                self._send("SUBSCRIBE", *new)
        return Confirmation(waits)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        with self._lock:
            gone = [c for c in channels if c in self._wanted]
            for channel in gone:
                self._wanted.discard(channel)
                self._confirmed.pop(channel, None)
            if gone and self._conn is not None:
                self._send("UNSUBSCRIBE", *gone)

    def ping(self) -> None:
        self._publisher.ping()

    def close(self) -> None:
        self._stopped = True
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
        if self._listener is not None:
            self._listener.join(timeout=2)
        self._publisher.close()

    # -- the listener ---------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = threading.Thread(
                target=self._listen, name="redis-broker-listener", daemon=True
            )
            self._listener.start()

    def _send(self, *args: str) -> None:
        assert self._conn is not None
        try:
            self._conn.send_command(*args)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            # The listener sees the broken connection too, reconnects and resubscribes.
            log.warning("redis broker: %s failed: %s", args[0], exc)

    def _listen(self) -> None:
        backoff = 0.1
        first = True
        while not self._stopped:
            try:
                self._session(first)
            except Exception as exc:  # the listener must outlive any error: it reconnects
                if self._stopped:
                    break
                if self.connected:
                    backoff = 0.1  # it worked for a while: retry quickly, then back off
                log.warning("redis broker: connection lost (%s); retrying in %.1fs", exc, backoff)
            self.connected = False
            with self._lock:
                conn, self._conn = self._conn, None
                for channel in self._wanted:
                    self._confirmed[channel] = threading.Event()
            if conn is not None:
                conn.disconnect()
            if self._stopped:
                break
            first = False
            time.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self.max_backoff)
        log.info("redis broker: listener stopped")

    def _session(self, first: bool) -> None:
        kwargs = dict(self._publisher.connection_pool.connection_kwargs)
        # No health_check_interval: it would make send_command read from the socket that
        # only the listener reads. The listener pings on its own schedule instead.
        for key in ("socket_timeout", "health_check_interval", "retry"):
            kwargs.pop(key, None)
        conn = Connection(**kwargs, socket_timeout=max(10.0, 2 * self.health_seconds))
        conn.connect()
        with self._lock:
            self._conn = conn
            pending = set(self._wanted)
            if pending:
                conn.send_command("SUBSCRIBE", *pending)
        if not first:
            self.reconnects += 1
            metrics.BROKER_RECONNECTS.inc()
            log.info("redis broker: reconnected, resubscribing %d channels", len(pending))
        self.connected = True
        # Whatever was published while no subscription was in place is in the store only:
        # once every channel is subscribed again, the streams catch up from there.
        if not pending:
            self._reconnected()
        last_seen = time.monotonic()
        pinged = False
        while not self._stopped:
            if conn.can_read(timeout=self.health_seconds):
                response = conn.read_response()
                last_seen = time.monotonic()
                pinged = False
                kind, channel = self._handle(response)
                if pending and kind == "subscribe":
                    pending.discard(channel)
                    if not pending:
                        self._reconnected()
                continue
            if pinged and time.monotonic() - last_seen > 2 * self.health_seconds:
                raise redis.TimeoutError("no answer to PING")
            with self._lock:
                conn.send_command("PING")
            pinged = True

    def _reconnected(self) -> None:
        try:
            self.on_reconnect()
        except Exception:
            log.exception("redis broker: reconnect handler failed")

    def _handle(self, response: object) -> tuple[str, str]:
        if not isinstance(response, list) or not response:
            return "", ""
        kind = _text(response[0])
        if kind == "message" and len(response) == 3:
            channel = _text(response[1])
            try:
                self.on_message(channel, bytes(response[2]))
            except Exception:
                log.exception("redis broker: message handler failed")
            return kind, channel
        if kind == "subscribe":
            channel = _text(response[1])
            with self._lock:
                confirmed = self._confirmed.get(channel)
            if confirmed is not None and channel in self._wanted:
                confirmed.set()
            return kind, channel
        return kind, ""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def create_broker(url: str | None, health_seconds: float = 5.0) -> Broker:
    """The broker for a URL: none or memory:// is in-process, redis:// or rediss:// is Redis."""
    if not url or url.startswith("memory:"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url, health_seconds=health_seconds)
    raise ValueError(f"unsupported broker URL scheme: {url.split(':', 1)[0]}")
