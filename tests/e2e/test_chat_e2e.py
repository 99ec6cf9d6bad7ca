"""Chat features end to end: DMs, read state across devices, idempotent sends, typing,
edits and deletes, notifications; one gunicorn (in-process broker), and two gunicorns
sharing one SQLite file and one redis-server.

tests/test_chat.py is the ground truth of the behaviour; these tests check that it holds
over real sockets, real gevent workers and (last test) Redis between processes.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from .conftest import Api, RedisServer, Service, ServiceFactory
from .sse_client import SSEClient

pytestmark = pytest.mark.e2e

ROOM = "general"
DM = "alice~bob"
WAIT = 15.0  # the bound on every wait for a stream event

# `presence` (a user's streams opening and closing) goes to every room of that user, so it
# may show up between any two events of the tests below: SSEClient keeps it out of its
# queue by default.

# The store backstop (a periodic resync from the database) is off: every event must come
# through the broker's live path, in real time. With it on, an event whose publish was
# forgotten would still arrive within CHAT_RESYNC_SECONDS from the store (and, with two
# processes on one SQLite file, even without Redis), and these tests could not tell.
LIVE_ONLY = {"CHAT_RESYNC_SECONDS": "0"}


# --------------------------------------------------------------------------- helpers


def users(svc: Service, *names: str) -> SimpleNamespace:
    """name -> Api bound to that user's token, and tokens[name]."""
    tokens = {name: svc.register(name) for name in names}
    ns = SimpleNamespace(tokens=tokens)
    for name, token in tokens.items():
        setattr(ns, name, svc.api(token))
    return ns


def expect_ready(client: SSEClient) -> dict[str, Any]:
    ev = client.next_event(WAIT)
    assert ev.event == "ready", f"first event must be ready, got {ev}"
    assert ev.id is not None and ev.json()["cursor"] == ev.id, ev
    data: dict[str, Any] = ev.json()
    return data


def rooms_of(api: Api) -> dict[str, dict[str, Any]]:
    r = api.get("/api/rooms")
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return {room["name"]: room for room in r.json()["rooms"]}


def ready_room(ready: dict[str, Any], room: str) -> dict[str, Any]:
    found = [r for r in ready["rooms"] if r["room"] == room]
    assert len(found) == 1, f"{room} not once in ready rooms: {ready['rooms']}"
    return found[0]


def expect_json_error(svc: Service, token: str, path: str, status: int, code: str) -> None:
    """A GET (also of a stream URL) refused with a JSON error before any stream starts."""
    with requests.get(
        svc.base + path,
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        stream=True,
        timeout=10,
    ) as resp:
        body = resp.raw.read(65536, decode_content=True)
        assert resp.status_code == status, (path, resp.status_code, body[:300])
        assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
        assert json.loads(body)["error"]["code"] == code, body[:300]


def make_room_with_bob(ns: SimpleNamespace) -> None:
    """alice creates ROOM (no event), bob joins it (seq 1, member.joined)."""
    ns.alice.create_room(ROOM)
    r = ns.bob.post(f"/api/rooms/{ROOM}/join")
    assert r.status_code == 200, (r.status_code, r.text[:500])


@pytest.fixture
def chat(service_factory: ServiceFactory) -> SimpleNamespace:
    """One gunicorn (gevent, in-process broker) and users alice, bob, carol."""
    svc = service_factory("embedded", env=LIVE_ONLY)
    ns = users(svc, "alice", "bob", "carol")
    ns.svc = svc
    return ns


# --------------------------------------------------------------------------- 1. DMs


