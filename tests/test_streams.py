"""Streams through the test client with the in-process broker: framing, replay, resume."""

import pytest
from sse_frames import ClientStream


def open_stream(api, path, **headers):
    r = api.client.get(path, headers={**api.headers, **headers}, buffered=False)
    return ClientStream(r)


@pytest.fixture
def room(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    return alice


def post(api, text, room="general"):
    r = api.post(f"/api/rooms/{room}/messages", json={"text": text})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_headers_first_comment_and_ready(room):
    s = open_stream(room, "/api/rooms/general/stream")
    assert s.response.headers["Content-Type"] == "text/event-stream"
    assert s.response.headers["Cache-Control"] == "no-cache"
    assert s.response.headers["X-Accel-Buffering"] == "no"
    first = next(s._chunks)
    assert first.startswith(b":")
    s.parser.feed(first)
    assert s.parser.retry and s.parser.retry > 0
    ready = s.next()
    assert ready.event == "ready" and ready.id == "0"
    assert ready.json() == {"cursor": "0", "rooms": [
        {"room": "general", "kind": "room", "last_seq": 0, "unread": 0, "mentions": 0,
         "read_seq": 0}]}
    s.close()


def test_live_messages_with_ids_and_exact_text(room):
    s = open_stream(room, "/api/rooms/general/stream")
    assert s.next().event == "ready"
    text = "line one\nline two\r\nevent: forged\n\nid: 99"
    sent = post(room, text)
    frame = s.next()
    assert frame.event == "message" and frame.id == "1"
    data = frame.json()
    assert data["text"] == text and data["seq"] == 1 and data["channel"] == "room:general"
    assert {k: data[k] for k in sent} == sent
    s.close()


def test_heartbeat_comments(room):
    s = open_stream(room, "/api/rooms/general/stream")
    s.next()
    before = s.parser.comments
    for _ in range(6):  # heartbeats (and the stream's own presence) only
        assert s.next(max_chunks=1) is None
        if s.parser.comments >= before + 2:
            break
    assert s.parser.comments >= before + 2
    s.close()


def test_resume_with_last_event_id_replays_exactly_the_missed(room):
    for i in range(1, 6):
        post(room, f"m{i}")
    s = open_stream(room, "/api/rooms/general/stream", **{"Last-Event-ID": "2"})
    assert s.next().event == "ready"
    frames = s.take(3, "message")
    assert [f.id for f in frames] == ["3", "4", "5"]
    assert [f.json()["text"] for f in frames] == ["m3", "m4", "m5"]
    post(room, "m6")
    assert s.next().id == "6"
    s.close()

    s = open_stream(room, "/api/rooms/general/stream?last_event_id=5")
    s.next()
    assert s.next().id == "6"
    s.close()


@pytest.mark.parametrize("cursor, reason", [("garbage", "malformed_cursor"),
                                            ("1.0_2.0", "malformed_cursor"),
                                            ("999", "unknown_cursor")])
def test_bad_cursor_on_room_stream_resets_then_goes_live(room, cursor, reason):
    post(room, "old")
    s = open_stream(room, "/api/rooms/general/stream", **{"Last-Event-ID": cursor})
    assert s.next().event == "ready"
    reset = s.next()
    assert reset.event == "reset" and reset.json()["reason"] == reason
    assert reset.id == "1"
    post(room, "new")
    frame = s.next()
    assert frame.event == "message" and frame.json()["text"] == "new"
    s.close()


def test_too_far_behind_resets(app, room):
    app.config["CHAT_REPLAY_LIMIT"] = 3
    for i in range(5):
        post(room, f"m{i}")
    s = open_stream(room, "/api/rooms/general/stream", **{"Last-Event-ID": "1"})
    s.next()
    assert s.next().json()["reason"] == "too_far_behind"
    s.close()
    s = open_stream(room, "/api/rooms/general/stream", **{"Last-Event-ID": "2"})
    s.next()
    assert [f.id for f in s.take(3, "message")] == ["3", "4", "5"]
    s.close()


def test_user_stream_carries_all_rooms_and_resumes(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "one"})
    alice.post("/api/rooms", json={"name": "two"})
    s = open_stream(alice, "/api/stream")
    ready = s.next()
    assert ready.event == "ready" and ready.id == ready.json()["cursor"]
    assert [r["room"] for r in ready.json()["rooms"]] == ["one", "two"]
    post(alice, "a", "one")
    post(alice, "b", "two")
    post(alice, "c", "one")
    frames = s.take(3, "message")
    assert [(f.json()["channel"], f.json()["seq"]) for f in frames] == [
        ("room:one", 1), ("room:two", 1), ("room:one", 2)]
    cursor_after_a = frames[0].id
    s.close()

    s = open_stream(alice, "/api/stream", **{"Last-Event-ID": cursor_after_a})
    s.next()
    replay = s.take(2, "message")
    assert sorted((f.json()["channel"], f.json()["seq"]) for f in replay) == [
        ("room:one", 2), ("room:two", 1)]
    s.close()

    # Another user's cursor, or garbage, resets.
    bob_ready = open_stream(bob, "/api/stream")
    bob_cursor = bob_ready.next().id
    bob_ready.close()
    s = open_stream(alice, "/api/stream", **{"Last-Event-ID": bob_cursor})
    s.next()
    assert s.next().event == "reset"
    s.close()


