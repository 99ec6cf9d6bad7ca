"""Server-Sent Events streams: replay from the store, then live from the hub, exactly once.

A stream holds no database session while it waits: each catch-up opens a short one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request

from . import metrics, timeline
from .auth import require_principal
from .cursor import Positions, encode_seq
from .extension import chat_extension
from .hub import Control, Hub, LiveEvent, Subscriber, Sync
from .service import StreamPlan
from .sse import encode_body, encode_comment, encode_event, encode_id
from .store import Store
from .validation import check_name, room_ref

log = logging.getLogger(__name__)

bp = Blueprint("streams", __name__, url_prefix="/api")

CATCH_UP_BATCH = 500


@bp.get("/stream")
def my_stream() -> Response:
    principal = require_principal(allow_query_token=True)
    ext = chat_extension()
    return _respond(ext.service.user_stream_plan(principal, principal.username, _cursor()))


@bp.get("/users/<name>/stream")
def user_stream(name: str) -> Response:
    principal = require_principal(allow_query_token=True)
    ext = chat_extension()
    return _respond(ext.service.user_stream_plan(principal, check_name(name), _cursor()))


@bp.get("/rooms/<room>/stream")
def room_stream(room: str) -> Response:
    principal = require_principal(allow_query_token=True)
    ext = chat_extension()
    return _respond(ext.service.room_stream_plan(principal, room_ref(room),
                                                 _cursor()))


def _cursor() -> str | None:
    return request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or None


def _respond(plan: StreamPlan) -> Response:
    ext = chat_extension()
    stream = Stream(plan, ext.hub, ext.store, current_app.config,
                    request.environ.get("gunicorn.socket"))
    return event_stream_response(stream.frames())


def event_stream_response(frames: Iterator[bytes]) -> Response:
    """The response of a stream: never cached or buffered by a proxy."""
    response = Response(frames, status=200, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    # The generator already yields bytes: hand it to the server as it is, without the
    # two wrapping iterators werkzeug adds. Every idle stream's greenlet keeps a copy of
    # its C stack, and each wrapper level makes that copy deeper.
    response.direct_passthrough = True
    return response


class Pump:
    """What every stream does: its opening frames, then, each time the hub wakes it, the
    frames its queued items make, or a heartbeat when one is due. Subclasses say what
    the opening and the items are."""

    __slots__ = ("hub", "heartbeat", "retry_ms", "sub")

    def __init__(self, hub: Hub, config: Any, sub: Subscriber) -> None:
        self.hub = hub
        self.heartbeat = float(config["CHAT_HEARTBEAT_SECONDS"])
        self.retry_ms = int(config["CHAT_RETRY_MS"])
        self.sub = sub

    def opening(self) -> Iterator[bytes]:
        """The frames before the first wait (done with before the stream idles, so it
        adds nothing to an idle stream's stack)."""
        raise NotImplementedError

    def render(self, items: list[Any]) -> bytes:
        """The frames for what the hub queued (maybe none)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def open_comment(self) -> bytes:
        """The first write: gunicorn sends the headers with it, not with the first event."""
        return encode_comment("stream open") + f"retry: {self.retry_ms}\n\n".encode()

    def frames(self) -> Iterator[bytes]:
        sub = self.sub
        opened = time.monotonic()
        try:
            for chunk in self.opening():
                sub.write_started = time.monotonic()
                yield chunk
                sub.write_started = 0.0
            # A stream that opened after the worker began to stop was not there to be ended.
            if self.hub.closing:
                return
            sub.last_write = time.monotonic()
            while not sub.closed:
                # No timeout: the hub wakes this stream for events and for heartbeats.
                items = sub.take()
                if sub.closed:
                    break
                chunk = self.render(items)
                if not chunk:
                    if time.monotonic() - sub.last_write < self.heartbeat:
                        continue
                    chunk = b":\n\n"
                # The hub's sweeper cuts a stream whose write stays blocked too long.
                sub.write_started = time.monotonic()
                yield chunk
                sub.last_write = time.monotonic()
                sub.write_started = 0.0
        except Exception:
            # End the response cleanly; the client reconnects (and resumes, if it can).
            log.exception("%s failed", self.describe())
        finally:
            self.hub.detach(sub)
            log.info("%s ended after %.1fs: %s", self.describe(),
                     time.monotonic() - opened, sub.close_reason or "client gone")


class Stream(Pump):
    """One client's stream: its positions per channel and the frames it is owed."""

    __slots__ = ("plan", "single", "store", "positions", "names")

    def __init__(self, plan: StreamPlan, hub: Hub, store: Store, config: Any,
                 sock: Any = None) -> None:
        super().__init__(hub, config, Subscriber(
            max_queue=int(config["CHAT_CLIENT_QUEUE_SIZE"]),
            credential_key=plan.credential_key, user_id=plan.user_id,
            room_id=next(iter(plan.positions)) if plan.single else None,
            viewer_id=plan.viewer_id, sock=sock))
        self.plan: StreamPlan | None = plan  # needed until the ready event is sent
        self.single = plan.single
        self.store = store
        self.positions = Positions(plan.positions)
        self.names = dict(plan.names)

    def cursor(self) -> str:
        if self.single:
            return encode_seq(next(iter(self.positions.values())))
        return self.positions.encode()

    def describe(self) -> str:
        return f"stream of user {self.sub.viewer_id}"

    def opening(self) -> Iterator[bytes]:
        yield self.open_comment()
        if self.hub.closing:
            return
        yield self._start()
        yield from self._catch_up(list(self.positions))

    def render(self, items: list[Any]) -> bytes:
        if len(items) == 1 and type(items[0]) is LiveEvent:
            return self._live_one(items[0])
        return b"".join(self._handle(items))

    def _start(self) -> bytes:
        """Subscribe, then the `ready` frame (and `reset` where the cursor was no good);
        the plan is let go, as an idle stream should hold as little as it can."""
        plan, self.plan = self.plan, None
        assert plan is not None
        self.hub.attach(self.sub, plan.channels)
        cursor = self.cursor()
        data: dict[str, Any] = {"cursor": cursor, "rooms": plan.ready_rooms}
        if plan.user_channel:
            data["channel"] = plan.user_channel
        data.update(plan.ready_extra)
        frames = [encode_event("ready", json.dumps(data), cursor)]
        if plan.reset_reason:
            frames.append(encode_event(
                "reset", json.dumps({"reason": plan.reset_reason, "cursor": cursor}), cursor))
        return b"".join(frames)

    def _handle(self, items: list[Any]) -> Iterable[bytes]:
        for item in items:
            if isinstance(item, LiveEvent):
                yield from self._live(item)
            elif isinstance(item, Sync):
                yield from self._catch_up(list(self.positions))
            elif isinstance(item, Control):
                yield from self._control(item)

    def _live_one(self, event: LiveEvent) -> bytes:
        """The common case, one live event in order, without the generator machinery."""
        cid = event.channel_id
        if event.seq is not None and cid is not None and \
                event.seq == self.positions.get(cid, -2) + 1:
            return self._advance(cid, event)
        return b"".join(self._live(event))

    def _advance(self, cid: int, event: LiveEvent) -> bytes:
        """Move the channel's position to this live event and frame it."""
        self.positions[cid] = event.seq  # type: ignore[assignment]
        tally = metrics.TALLY
        tally.delivered += 1
        if event.stored_at is not None and event.type == "message":
            tally.lag(max(0.0, time.time() - event.stored_at))
        if self.single:
            return event.frame()
        return event.body + encode_id(self.positions.encode()) + b"\n"

    def _live(self, event: LiveEvent) -> Iterable[bytes]:
        if event.seq is None:  # ephemeral: no position, no id
            metrics.TALLY.delivered += 1
            yield event.body + b"\n"
            return
        cid = event.channel_id
        position = self.positions.get(cid) if cid is not None else None
        if position is None or event.seq <= position:
            return  # not ours, or already sent
        if event.seq > position + 1:
            # Something before it never arrived live: fill the gap from the store, which
            # already holds this event too (it was published after it committed).
            yield from self._catch_up([cid])
            return
        yield self._advance(cid, event)

    def _catch_up(self, channel_ids: list[int]) -> Iterator[bytes]:
        """Send what the store holds past this stream's positions: each channel in seq
        order, channels interleaved in the order their events were stored."""
        with self.store.read() as s:
            heads = timeline.heads(s, channel_ids)
        while not self.sub.closed:
            behind = [cid for cid in channel_ids
                      if cid in self.positions and self.positions[cid] < heads.get(cid, 0)]
            if not behind:
                break
            with self.store.read() as s:
                batch = [event for cid in behind
                         for event in timeline.read_after(s, cid, self.names[cid],
                                                          self.positions[cid], CATCH_UP_BATCH)]
            if not batch:
                break
            batch.sort(key=lambda event: event.event_id)
            out = []
            for event in batch:
                if event.seq != self.positions[event.channel_id] + 1:
                    continue  # past another channel's page end; the next round sends it
                self.positions[event.channel_id] = event.seq
                out.append(encode_body(event.type, event.data) + encode_id(self.cursor())
                           + b"\n")
            metrics.TALLY.delivered += len(out)
            metrics.TALLY.replayed += len(out)
            yield b"".join(out)
        for cid in channel_ids:
            if cid in self.positions:
                self.hub.note_position(self.names[cid], self.positions[cid])

    def _control(self, control: Control) -> Iterable[bytes]:
        if self.single:
            return
        channel = str(control.args.get("channel", ""))
        if control.op == "join" and channel.startswith("room:"):
            cid = int(control.args["cid"])
            if cid in self.positions:
                return
            self.positions[cid] = int(control.args.get("since", 0))
            self.names[cid] = channel
            self.hub.add_channels(self.sub, {channel: cid})
            yield from self._catch_up([cid])
        elif control.op == "leave":
            cid = next((c for c, n in self.names.items() if n == channel), None)
            if cid is not None:
                self.hub.remove_channels(self.sub, [channel])
                self.positions.pop(cid, None)
                self.names.pop(cid, None)
