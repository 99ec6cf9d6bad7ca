"""Membership events and mentions over real streams, in embedded mode."""

from __future__ import annotations

import pytest

from .conftest import ServiceFactory
from .sse_client import SSEClient, StreamTimeout

pytestmark = pytest.mark.e2e

ROOM = "team"
# Without the store resync, an event that is not sent live never arrives.
LIVE_ONLY = {"CHAT_RESYNC_SECONDS": "0"}


def events(client: SSEClient, n: int) -> list[tuple[str, dict]]:
    return [(e.event, e.json()) for e in client.take(n, timeout=10)]


def test_membership_events_and_mentions(service_factory: ServiceFactory) -> None:
    svc = service_factory("m", env=LIVE_ONLY)
    alice, bob, carol = (svc.create_user(n) for n in ("alice", "bob", "carol"))
    a, b, c = svc.api(alice), svc.api(bob), svc.api(carol)
    a.create_room(ROOM)
    room = svc.stream(f"/api/rooms/{ROOM}/stream", alice)
    bob_all = svc.stream("/api/stream", bob)
    assert room.next_event(10).event == "ready" and bob_all.next_event(10).event == "ready"

    assert b.post(f"/api/rooms/{ROOM}/join").status_code == 200
    assert a.post(f"/api/rooms/{ROOM}/members", {"username": "carol"}).status_code == 201
    got = events(room, 2)
    assert [(t, d["user"], d.get("by")) for t, d in got] == [
        ("member.joined", "bob", None), ("member.joined", "carol", "alice")]
    # Bob's own stream picks the room up from his join on.
    assert [(t, d["user"]) for t, d in events(bob_all, 2)] == [
        ("member.joined", "bob"), ("member.joined", "carol")]

    a.post_message(ROOM, "@bob can you look? cc @carol")
    got = events(bob_all, 2)
    kinds = {t: d for t, d in got}
    assert set(kinds) == {"message", "notification"}
    assert kinds["notification"]["kind"] == "mention"
    assert kinds["notification"]["ref"] == {"room": ROOM, "seq": 3}
    listed = {r["name"]: r for r in b.get("/api/rooms").json()["rooms"]}
    assert (listed[ROOM]["unread"], listed[ROOM]["mentions"]) == (1, 1)
    assert b.get("/api/notifications").json()["unread"] == 1

    assert c.post(f"/api/rooms/{ROOM}/leave").status_code == 200
    assert [(t, d.get("user")) for t, d in events(room, 2)] == [
        ("message", None), ("member.left", "carol")]
    assert [(t, d["user"]) for t, d in events(bob_all, 1)] == [("member.left", "carol")]
    with pytest.raises(StreamTimeout):
        bob_all.next_event(1.0)  # nothing else, nothing twice