def test_direct_message_reaches_open_stream_and_stays_private(chat: SimpleNamespace) -> None:
    svc, alice, bob, carol = chat.svc, chat.alice, chat.bob, chat.carol
    bob_stream = svc.stream("/api/stream", chat.tokens["bob"])
    ready = expect_ready(bob_stream)
    assert ready["rooms"] == [], ready  # no DM room exists yet

    r = alice.post("/api/users/bob/messages", {"text": "psst", "client_msg_id": "d1"})
    assert r.status_code == 201, (r.status_code, r.text[:500])
    message = r.json()
    assert (message["room"], message["channel"], message["sender"]) == (
        DM,
        f"room:{DM}",
        "alice",
    ), message
    assert (message["text"], message["client_msg_id"]) == ("psst", "d1"), message

    # The DM room joins bob's open stream: his own join, then the message, nothing else.
    joined, got = bob_stream.take(2, WAIT)
    assert joined.event == "member.joined", joined
    assert (joined.json()["user"], joined.json()["by"], joined.json()["room"]) == (
        "bob",
        "alice",
        DM,
    ), joined
    assert joined.id, "a stored event carries an id"
    assert got.event == "message", got
    data = got.json()
    assert data["id"] == message["id"] and data["seq"] == message["seq"], (data, message)
    assert (data["text"], data["client_msg_id"], data["sender"]) == ("psst", "d1", "alice")
    assert data["channel"] == f"room:{DM}" and got.id and got.id != joined.id

    # The same client_msg_id again: 200, the original, nothing new on the stream.
    again = alice.post("/api/users/bob/messages", {"text": "psst!", "client_msg_id": "d1"})
    assert again.status_code == 200 and again.json() == message, (again.status_code, again.text)

    for api, me, other in ((alice, "alice", "bob"), (bob, "bob", "alice")):
        listed = rooms_of(api)
        assert DM in listed, (me, listed)
        dm = listed[DM]
        assert (dm["kind"], dm["with"], dm["member"]) == ("dm", other, True), (me, dm)
    assert rooms_of(bob)[DM]["unread"] == 1
    assert rooms_of(alice)[DM]["unread"] == 0
    assert DM not in rooms_of(carol)

    # A third user cannot see the DM room at all: 404, as if it did not exist.
    expect_json_error(svc, chat.tokens["carol"], f"/api/rooms/{DM}/messages", 404, "room_not_found")
    expect_json_error(svc, chat.tokens["carol"], f"/api/rooms/{DM}/stream", 404, "room_not_found")

    # bob answers in the room itself; the next stored event on his stream is that reply
    # (the repeated send above stored and sent nothing).
    reply = bob.post_message(DM, "hi back")
    ev = bob_stream.next_event(WAIT)
    assert ev.event == "message" and ev.json()["seq"] == reply["seq"] == message["seq"] + 1, ev
    texts = [m["text"] for m in alice.history(DM) if m["type"] == "message"]
    assert texts == ["psst", "hi back"]


# --------------------------------------------------------------------------- 2. devices


def test_read_on_one_device_reaches_every_device(chat: SimpleNamespace) -> None:
    svc, alice, bob = chat.svc, chat.alice, chat.bob
    make_room_with_bob(chat)
    token = chat.tokens["bob"]
    phone = svc.stream("/api/stream", token)
    laptop = svc.stream("/api/stream", token)
    for device in (phone, laptop):
        assert ready_room(expect_ready(device), ROOM)["unread"] == 0

    sent = alice.post_message(ROOM, "hello bob")
    for device in (phone, laptop):
        ev = device.next_event(WAIT)
        assert ev.event == "message" and ev.json()["id"] == sent["id"], ev
    assert rooms_of(bob)[ROOM]["unread"] == 1

    r = bob.post(f"/api/rooms/{ROOM}/read", {"seq": sent["seq"]})
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.json() == {"room": ROOM, "read_seq": sent["seq"], "unread": 0, "mentions": 0}

    reads = []
    for device in (phone, laptop):
        ev = device.next_event(WAIT)
        assert ev.event == "read" and ev.id, ev
        data = ev.json()
        assert (data["room"], data["read_seq"], data["unread"]) == (ROOM, sent["seq"], 0), data
        assert data["channel"] == "user:bob", data
        reads.append(ev)
    assert reads[0].data == reads[1].data, reads

    # A connection opened afterwards starts from the same state.
    third = svc.stream("/api/stream", token)
    state = ready_room(expect_ready(third), ROOM)
    assert (state["unread"], state["read_seq"]) == (0, sent["seq"]), state
    third.close()
    assert rooms_of(bob)[ROOM]["unread"] == 0

    # The phone drops off after the read; one message comes while it is away. Resuming
    # with its last id replays exactly that message: not the `read` nor the message it
    # had already seen (they would come first), then it continues live.
    cursor = phone.last_event_id
    assert cursor == reads[0].id
    phone.close()
    away = alice.post_message(ROOM, "while the phone was away")
    ev = laptop.next_event(WAIT)
    assert ev.event == "message" and ev.json()["seq"] == away["seq"], ev
    phone.reconnect()
    assert phone.connections == 2
    resumed = expect_ready(phone)
    assert resumed["cursor"] == cursor, (resumed["cursor"], cursor)
    ev = phone.next_event(WAIT)
    assert ev.event == "message" and ev.json()["seq"] == away["seq"], f"replayed: {ev}"
    assert ev.connection == 1 and ev.id == laptop.last_event_id, (ev, laptop.last_event_id)
    marker = alice.post_message(ROOM, "marker")
    for device in (phone, laptop):
        ev = device.next_event(WAIT)
        assert ev.event == "message" and ev.json()["seq"] == marker["seq"], ev


