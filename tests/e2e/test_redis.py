"""Two gunicorn services sharing one SQLite file and one real redis-server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from .conftest import RedisServer, ServiceFactory
from .sse_client import Event, SSEClient, StreamTimeout

pytestmark = pytest.mark.e2e

ROOM = "ops"
ROOM_STREAM = f"/api/rooms/{ROOM}/stream"


@pytest.fixture
def pair(redis_server: RedisServer, service_factory: ServiceFactory) -> SimpleNamespace:
    a = service_factory("a", redis=redis_server, args=("--workers", "1"))
    b = service_factory("b", redis=redis_server, args=("--workers", "1"), init_db=False)
    assert a.db_path == b.db_path
    token = a.create_user("alice")
    api_a = a.api(token)
    api_b = b.api(token)
    api_a.create_room(ROOM)
    return SimpleNamespace(a=a, b=b, token=token, api_a=api_a, api_b=api_b, redis=redis_server)


def expect_ready(client: SSEClient) -> None:
    ev = client.next_event(10)
    assert ev.event == "ready", ev
    assert ev.id is not None


def expect_seqs(client: SSEClient, seqs: list[int], room_stream: bool) -> list[Event]:
    got = client.take(len(seqs), timeout=15)
    assert [e.event for e in got] == ["message"] * len(seqs), got
    assert [e.json()["seq"] for e in got] == seqs
    assert all(e.json()["channel"] == f"room:{ROOM}" for e in got)
    if room_stream:
        assert [e.id for e in got] == [str(s) for s in seqs]
    return got


def test_post_on_b_arrives_on_a_and_resume_on_b(pair: SimpleNamespace) -> None:
    a, b, token = pair.a, pair.b, pair.token
    room_a = a.stream(ROOM_STREAM, token)
    user_a = a.stream("/api/stream", token)
    expect_ready(room_a)
    expect_ready(user_a)

    first = [pair.api_b.post_message(ROOM, f"from b {i}") for i in range(3)]
    assert [m["seq"] for m in first] == [1, 2, 3]
    got = expect_seqs(room_a, [1, 2, 3], room_stream=True)
    assert [e.json()["text"] for e in got] == [m["text"] for m in first]
    expect_seqs(user_a, [1, 2, 3], room_stream=False)

    room_cursor, user_cursor = room_a.last_event_id, user_a.last_event_id
    room_a.close()
    user_a.close()

    # posted on both services while the subscriber is away
    missed = [
        pair.api_b.post_message(ROOM, "away 1"),
        pair.api_a.post_message(ROOM, "away 2"),
        pair.api_b.post_message(ROOM, "away 3"),
    ]
    assert [m["seq"] for m in missed] == [4, 5, 6]

    room_b = b.stream(ROOM_STREAM, token, last_event_id=room_cursor)
    user_b = b.stream("/api/stream", token, last_event_id=user_cursor)
    expect_ready(room_b)
    expect_ready(user_b)
    for client, is_room in ((room_b, True), (user_b, False)):
        got = expect_seqs(client, [4, 5, 6], room_stream=is_room)
        assert [e.json()["text"] for e in got] == [m["text"] for m in missed]

    # live continues on B, fed from posts on A; a duplicate would show up before seq 8
    live = [pair.api_a.post_message(ROOM, "live 1"), pair.api_a.post_message(ROOM, "live 2")]
    assert [m["seq"] for m in live] == [7, 8]
    expect_seqs(room_b, [7, 8], room_stream=True)
    expect_seqs(user_b, [7, 8], room_stream=False)


@dataclass
class PostResult:
    index: int
    started: float
    status: int | None
    seq: int | None
    error: str | None


def test_redis_crash_and_restart_loses_nothing(pair: SimpleNamespace) -> None:
    a, b, token, redis = pair.a, pair.b, pair.token, pair.redis
    # like a browser's EventSource: if the server ends the stream, reconnect with the id
    sub = a.stream(ROOM_STREAM, token, auto_reconnect=True, max_reconnects=50)
    expect_ready(sub)

    total, interval = 200, 0.05
    results: list[PostResult] = []
    stop = threading.Event()
    poster_api = b.api(token, timeout=10)

    def poster() -> None:
        t0 = time.monotonic()
        for i in range(total):
            if stop.is_set():
                return
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            started = time.monotonic()
            try:
                resp = poster_api.post(f"/api/rooms/{ROOM}/messages", {"text": f"m{i}"})
                seq = resp.json().get("seq") if resp.status_code == 201 else None
                results.append(PostResult(i, started, resp.status_code, seq, None))
            except (requests.RequestException, ValueError) as exc:
                results.append(PostResult(i, started, None, None, repr(exc)))

    thread = threading.Thread(target=poster, name="poster", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(results) < 40 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        assert len(results) >= 40, f"poster too slow: {len(results)} posts in 30 s"
        killed_at = time.monotonic()
        redis.kill9()
        time.sleep(2.0)  # an outage, not a timing assertion
        redis.restart()
        restarted_at = time.monotonic()
        thread.join(180)
        assert not thread.is_alive(), "poster did not finish"
    finally:
        stop.set()
        thread.join(30)
    poster_done = time.monotonic()

    ok = [r for r in results if r.status == 201]
    assert len(results) == total
    before_kill = [r for r in results if r.started < killed_at - 0.2]
    assert before_kill and all(r.status == 201 for r in before_kill), [
        r for r in before_kill if r.status != 201
    ][:5]
    after_restart = [r for r in results if r.started > restarted_at]
    assert after_restart, "no post was sent after the restart; the test proves nothing"
    last = results[-10:]
    assert all(r.status == 201 for r in last), f"posts still failing well after the restart: {last}"
    ok_seqs = [r.seq for r in ok]
    assert len(set(ok_seqs)) == len(ok_seqs), "two 201s with the same seq"

    stored = [m["seq"] for m in pair.api_a.history(ROOM)]
    assert stored == list(range(1, len(stored) + 1)), "seq is not dense"
    assert set(ok_seqs) <= set(stored)

    # catch-up: up to 30 s after the restart (and at least 10 s after the last post)
    deadline = max(restarted_at + 30, poster_done + 10)
    received: list[Event] = []
    received_seqs: set[int] = set()
    want = set(stored)
    while not want <= received_seqs:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            ev = sub.next_event(min(left, 1.0))
        except StreamTimeout:
            continue
        if ev.event == "message":
            received.append(ev)
            received_seqs.add(ev.json()["seq"])
        else:
            assert ev.event == "ready", f"unexpected event {ev} (a reset loses exactness)"

    seqs = [e.json()["seq"] for e in received]
    missing = sorted(set(ok_seqs) - set(seqs))
    assert not missing, (
        f"{len(missing)} acknowledged message(s) never arrived: {missing[:20]}; "
        f"received {len(seqs)}, reconnects {sub.connections - 1}"
    )
    dups = sorted({s for s in seqs if seqs.count(s) > 1})
    assert not dups, f"duplicates: {dups[:20]}"
    assert seqs == sorted(seqs), f"out of order: {_first_disorder(seqs)}"
    assert seqs == stored, f"stored but not delivered: {sorted(set(stored) - set(seqs))[:20]}"
    texts = {r.seq: f"m{r.index}" for r in ok}
    for e in received:
        d: dict[str, Any] = e.json()
        if d["seq"] in texts:
            assert d["text"] == texts[d["seq"]], d


def _first_disorder(seqs: list[int]) -> str:
    for i in range(1, len(seqs)):
        if seqs[i] <= seqs[i - 1]:
            return f"at {i}: ...{seqs[max(0, i - 3) : i + 3]}..."
    return "none"
