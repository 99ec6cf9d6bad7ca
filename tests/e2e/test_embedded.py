"""One gunicorn, in-process broker (no REDIS_URL): streams, resume, shutdown, config."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from .conftest import REPO_ROOT, ServiceFactory, _stop_process
from .sse_client import Event, SSEClient, StreamTimeout

pytestmark = pytest.mark.e2e

ROOM = "lobby"
ROOM_STREAM = f"/api/rooms/{ROOM}/stream"


@pytest.fixture
def chat(service_factory: ServiceFactory) -> SimpleNamespace:
    svc = service_factory("embedded")
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room(ROOM)
    return SimpleNamespace(svc=svc, token=token, api=api)


def expect_ready(client: SSEClient, timeout: float = 10.0) -> dict[str, Any]:
    ev = client.next_event(timeout)
    assert ev.event == "ready", f"first event must be ready, got {ev}"
    assert ev.id is not None, "ready must carry an id (the starting cursor)"
    data = ev.json()
    assert data["cursor"] == ev.id, (data, ev.id)
    assert isinstance(data["rooms"], list)
    return data


def expect_messages(
    client: SSEClient, posted: list[dict[str, Any]], room_stream: bool
) -> list[Event]:
    """The next len(posted) events are exactly these messages, in this order."""
    got = client.take(len(posted), timeout=15)
    for ev, msg in zip(got, posted, strict=True):
        assert ev.event == "message", f"expected message seq {msg['seq']}, got {ev}"
        data = ev.json()
        assert data["seq"] == msg["seq"], (data, msg)
        assert data["id"] == msg["id"]
        assert data["text"] == msg["text"]
        assert data["sender"] == msg["sender"]
        assert data["room"] == msg["room"]
        assert data["channel"] == f"room:{msg['room']}"
        assert ev.id, f"a stored event must carry an id: {ev}"
        if room_stream:
            assert ev.id == str(msg["seq"]), (ev.id, msg["seq"])
    return got


def next_message(client: SSEClient, timeout: float = 15.0) -> Event:
    """The next message event; any other stored event in between is a failure."""
    ev = client.next_event(timeout)
    assert ev.event == "message", f"expected a message event, got {ev}"
    return ev


# --------------------------------------------------------------------------- auth


def test_stream_without_credentials_is_401_json(chat: SimpleNamespace) -> None:
    base = chat.svc.base
    for path in (ROOM_STREAM, "/api/stream"):
        for headers in ({}, {"Authorization": "Bearer not-a-real-token"}):
            with requests.get(
                base + path,
                headers={"Accept": "text/event-stream", **headers},
                stream=True,
                timeout=10,
            ) as resp:
                assert resp.status_code == 401, (path, headers, resp.status_code)
                assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
                body = json.loads(resp.raw.read(65536, decode_content=True))
                assert isinstance(body["error"]["code"], str) and body["error"]["code"]
                assert isinstance(body["error"]["message"], str)

    # the same stream opens with ?access_token= (EventSource cannot set headers)
    client = chat.svc.stream(ROOM_STREAM, None, params={"access_token": chat.token})
    expect_ready(client)
    client.close()


# --------------------------------------------------------------------------- live


def test_headers_ready_live_and_heartbeats(chat: SimpleNamespace) -> None:
    svc, api = chat.svc, chat.api
    room = svc.stream(ROOM_STREAM, chat.token)
    user = svc.stream("/api/stream", chat.token)

    for client in (room, user):
        h = {k.lower(): v for k, v in client.response_headers.items()}
        assert h.get("content-type", "").split(";")[0].strip() == "text/event-stream", h
        assert "no-cache" in h.get("cache-control", ""), h
        assert h.get("x-accel-buffering") == "no", h
        assert client.chunked, "a streamed HTTP/1.1 response should be chunked"

    ready_room = expect_ready(room)
    ready_user = expect_ready(user)
    assert room.first_bytes.startswith(b":"), room.first_bytes[:80]
    assert user.first_bytes.startswith(b":"), user.first_bytes[:80]
    assert room.retry is not None and user.retry is not None, "a retry: field is expected"
    assert ROOM in [r["room"] for r in ready_user["rooms"]], ready_user
    assert isinstance(ready_room["rooms"], list)

    posted = [api.post_message(ROOM, f"hello {i}") for i in range(3)]
    assert [m["seq"] for m in posted] == [1, 2, 3]
    for m in posted:
        assert m["room"] == ROOM and m["sender"] == "alice"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", m["created_at"]), m
    expect_messages(room, posted, room_stream=True)
    user_events = expect_messages(user, posted, room_stream=False)
    assert len({e.id for e in user_events}) == 3, [e.id for e in user_events]

    # heartbeats: CHAT_HEARTBEAT_SECONDS=1, so 3 more comments arrive well within 8 s
    for client in (room, user):
        before = len(client.comments)
        assert client.wait_comments(before + 3, timeout=8), (
            f"heartbeats: {len(client.comments) - before} comment(s) in 8 s"
        )
    # heartbeats are comments, never events
    with pytest.raises(StreamTimeout):
        room.next_event(0.2)


def test_text_with_newlines_arrives_as_one_event(chat: SimpleNamespace) -> None:
    svc, api = chat.svc, chat.api
    room = svc.stream(ROOM_STREAM, chat.token)
    user = svc.stream("/api/stream", chat.token)
    expect_ready(room)
    expect_ready(user)
    texts = [
        "first line\nsecond line",
        "windows\r\nline\r\nends\r\n",
        "lone\rcarriage\rreturns",
        "\n\nleading and trailing blank lines\n\n",
        "data: injected\n\nevent: reset\nid: 999\n\n: comment\n",
        "ünïcödé ✓ 😀 \u2028 \u2029 end",
    ]
    posted = [api.post_message(ROOM, t) for t in texts]
    for m, t in zip(posted, texts, strict=True):
        assert m["text"] == t, (m["text"], t)
    for client, is_room in ((room, True), (user, False)):
        got = expect_messages(client, posted, room_stream=is_room)
        assert [e.json()["text"] for e in got] == texts
    # and nothing extra was split off: the next event is the next message
    marker = api.post_message(ROOM, "marker")
    for client in (room, user):
        assert next_message(client).json()["seq"] == marker["seq"]


# --------------------------------------------------------------------------- resume


def test_room_stream_resume_with_last_event_id(chat: SimpleNamespace) -> None:
    svc, api = chat.svc, chat.api
    first = svc.stream(ROOM_STREAM, chat.token)
    expect_ready(first)
    posted = [api.post_message(ROOM, f"before {i}") for i in range(2)]
    expect_messages(first, posted, room_stream=True)
    last_id = first.last_event_id
    assert last_id == "2"
    first.close()

    missed = [api.post_message(ROOM, f"while away {i}") for i in range(3)]
    assert [m["seq"] for m in missed] == [3, 4, 5]

    resumed = svc.stream(ROOM_STREAM, chat.token, last_event_id=last_id)
    expect_ready(resumed)
    expect_messages(resumed, missed, room_stream=True)
    live = api.post_message(ROOM, "live after resume")
    expect_messages(resumed, [live], room_stream=True)

    # the same through ?last_event_id= on a first connect
    via_query = svc.stream(ROOM_STREAM, chat.token, params={"last_event_id": "4"})
    expect_ready(via_query)
    expect_messages(via_query, [missed[2], live], room_stream=True)
    live2 = api.post_message(ROOM, "live 2")
    expect_messages(via_query, [live2], room_stream=True)
    expect_messages(resumed, [live2], room_stream=True)


def test_user_stream_resume_with_opaque_cursor(chat: SimpleNamespace) -> None:
    svc, api = chat.svc, chat.api
    api.create_room("random")
    first = svc.stream("/api/stream", chat.token)
    expect_ready(first)
    a1 = api.post_message(ROOM, "a1")
    r1 = api.post_message("random", "r1")
    expect_messages(first, [a1, r1], room_stream=False)
    cursor = first.last_event_id
    assert cursor
    first.close()

    missed = [
        api.post_message(ROOM, "a2"),
        api.post_message("random", "r2"),
        api.post_message(ROOM, "a3"),
        api.post_message("random", "r3"),
    ]
    resumed = first.reconnect()  # sends Last-Event-ID: cursor
    assert resumed.connections == 2
    expect_ready(resumed)
    got = resumed.take(4, timeout=15)
    assert all(e.event == "message" for e in got), got
    by_channel: dict[str, list[int]] = {}
    for e in got:
        d = e.json()
        by_channel.setdefault(d["channel"], []).append(d["seq"])
    assert by_channel == {f"room:{ROOM}": [2, 3], "room:random": [2, 3]}, by_channel
    assert sorted(e.json()["text"] for e in got) == sorted(m["text"] for m in missed)

    live = api.post_message("random", "r4")
    expect_messages(resumed, [live], room_stream=False)

    # resuming from the newest cursor replays nothing
    again = svc.stream("/api/stream", chat.token, params={"last_event_id": resumed.last_event_id})
    expect_ready(again)
    live2 = api.post_message(ROOM, "a4")
    expect_messages(again, [live2], room_stream=False)


@pytest.mark.parametrize(
    ("path", "bad_id"),
    [(ROOM_STREAM, "not-a-seq"), (ROOM_STREAM, "-3"), ("/api/stream", "%%garbage%%")],
)
def test_malformed_last_event_id_gives_reset_then_live(
    chat: SimpleNamespace, path: str, bad_id: str
) -> None:
    svc, api = chat.svc, chat.api
    stored = [api.post_message(ROOM, f"old {i}") for i in range(2)]
    client = svc.stream(path, chat.token, last_event_id=bad_id)
    seen: list[Event] = []
    for _ in range(5):
        ev = client.next_event(10)
        seen.append(ev)
        assert ev.event in {"ready", "reset"}, f"before reset only ready may come: {seen}"
        if ev.event == "reset":
            break
    else:
        raise AssertionError(f"no reset event: {seen}")
    live = api.post_message(ROOM, "live after reset")
    assert live["seq"] == stored[-1]["seq"] + 1
    ev = client.next_of({"message"}, timeout=15)
    assert ev.json()["seq"] == live["seq"], f"stored messages were replayed after reset: {ev}"


# --------------------------------------------------------------------------- process


def test_sigterm_ends_open_streams_cleanly(chat: SimpleNamespace) -> None:
    svc, api = chat.svc, chat.api
    room = svc.stream(ROOM_STREAM, chat.token)
    user = svc.stream("/api/stream", chat.token)
    expect_ready(room)
    expect_ready(user)
    m = api.post_message(ROOM, "before shutdown")
    expect_messages(room, [m], room_stream=True)
    expect_messages(user, [m], room_stream=False)

    assert svc.proc is not None
    t0 = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    for client in (room, user):
        assert client.wait_ended(10), "the stream was still open 10 s after SIGTERM"
        assert client.end_error is None, f"the body did not end cleanly: {client.end_error!r}"
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
    try:
        code = svc.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError("gunicorn master still running 20 s after SIGTERM") from None
    assert code == 0, f"gunicorn exited {code}"
    assert "Traceback" not in svc.log_text(), "graceful shutdown logged a traceback"


def test_two_workers_without_redis_are_refused(service_factory: ServiceFactory) -> None:
    svc = service_factory("refuse", start=False)
    log = svc.workdir / "refused.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            svc.command("--workers", "2"),
            cwd=REPO_ROOT,
            env=svc.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _stop_process(proc, 5)
    text = log.read_text(errors="replace")
    assert code is not None, f"gunicorn --workers 2 without REDIS_URL kept running:\n{text[-3000:]}"
    assert code != 0, f"gunicorn --workers 2 without REDIS_URL exited 0:\n{text[-3000:]}"
    assert "REDIS_URL" in text, f"the refusal does not name REDIS_URL:\n{text[-3000:]}"