# --------------------------------------------------------------------------- 3. idempotency


def test_concurrent_sends_with_one_client_msg_id_store_one_message(
    chat: SimpleNamespace,
) -> None:
    svc, alice = chat.svc, chat.alice
    make_room_with_bob(chat)
    room_stream = svc.stream(f"/api/rooms/{ROOM}/stream", chat.tokens["bob"])
    expect_ready(room_stream)

    n = 20
    clients = [svc.api(chat.tokens["alice"]) for _ in range(n)]
    barrier = threading.Barrier(n, timeout=15)

    def send(i: int) -> requests.Response:
        barrier.wait()
        # A different text each time: a repeat is answered with the original, unread.
        return clients[i].post(
            f"/api/rooms/{ROOM}/messages", {"text": f"attempt {i}", "client_msg_id": "burst-1"}
        )

    with ThreadPoolExecutor(max_workers=n) as pool:
        responses = list(pool.map(send, range(n), timeout=60))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (n - 1) + [201], statuses
    created = next(r.json() for r in responses if r.status_code == 201)
    assert created["client_msg_id"] == "burst-1" and created["text"].startswith("attempt ")
    for r in responses:
        assert r.json() == created, (r.status_code, r.json(), created)

    marker = alice.post_message(ROOM, "after the burst")
    assert marker["seq"] == created["seq"] + 1, "the burst stored more than one event"
    got = room_stream.take(2, WAIT)
    assert [(e.event, e.id) for e in got] == [
        ("message", str(created["seq"])),
        ("message", str(marker["seq"])),
    ], got
    assert got[0].json() == created

    stored = [m for m in alice.history(ROOM) if m.get("client_msg_id") == "burst-1"]
    assert stored == [created], stored


# --------------------------------------------------------------------------- 4. typing


