"""Presence: in-process through the test client, and shared through a real Redis."""

import time

import pytest
from sse_frames import ClientStream

from chat import create_app
from chat.presence import RedisPresence


@pytest.fixture
def quick_app(tmp_path):
    app = create_app({
        "TESTING": True, "SECRET_KEY": "t", "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "REDIS_URL": None, "CHAT_PASSWORD_HASH": "pbkdf2:sha256:1000",
        "CHAT_HEARTBEAT_SECONDS": 0.4, "CHAT_PRESENCE_GRACE_SECONDS": 0.5,
    })
    yield app
    app.extensions["chat"].hub.shutdown()
    app.extensions["chat"].store.dispose()


def user(app, name):
    client = app.test_client()
    client.post("/api/users", json={"username": name, "password": "password123"})
    client.post("/api/session", json={"username": name, "password": "password123"})
    token = client.post("/api/tokens", json={}).get_json()["token"]
    client.delete("/api/session")
    return client, {"Authorization": f"Bearer {token}"}


def stream(client, headers, path="/api/stream"):
    return ClientStream(client.get(path, headers=headers, buffered=False), ignore=())


def presence_events(s, count, max_chunks=12):
    out = []
    while len(out) < count:
        frame = s.next(max_chunks=max_chunks)
        if frame is None:
            break
        if frame.event == "presence":
            out.append((frame.json()["user"], frame.json()["online"]))
    return out


def test_online_offline_with_a_grace_period(quick_app):
    alice, ah = user(quick_app, "alice")
    bob, bh = user(quick_app, "bob")
    alice.post("/api/rooms", json={"name": "general"}, headers=ah)
    bob.post("/api/rooms/general/join", headers=bh)

    watcher = stream(bob, bh)
    assert watcher.next().event == "ready"
    assert presence_events(watcher, 1) == [("bob", True)]  # bob's own arrival

    a1 = stream(alice, ah)
    assert a1.next().event == "ready"
    event = presence_events(watcher, 1)
    assert event == [("alice", True)]
    r = bob.get("/api/rooms/general/presence", headers=bh).get_json()
    assert r == {"room": "general", "online": ["alice", "bob"], "count": 2, "members": 2}

    # A reconnect blip (close, reopen within the grace period) announces nothing.
    a1.close()
    a2 = stream(alice, ah, "/api/rooms/general/stream")
    assert a2.next().event == "ready"
    time.sleep(0.8)
    assert presence_events(watcher, 1, max_chunks=3) == []

    a2.close()
    assert bob.get("/api/rooms/general/presence", headers=bh).get_json()["count"] == 2
    assert presence_events(watcher, 1) == [("alice", False)]
    r = bob.get("/api/rooms/general/presence", headers=bh).get_json()
    assert r["online"] == ["bob"] and r["count"] == 1
    watcher.close()


def test_presence_needs_membership(quick_app):
    alice, ah = user(quick_app, "alice")
    carol, ch = user(quick_app, "carol")
    alice.post("/api/rooms", json={"name": "secret", "private": True}, headers=ah)
    assert carol.get("/api/rooms/secret/presence", headers=ch).status_code == 404
    assert carol.get("/api/rooms/secret/presence").status_code == 401


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, user_id, online):
        self.calls.append((user_id, online))


def worker(redis_url, ttl=30.0):
    presence = RedisPresence(redis_url, grace_seconds=0.0, ttl_seconds=ttl)
    presence.announce = Recorder()
    return presence


def test_redis_presence_transitions_happen_once_across_workers(redis_url):
    w1, w2 = worker(redis_url), worker(redis_url)
    try:
        w1.opened(7)
        w2.opened(7)
        w2.opened(7)
        assert w1.announce.calls == [(7, True)] and w2.announce.calls == []
        assert w1.online([7, 8]) == w2.online([7, 8]) == {7}
        w1.closed(7)
        w1.tick()
        assert w1.announce.calls == [(7, True)]  # w2 still has two streams of user 7
        w2.closed(7)
        w2.tick()
        assert w2.announce.calls == []
        w2.closed(7)
        w2.tick()
        assert w2.announce.calls == [(7, False)]
        assert w1.online([7]) == set()
    finally:
        w1.close()
        w2.close()


def test_redis_presence_expires_the_users_of_a_dead_worker(redis_url):
    survivor, doomed = worker(redis_url, ttl=1.0), worker(redis_url, ttl=1.0)
    try:
        doomed.opened(5)
        survivor.opened(6)
        assert doomed.announce.calls == [(5, True)]
        # The doomed worker stops here: no refresh, no release. The survivor keeps its
        # own user alive and reaps the other.
        deadline = time.monotonic() + 10
        while (5, False) not in survivor.announce.calls and time.monotonic() < deadline:
            survivor.tick()
            time.sleep(0.1)
        assert survivor.announce.calls.count((5, False)) == 1
        assert survivor.online([5, 6]) == {6}
        survivor.tick()
        assert survivor.announce.calls.count((5, False)) == 1
    finally:
        survivor.close()
        doomed.close()


def test_the_typing_limit_is_shared_by_workers_through_redis(redis_url):
    from chat.ratelimit import RedisRateLimiter

    w1 = RedisRateLimiter(redis_url, rate=1.0, burst=5)
    w2 = RedisRateLimiter(redis_url, rate=1.0, burst=5)
    try:
        waits = [(w1 if i % 2 else w2).take("user:1") for i in range(8)]
        assert waits[:5] == [0.0] * 5
        assert all(0 < w <= 5.0 for w in waits[5:])
        assert w1.take("user:2") == 0.0  # keys are apart
    finally:
        w1.close()
        w2.close()