def test_room_joined_while_stream_is_open_joins_the_stream(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    post(alice, "before bob")
    s = open_stream(bob, "/api/stream")
    assert s.next().json()["rooms"] == []
    assert bob.post("/api/rooms/general/join").status_code == 200
    post(alice, "after bob joined")
    joined = s.next()
    assert joined.event == "member.joined" and joined.json()["user"] == "bob"
    assert joined.json()["seq"] == 2
    frame = s.next()
    assert frame.event == "message" and frame.json()["text"] == "after bob joined"
    assert frame.json()["seq"] == 3
    cursor = frame.id
    s.close()
    # Leaving takes it out of a resumed stream.
    bob.post("/api/rooms/general/leave")
    post(alice, "after bob left")
    s = open_stream(bob, "/api/stream", **{"Last-Event-ID": cursor})
    assert s.next().event == "ready"
    assert s.next(max_chunks=2) is None
    s.close()


def test_room_joined_while_disconnected_replays_from_the_join(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    post(alice, "before bob")
    s = open_stream(bob, "/api/stream")
    cursor = s.next().id
    s.close()
    bob.post("/api/rooms/general/join")
    post(alice, "while bob was away")
    s = open_stream(bob, "/api/stream", **{"Last-Event-ID": cursor})
    s.next()
    assert [f.event for f in s.take(2)] == ["member.joined", "message"]
    s.close()
    s = open_stream(bob, "/api/stream", **{"Last-Event-ID": cursor})
    s.next()
    frame = s.take(1, "message")[0]
    assert frame.json()["text"] == "while bob was away"
    s.close()


def test_stream_permissions(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    alice.post("/api/rooms", json={"name": "secret", "private": True})
    assert bob.get("/api/rooms/general/stream").status_code == 403
    assert bob.get("/api/rooms/secret/stream").status_code == 404
    r = bob.get("/api/users/alice/stream")
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = alice.client.get(f"/api/rooms/general/stream?access_token={alice.token}",
                         buffered=False)
    assert r.status_code == 200
    r.close()
    r = alice.client.get("/api/rooms/general/stream?access_token=chat_bad_token")
    assert r.status_code == 401


def test_admin_may_read_a_users_stream(app, client, runner, make_user):
    make_user("alice")
    runner.invoke(args=["create-user", "root", "--admin", "--password", "password123"])
    token = runner.invoke(args=["create-token", "root"]).stdout.strip()
    r = client.get("/api/users/alice/stream", headers={"Authorization": f"Bearer {token}"},
                   buffered=False)
    s = ClientStream(r)
    assert s.next().json()["channel"] == "user:alice"
    s.close()
    r = client.get("/api/users/nobody/stream", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404


def test_revoking_a_token_ends_its_open_streams(room):
    r = room.post("/api/tokens", json={"name": "script"})
    script = r.get_json()
    resp = room.client.get(f"/api/rooms/general/stream?access_token={script['token']}",
                           buffered=False)
    s = ClientStream(resp)
    assert s.next().event == "ready"
    assert room.delete(f"/api/tokens/{script['id']}").status_code == 204
    assert s.next(max_chunks=3) is None
    assert s.ended
    s.close()


def test_shutdown_ends_streams_cleanly(app, room):
    s = open_stream(room, "/api/rooms/general/stream")
    s.next()
    app.extensions["chat"].hub.shutdown()
    assert s.next(max_chunks=3) is None and s.ended
    s.close()


def test_leaving_a_room_ends_its_open_room_stream(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    s = open_stream(bob, "/api/rooms/general/stream")
    other = open_stream(alice, "/api/rooms/general/stream")
    assert s.next().event == "ready" and other.next().event == "ready"
    bob.post("/api/rooms/general/leave")
    post(alice, "bob should not see this")
    assert s.next(max_chunks=3) is None and s.ended
    assert other.next().event == "member.left"
    assert other.next().json()["text"] == "bob should not see this"
    s.close()
    other.close()


def test_access_check_ends_streams_whose_revocation_was_never_delivered(app, make_user):
    from sqlalchemy import delete

    from chat.models import Credential, Membership

    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    a = open_stream(alice, "/api/stream")
    b = open_stream(bob, "/api/rooms/general/stream")
    keep = open_stream(alice, "/api/rooms/general/stream")
    for s in (a, b, keep):
        assert s.next().event == "ready"
    ext = app.extensions["chat"]
    alice_key = alice.token.split("_")[1]
    # Straight to the store: no control message reaches the hub.
    with ext.store.write() as s:
        s.execute(delete(Credential).where(Credential.key_id == alice_key))
        s.execute(delete(Membership).where(Membership.user_id == 2))
    ext.hub._last_access_check = 0.0
    ext.hub.sweep()
    assert a.next(max_chunks=3) is None and a.ended
    assert b.next(max_chunks=3) is None and b.ended
    assert keep.next(max_chunks=3) is None and keep.ended  # alice's token is gone too
    for s in (a, b, keep):
        s.close()


def test_access_check_keeps_streams_that_are_still_allowed(app, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    s = open_stream(alice, "/api/rooms/general/stream")
    assert s.next().event == "ready"
    hub = app.extensions["chat"].hub
    hub._last_access_check = 0.0
    hub.sweep()
    post(alice, "still here")
    assert s.next().json()["text"] == "still here"
    s.close()


def test_waiting_streams_hold_no_database_connection(app, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    post(alice, "before")
    engine = app.extensions["chat"].store.engine
    streams = [open_stream(alice, "/api/rooms/general/stream", **{"Last-Event-ID": "0"})
               for _ in range(3)]
    streams.append(open_stream(alice, "/api/stream"))
    for s in streams[:3]:
        assert s.next().event == "ready"
        assert s.next().json()["text"] == "before"  # replayed from the store
    assert streams[3].next().event == "ready"
    assert engine.pool.checkedout() == 0
    for s in streams:
        s.close()


def _store_without_publishing(app, room, text):
    """A message that is committed but whose publish was lost (a broker outage, or a
    worker that died between commit and publish)."""
    from sqlalchemy import select

    from chat import timeline
    from chat.models import Channel

    with app.extensions["chat"].store.write() as s:
        channel = s.scalar(select(Channel).where(Channel.name == f"room:{room}"))
        return timeline.append(s, channel, "message", None, text).seq


def test_a_seq_jump_on_the_live_path_is_filled_from_the_store(app, room):
    s = open_stream(room, "/api/rooms/general/stream")
    u = open_stream(room, "/api/stream")
    assert s.next().event == "ready" and u.next().event == "ready"
    assert _store_without_publishing(app, "general", "lost on the way") == 1
    post(room, "published")
    for stream in (s, u):
        frames = stream.take(2, "message")
        assert [f.json()["text"] for f in frames] == ["lost on the way", "published"]
        assert [f.json()["seq"] for f in frames] == [1, 2]
        assert stream.next(max_chunks=2) is None  # and nothing twice
    s.close()
    u.close()


def test_a_lost_publish_with_nothing_after_it_arrives_by_the_resync(app, room):
    s = open_stream(room, "/api/rooms/general/stream")
    assert s.next().event == "ready"
    _store_without_publishing(app, "general", "nobody published me")
    hub = app.extensions["chat"].hub
    hub._last_resync = 0.0
    hub.sweep()
    frame = s.next()
    assert frame.id == "1" and frame.json()["text"] == "nobody published me"
    s.close()