def test_typing_is_live_only(chat: SimpleNamespace) -> None:
    svc, alice, bob = chat.svc, chat.alice, chat.bob
    make_room_with_bob(chat)
    before = alice.history(ROOM)
    last_seq = rooms_of(alice)[ROOM]["last_seq"]
    room_stream = svc.stream(f"/api/rooms/{ROOM}/stream", chat.tokens["bob"])
    expect_ready(room_stream)

    r = alice.post(f"/api/rooms/{ROOM}/typing", {"typing": True})
    assert r.status_code == 200 and r.json()["sent"] is True, (r.status_code, r.text)
    ev = room_stream.next_event(WAIT)
    assert ev.event == "typing", ev
    assert ev.id is None, f"typing is ephemeral and must carry no id: {ev}"
    data = ev.json()
    assert (data["user"], data["typing"], data["room"]) == ("alice", True, ROOM), data
    assert data["channel"] == f"room:{ROOM}" and 0 < data["expires_in"] <= 10, data
    assert room_stream.last_event_id == str(last_seq), "typing moved the stream's cursor"

    # Stopping, as a form body.
    r = alice.request("POST", f"/api/rooms/{ROOM}/typing", data={"typing": "false"})
    assert r.status_code == 200 and r.json()["sent"] is True, (r.status_code, r.text)
    ev = room_stream.next_event(WAIT)
    assert ev.event == "typing" and ev.id is None and ev.json()["typing"] is False, ev

    # Nothing was stored: history and last_seq are unchanged, and the next stored event
    # takes the next seq.
    assert alice.history(ROOM) == before
    assert bob.history(ROOM) == before
    assert rooms_of(alice)[ROOM]["last_seq"] == last_seq
    marker = alice.post_message(ROOM, "marker")
    assert marker["seq"] == last_seq + 1
    ev = room_stream.next_event(WAIT)
    assert ev.event == "message" and ev.id == str(marker["seq"]), ev


# --------------------------------------------------------------------------- 5. edits


