"""Presence across two gunicorn processes sharing Redis, and after a worker is killed."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import psutil
import pytest

from .conftest import RedisServer, ServiceFactory
from .sse_client import SSEClient, StreamTimeout

pytestmark = pytest.mark.e2e

ROOM = "ops"
PRESENCE_ENV = {"CHAT_PRESENCE_GRACE_SECONDS": "0.5", "CHAT_PRESENCE_TTL_SECONDS": "3"}


@pytest.fixture
def pair(redis_server: RedisServer, service_factory: ServiceFactory) -> SimpleNamespace:
    a = service_factory("a", redis=redis_server, env=PRESENCE_ENV, args=("--workers", "1"))
    b = service_factory("b", redis=redis_server, env=PRESENCE_ENV, args=("--workers", "1"),
                        init_db=False)
    alice, bob = a.create_user("alice"), a.create_user("bob")
    a.api(alice).create_room(ROOM)
    assert a.api(bob).post(f"/api/rooms/{ROOM}/join").status_code == 200
    return SimpleNamespace(a=a, b=b, alice=alice, bob=bob)


def next_presence(client: SSEClient, user: str, timeout: float) -> bool:
    """The next presence event about user: its online flag."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no presence event for {user} in {timeout} s"
        event = client.next_of({"presence"}, timeout=left)
        data = event.json()
        assert event.id is None and data["room"] == ROOM
        if data["user"] == user:
            return bool(data["online"])


def online(service, token: str) -> list[str]:
    r = service.api(token).get(f"/api/rooms/{ROOM}/presence")
    assert r.status_code == 200, r.text
    return r.json()["online"]


def test_presence_crosses_processes(pair: SimpleNamespace) -> None:
    watcher = pair.b.stream("/api/stream", pair.bob, ignore=())
    assert watcher.next_event(10).event == "ready"
    assert next_presence(watcher, "bob", 10) is True

    alice = pair.a.stream(f"/api/rooms/{ROOM}/stream", pair.alice)
    assert alice.next_event(10).event == "ready"
    assert next_presence(watcher, "alice", 10) is True
    assert online(pair.b, pair.bob) == ["alice", "bob"]
    assert online(pair.a, pair.alice) == ["alice", "bob"]

    # A second stream of alice on the other process changes nothing; closing one of two
    # changes nothing either.
    alice_b = pair.b.stream("/api/stream", pair.alice)
    assert alice_b.next_event(10).event == "ready"
    alice.close()
    with pytest.raises(StreamTimeout):  # past the grace period: no presence change
        watcher.next_of({"presence"}, timeout=2.0)
    assert online(pair.b, pair.bob) == ["alice", "bob"]
    alice_b.close()
    assert next_presence(watcher, "alice", 10) is False
    assert online(pair.a, pair.alice) == ["bob"]


def test_a_killed_workers_users_go_offline_within_the_expiry(pair: SimpleNamespace) -> None:
    watcher = pair.b.stream("/api/stream", pair.bob, ignore=())
    assert watcher.next_event(10).event == "ready"
    alice = pair.a.stream("/api/stream", pair.alice)
    assert alice.next_event(10).event == "ready"
    assert next_presence(watcher, "alice", 10) is True

    assert pair.a.proc is not None
    workers = psutil.Process(pair.a.proc.pid).children()
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGKILL)
    killed = time.monotonic()
    assert alice.wait_ended(10)
    # The dead worker never says goodbye: its claim expires (3 s) and B's reaper, which
    # runs every half expiry, announces alice offline.
    assert next_presence(watcher, "alice", 15) is False
    assert time.monotonic() - killed < 10
    assert online(pair.b, pair.bob) == ["bob"]
