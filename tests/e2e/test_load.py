"""Load on one embedded-mode service: concurrent posters, and a client that stops reading."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from .conftest import ServiceFactory
from .sse_client import Event, SSEClient

pytestmark = pytest.mark.e2e

ROOM = "load"
ROOM_STREAM = f"/api/rooms/{ROOM}/stream"


def expect_ready(client: SSEClient) -> None:
    ev = client.next_event(10)
    assert ev.event == "ready", ev


def collect_messages(client: SSEClient, n: int, timeout: float) -> list[Event]:
    """The next n events, all of which must be messages of ROOM."""
    got = client.take(n, timeout=timeout)
    others = [e for e in got if e.event != "message"]
    assert not others, f"unexpected events: {others[:3]}"
    return got


def test_concurrent_posters_every_subscriber_sees_every_seq_once(
    service_factory: ServiceFactory,
) -> None:
    svc = service_factory("load")
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room(ROOM)
    subs = [svc.stream(ROOM_STREAM, token) for _ in range(3)]
    user = svc.stream("/api/stream", token)
    for c in [*subs, user]:
        expect_ready(c)

    threads_n, per_thread = 10, 50
    total = threads_n * per_thread
    posted: list[list[dict[str, Any]]] = [[] for _ in range(threads_n)]
    errors: list[str] = []
    barrier = threading.Barrier(threads_n, timeout=30)
    apis = [svc.api(token, timeout=30) for _ in range(threads_n)]

    def poster(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                resp = apis[k].post(f"/api/rooms/{ROOM}/messages", {"text": f"t{k}-{i}"})
                if resp.status_code != 201:
                    errors.append(f"t{k}-{i}: {resp.status_code} {resp.text[:200]}")
                    return
                posted[k].append(resp.json())
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(f"t{k}: {exc!r}")

    threads = [threading.Thread(target=poster, args=(k,), daemon=True) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "posters did not finish in 120 s"
    assert not errors, errors[:5]

    by_seq: dict[int, dict[str, Any]] = {}
    for k, msgs in enumerate(posted):
        assert len(msgs) == per_thread
        seqs = [m["seq"] for m in msgs]
        assert seqs == sorted(seqs), f"thread {k}: later post got a lower seq: {seqs}"
        for m in msgs:
            assert m["seq"] not in by_seq, f"seq {m['seq']} given twice"
            by_seq[m["seq"]] = m
    assert sorted(by_seq) == list(range(1, total + 1))

    for name, client, is_room in [
        *((f"room sub {i}", c, True) for i, c in enumerate(subs)),
        ("user stream", user, False),
    ]:
        got = collect_messages(client, total, timeout=60)
        seqs = [e.json()["seq"] for e in got]
        assert seqs == list(range(1, total + 1)), f"{name}: first problem near {_diff(seqs)}"
        for e in got:
            d = e.json()
            m = by_seq[d["seq"]]
            assert (d["id"], d["text"], d["channel"]) == (m["id"], m["text"], f"room:{ROOM}")
            if is_room:
                assert e.id == str(d["seq"])
            else:
                assert e.id
        if not is_room:
            assert len({e.id for e in got}) == total, f"{name}: ids repeat"

    history = api.history(ROOM)
    assert [m["seq"] for m in history] == list(range(1, total + 1))
    for h in history:
        assert (h["id"], h["text"]) == (by_seq[h["seq"]]["id"], by_seq[h["seq"]]["text"])

    # no extra event trails the 500: the next one is the next message
    marker = api.post_message(ROOM, "marker")
    for client in [*subs, user]:
        ev = client.next_event(15)
        assert ev.event == "message" and ev.json()["seq"] == marker["seq"] == total + 1, ev


def _diff(seqs: list[int]) -> str:
    for i, s in enumerate(seqs):
        if s != i + 1:
            return f"index {i}: {seqs[max(0, i - 3) : i + 4]}"
    return f"length {len(seqs)}"


def _open_raw_stream(host: str, port: int, path: str, token: str) -> socket.socket:
    """A stream read by hand, with a small receive buffer set before connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = b""
        deadline = time.monotonic() + 10
        while b"event: ready" not in head:
            assert time.monotonic() < deadline, f"no ready on the raw stream: {head[:500]!r}"
            chunk = sock.recv(4096)
            assert chunk, f"raw stream closed early: {head[:500]!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    except BaseException:
        sock.close()
        raise
    return sock


def test_slow_client_is_dropped_without_delaying_others(service_factory: ServiceFactory) -> None:
    write_timeout = 5
    svc = service_factory(
        "slow",
        env={
            "CHAT_CLIENT_QUEUE_SIZE": "32",
            "CHAT_WRITE_TIMEOUT_SECONDS": str(write_timeout),
            "CHAT_MAX_MESSAGE_BYTES": "65536",
        },
    )
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room(ROOM)

    normal = svc.stream(ROOM_STREAM, token)
    expect_ready(normal)
    slow = _open_raw_stream("127.0.0.1", svc.port, ROOM_STREAM, token)
    svc.defer(slow.close)
    # from here on the slow client reads nothing

    # Loopback send buffers autotune to ~3-4 MB: post ~9.6 MB so they must fill up.
    # Posts follow a steady schedule; latency counts from the start of each POST, and a
    # POST that stalls (a fan-out that waits for the slow client) counts as well.
    count, size, interval = 200, 48 * 1024, 0.025
    post_started: dict[int, float] = {}
    post_durations: list[float] = []
    t0 = time.monotonic()
    for i in range(count):
        due = t0 + i * interval
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        text = f"{i:06d}" + "x" * (size - 6)
        start = time.monotonic()
        m = api.post_message(ROOM, text)
        post_durations.append(time.monotonic() - start)
        post_started[m["seq"]] = start
    posting_done = time.monotonic()

    got = collect_messages(normal, count, timeout=60)
    seqs = [e.json()["seq"] for e in got]
    assert seqs == list(range(1, count + 1)), _diff(seqs)
    for e in got:
        assert len(e.json()["text"]) == size
    latencies = sorted(e.received_at - post_started[e.json()["seq"]] for e in got)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    worst_post = max(post_durations)
    assert p99 < 1.0, (
        f"normal client p99 latency {p99:.3f}s (max {latencies[-1]:.3f}s, "
        f"slowest POST {worst_post:.3f}s)"
    )
    assert latencies[-1] < write_timeout - 1, (
        f"a message took {latencies[-1]:.3f}s: the slow client held the others up"
    )
    assert worst_post < write_timeout - 1, f"a POST took {worst_post:.3f}s"

    # Give the server its write timeout (the queue should have overflowed long before),
    # then drain: the connection must end, not go on with heartbeats.
    time.sleep(max(0.0, posting_done + write_timeout + 3 - time.monotonic()))
    slow.settimeout(1.0)
    drained = 0
    closed_by = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = slow.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed_by = "reset"
            break
        if not data:
            closed_by = "eof"
            break
        drained += len(data)
    assert closed_by, (
        f"the server never closed the slow client's stream ({drained} bytes drained, "
        f"{count * size} posted)"
    )

    # the normal client lives on
    m = api.post_message(ROOM, "after the slow client")
    ev = normal.next_event(15)
    assert ev.event == "message" and ev.json()["seq"] == m["seq"], ev