def test_edit_and_delete_reach_the_stream_and_the_history(chat: SimpleNamespace) -> None:
    svc, alice, bob = chat.svc, chat.alice, chat.bob
    make_room_with_bob(chat)  # seq 1
    sent = alice.post_message(ROOM, "helo wrold")  # seq 2
    seq = sent["seq"]
    room_stream = svc.stream(f"/api/rooms/{ROOM}/stream", chat.tokens["bob"])
    expect_ready(room_stream)

    r = alice.request("PATCH", f"/api/rooms/{ROOM}/messages/{seq}", json={"text": "hello world"})
    assert r.status_code == 200, (r.status_code, r.text[:500])
    edited = r.json()
    assert (edited["seq"], edited["id"], edited["text"]) == (seq, sent["id"], "hello world")
    assert edited["edited_at"].endswith("Z"), edited

    ev = room_stream.next_event(WAIT)
    assert ev.event == "message.updated" and ev.id == str(seq + 1), ev
    data = ev.json()
    assert (data["target_seq"], data["text"], data["seq"]) == (seq, "hello world", seq + 1)

    current = {m["seq"]: m for m in bob.history(ROOM)}
    assert current[seq]["text"] == "hello world" and current[seq]["edited_at"], current[seq]

    r = bob.request("PATCH", f"/api/rooms/{ROOM}/messages/{seq}", json={"text": "hijack"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_the_sender", r.text

    r = alice.request("DELETE", f"/api/rooms/{ROOM}/messages/{seq}")
    assert r.status_code == 204 and r.content == b"", (r.status_code, r.text[:500])
    ev = room_stream.next_event(WAIT)
    assert ev.event == "message.deleted" and ev.id == str(seq + 2), ev
    data = ev.json()
    assert (data["target_seq"], data["text"], data["seq"]) == (seq, None, seq + 2), data
    assert data["deleted"] is True, data

    history = {m["seq"]: m for m in bob.history(ROOM)}
    assert sorted(history) == [1, seq, seq + 1, seq + 2], sorted(history)
    assert history[seq]["type"] == "message", history[seq]
    assert history[seq]["text"] is None and history[seq]["deleted"] is True, history[seq]
    assert history[seq + 1]["type"] == "message.updated", history[seq + 1]
    assert history[seq + 1]["text"] is None, f"the edit kept the text: {history[seq + 1]}"
    assert not any("hel" in str(m) for m in history.values()), history

    r = alice.request("DELETE", f"/api/rooms/{ROOM}/messages/{seq}")
    assert r.status_code == 404, (r.status_code, r.text[:500])
    # a second delete stored and sent nothing: the next event is the next message
    marker = alice.post_message(ROOM, "marker")
    assert marker["seq"] == seq + 3
    ev = room_stream.next_event(WAIT)
    assert ev.event == "message" and ev.id == str(seq + 3), ev


# --------------------------------------------------------------------------- 6. notifications


def test_notification_from_a_form_post(chat: SimpleNamespace) -> None:
    svc, alice = chat.svc, chat.alice
    stream = svc.stream("/api/stream", chat.tokens["alice"])
    ready = expect_ready(stream)
    assert ready["notifications"] == {"unread": 0, "read_seq": 0}, ready

    # As `curl -d title=... -d body=...` sends it: application/x-www-form-urlencoded.
    r = alice.request(
        "POST",
        "/api/users/alice/notifications",
        data={"title": "Backup done", "body": "nightly, 3 GB"},
    )
    assert r.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert r.status_code == 201, (r.status_code, r.text[:500])
    note = r.json()
    assert (note["type"], note["kind"], note["title"], note["body"], note["level"]) == (
        "notification",
        "notification",
        "Backup done",
        "nightly, 3 GB",
        "info",
    ), note
    assert (note["sender"], note["channel"], note["url"]) == ("alice", "user:alice", None)

    ev = stream.next_event(WAIT)
    assert ev.event == "notification", ev
    assert ev.id, f"a notification is stored and carries an id: {ev}"
    assert ev.json() == note

    listed = alice.get("/api/notifications")
    assert listed.status_code == 200, (listed.status_code, listed.text[:500])
    body = listed.json()
    assert body["notifications"] == [note], body
    assert (body["unread"], body["read_seq"]) == (1, 0), body

    # A stream opened now starts from the same count.
    again = svc.stream("/api/stream", chat.tokens["alice"])
    assert expect_ready(again)["notifications"] == {"unread": 1, "read_seq": 0}

    # Someone else's token may not notify alice.
    r = chat.bob.request("POST", "/api/users/alice/notifications", data={"title": "spam"})
    assert r.status_code == 403, (r.status_code, r.text[:500])
    assert alice.get("/api/notifications").json()["unread"] == 1


# --------------------------------------------------------------------------- 7. redis


@pytest.fixture
def pair(redis_server: RedisServer, service_factory: ServiceFactory) -> SimpleNamespace:
    """Services A and B: one SQLite file, one redis-server, one worker each."""
    a = service_factory("a", redis=redis_server, env=LIVE_ONLY, args=("--workers", "1"))
    b = service_factory(
        "b", redis=redis_server, env=LIVE_ONLY, args=("--workers", "1"), init_db=False
    )
    assert a.db_path == b.db_path
    tokens = {name: a.register(name) for name in ("alice", "bob")}
    return SimpleNamespace(a=a, b=b, tokens=tokens)


def test_dm_and_read_cross_processes_through_redis(pair: SimpleNamespace) -> None:
    a, b, tokens = pair.a, pair.b, pair.tokens
    alice_b, bob_b = b.api(tokens["alice"]), b.api(tokens["bob"])
    bob_on_a = a.stream("/api/stream", tokens["bob"])
    assert expect_ready(bob_on_a)["rooms"] == []

    r = alice_b.post("/api/users/bob/messages", {"text": "via b", "client_msg_id": "x1"})
    assert r.status_code == 201, (r.status_code, r.text[:500])
    message = r.json()
    assert message["room"] == DM

    joined, got = bob_on_a.take(2, WAIT)
    assert joined.event == "member.joined" and joined.json()["user"] == "bob", joined
    assert got.event == "message", got
    assert got.json()["id"] == message["id"], (got.json(), message)
    assert (got.json()["text"], got.json()["client_msg_id"]) == ("via b", "x1")

    r = bob_b.post(f"/api/rooms/{DM}/read", {"seq": message["seq"]})
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert (r.json()["read_seq"], r.json()["unread"]) == (message["seq"], 0), r.json()

    ev = bob_on_a.next_event(WAIT)
    assert ev.event == "read" and ev.id, ev
    data = ev.json()
    assert (data["room"], data["read_seq"], data["unread"], data["channel"]) == (
        DM,
        message["seq"],
        0,
        "user:bob",
    ), data
