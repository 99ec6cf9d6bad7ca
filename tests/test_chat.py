"""Chat semantics through the test client: membership events, read state, mentions, DMs."""

from sse_frames import ClientStream


def open_stream(api, path, **headers):
    return ClientStream(api.client.get(path, headers={**api.headers, **headers},
                                       buffered=False))


def post(api, room, text, **extra):
    r = api.post(f"/api/rooms/{room}/messages", json={"text": text, **extra})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def rooms(api):
    return {r["name"]: r for r in api.get("/api/rooms").get_json()["rooms"]}


def history(api, room):
    return api.get(f"/api/rooms/{room}/messages").get_json()["messages"]


def test_membership_changes_are_stored_events(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    alice.post("/api/rooms/general/members", json={"username": "carol"})
    bob.post("/api/rooms/general/leave")
    events = history(alice, "general")
    assert [(e["type"], e["user"], e.get("by")) for e in events] == [
        ("member.joined", "bob", None), ("member.joined", "carol", "alice"),
        ("member.left", "bob", None)]
    assert [e["seq"] for e in events] == [1, 2, 3]
    # A join is not unread news to the one who joined, nor counted as a message.
    assert rooms(carol)["general"]["unread"] == 0
    assert rooms(alice)["general"]["unread"] == 0


def test_read_marker_moves_forward_only(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")  # seq 1
    for i in range(4):
        post(alice, "general", f"m{i}")  # seq 2..5
    assert rooms(bob)["general"]["unread"] == 4
    r = bob.post("/api/rooms/general/read", json={"seq": 3})
    assert r.status_code == 200
    assert r.get_json() == {"room": "general", "read_seq": 3, "unread": 2, "mentions": 0}
    r = bob.post("/api/rooms/general/read", json={"seq": 2})
    assert r.get_json()["read_seq"] == 3
    assert rooms(bob)["general"]["unread"] == 2 and rooms(bob)["general"]["read_seq"] == 3
    r = bob.post("/api/rooms/general/read", json={"seq": 99})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "seq"
    for bad in ({}, {"seq": "x"}, {"seq": -1}, {"seq": True}, {"seq": 1.5}):
        r = bob.post("/api/rooms/general/read", json=bad)
        assert r.status_code == 400, bad
    r = bob.client.post("/api/rooms/general/read", data={"seq": "5"}, headers=bob.headers)
    assert r.get_json()["unread"] == 0


def test_reading_on_one_device_clears_the_count_on_the_other(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    phone = open_stream(bob, "/api/stream")
    laptop = open_stream(bob, "/api/stream")
    assert phone.next().event == "ready" and laptop.next().event == "ready"
    post(alice, "general", "hello bob")
    assert phone.next().event == "message" and laptop.next().event == "message"
    bob.post("/api/rooms/general/read", json={"seq": 2})
    for device in (phone, laptop):
        read = device.next()
        assert read.event == "read" and read.id
        data = read.json()
        assert (data["room"], data["read_seq"], data["unread"]) == ("general", 2, 0)
        assert data["channel"] == "user:bob"
    cursor = laptop.parser.last_id
    phone.close()
    laptop.close()
    # The same counts on a reconnect's ready and in the room list.
    again = open_stream(bob, "/api/stream")
    ready = again.next().json()
    assert [(r["room"], r["unread"], r["read_seq"]) for r in ready["rooms"]] == [
        ("general", 0, 2)]
    again.close()
    resumed = open_stream(bob, "/api/stream", **{"Last-Event-ID": cursor})
    assert resumed.next().event == "ready"
    assert resumed.next(max_chunks=2) is None  # nothing missed, nothing repeated
    resumed.close()


def test_mentions_count_apart_and_notify(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    bob_stream = open_stream(bob, "/api/stream")
    assert bob_stream.next().event == "ready"
    post(alice, "general", "hey @bob, and @carol (not here) and @alice (me).")
    post(alice, "general", "no mention: email@bob.example")
    assert rooms(bob)["general"]["mentions"] == 1
    assert rooms(bob)["general"]["unread"] == 2
    frames = bob_stream.take(3)
    kinds = sorted(f.event for f in frames)
    assert kinds == ["message", "message", "notification"]
    note = next(f for f in frames if f.event == "notification").json()
    assert note["kind"] == "mention" and note["ref"] == {"room": "general", "seq": 2}
    assert note["channel"] == "user:bob" and note["title"] == "alice mentioned you in general"
    assert note["body"] is None  # no copy of the text: it may be edited or deleted
    assert note["sender"] == "alice"
    bob_stream.close()
    assert rooms(carol).get("general", {}).get("mentions", 0) == 0
    assert rooms(alice)["general"]["mentions"] == 0
    bob.post("/api/rooms/general/read", json={"seq": 3})
    assert rooms(bob)["general"]["mentions"] == 0


def test_direct_messages(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    bob_stream = open_stream(bob, "/api/stream")
    assert bob_stream.next().event == "ready"
    r = alice.post("/api/users/bob/messages", json={"text": "psst", "client_msg_id": "d1"})
    assert r.status_code == 201
    message = r.get_json()
    assert message["room"] == "alice~bob" and message["sender"] == "alice"
    again = alice.post("/api/users/bob/messages", json={"text": "psst", "client_msg_id": "d1"})
    assert again.status_code == 200 and again.get_json() == message

    for api, other in ((alice, "bob"), (bob, "alice")):
        dm = rooms(api)["alice~bob"]
        assert dm["kind"] == "dm" and dm["with"] == other and dm["member"]
    assert rooms(bob)["alice~bob"]["unread"] == 1
    assert "alice~bob" not in rooms(carol)

    frames = bob_stream.take(2)
    assert [f.event for f in frames] == ["member.joined", "message"]
    assert frames[1].json()["text"] == "psst" and frames[1].json()["client_msg_id"] == "d1"
    bob_stream.close()

    r = bob.post("/api/rooms/alice~bob/messages", json={"text": "hi back"})
    assert r.status_code == 201 and r.get_json()["seq"] == 4
    texts = [m["text"] for m in history(alice, "alice~bob") if m["type"] == "message"]
    assert texts == ["psst", "hi back"]

    assert carol.get("/api/rooms/alice~bob/messages").status_code == 404
    assert carol.get("/api/rooms/alice~bob/stream").status_code == 404
    assert carol.post("/api/rooms/alice~bob/join").status_code == 404
    for path in ("/api/rooms/alice~bob/join", "/api/rooms/alice~bob/leave"):
        r = alice.post(path)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "direct_message_room"
    r = alice.post("/api/rooms/alice~bob/members", json={"username": "carol"})
    assert r.status_code == 403
    assert alice.post("/api/users/alice/messages", json={"text": "me"}).status_code == 400
    assert alice.post("/api/users/nobody/messages", json={"text": "x"}).status_code == 404
    assert alice.post("/api/users/Bad/messages", json={"text": "x"}).status_code == 400
    assert alice.get("/api/rooms/bob~alice/messages").status_code == 400  # not in order
    r = alice.post("/api/rooms", json={"name": "alice~bob"})
    assert r.status_code == 400


def test_direct_message_stream_on_the_dm_room(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/users/bob/messages", json={"text": "first"})
    s = open_stream(bob, "/api/rooms/alice~bob/stream", **{"Last-Event-ID": "0"})
    assert s.next().event == "ready"
    assert [f.event for f in s.take(3)] == ["member.joined", "member.joined", "message"]
    s.close()


def test_notifications_from_the_user_or_an_admin(client, runner, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    runner.invoke(args=["create-user", "ops", "--admin", "--password", "password123"])
    admin_token = runner.invoke(args=["create-token", "ops"]).stdout.strip()
    admin = {"Authorization": f"Bearer {admin_token}"}

    stream = open_stream(alice, "/api/stream")
    ready = stream.next().json()
    assert ready["notifications"] == {"unread": 0, "read_seq": 0}

    r = client.post("/api/users/alice/notifications", headers=admin,
                    json={"title": "Deploy finished", "body": "v1.2 is live",
                          "url": "https://ci.example/run/7", "level": "success"})
    assert r.status_code == 201
    note = r.get_json()
    assert (note["type"], note["kind"], note["title"], note["level"], note["sender"]) == (
        "notification", "notification", "Deploy finished", "success", "ops")
    frame = stream.next()
    assert frame.event == "notification" and frame.id and frame.json() == note
    stream.close()

    # A script with the user's own token, as a form body.
    r = alice.client.post("/api/users/alice/notifications", headers=alice.headers,
                          data={"title": "Backup done"})
    assert r.status_code == 201 and r.get_json()["level"] == "info"
    r = bob.post("/api/users/alice/notifications", json={"title": "spam"})
    assert r.status_code == 403
    r = client.post("/api/users/nobody/notifications", headers=admin, json={"title": "x"})
    assert r.status_code == 404

    listed = alice.get("/api/notifications").get_json()
    assert [n["title"] for n in listed["notifications"]] == ["Deploy finished", "Backup done"]
    assert listed["unread"] == 2
    first_seq = listed["notifications"][0]["seq"]
    r = alice.post("/api/notifications/read", json={"seq": first_seq})
    assert r.get_json() == {"room": None, "read_seq": first_seq, "unread": 1}
    assert alice.get("/api/notifications").get_json()["unread"] == 1
    assert alice.post("/api/notifications/read", json={"seq": 10**6}).status_code == 400
    assert alice.get("/api/notifications?limit=1").get_json()["notifications"][0][
        "title"] == "Backup done"


def test_bad_notifications_are_refused(make_user):
    alice = make_user("alice")
    for body, field in [({}, "title"), ({"title": ""}, "title"), ({"title": 5}, "title"),
                        ({"title": "x", "level": "loud"}, "level"),
                        ({"title": "x", "url": "javascript:alert(1)"}, "url"),
                        ({"title": "x", "url": "//evil.example/x"}, "url"),
                        ({"title": "x", "url": "data:text/html,hi"}, "url"),
                        ({"title": "x" * 201}, "title")]:
        r = alice.post("/api/users/alice/notifications", json=body)
        assert r.status_code == 400, body
        assert r.get_json()["error"]["field"] == field
    assert alice.post("/api/users/alice/notifications",
                      json={"title": "ok", "url": "/rooms/general"}).status_code == 201
    assert alice.get("/api/notifications").get_json()["unread"] == 1


def test_edit_and_delete_by_the_sender(app, make_user):
    from sqlalchemy import select

    from chat.models import Event

    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")  # seq 1
    sent = post(alice, "general", "helo @bob")  # seq 2
    stream = open_stream(bob, "/api/rooms/general/stream")
    assert stream.next().event == "ready"

    r = alice.client.patch("/api/rooms/general/messages/2", json={"text": "hello @bob"},
                           headers=alice.headers)
    assert r.status_code == 200
    edited = r.get_json()
    assert (edited["seq"], edited["text"], edited["id"]) == (2, "hello @bob", sent["id"])
    assert edited["edited_at"].endswith("Z")
    update = stream.next()
    assert update.event == "message.updated" and update.id == "3"
    assert (update.json()["target_seq"], update.json()["text"]) == (2, "hello @bob")

    r = bob.client.patch("/api/rooms/general/messages/2", json={"text": "hijack"},
                         headers=bob.headers)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "not_the_sender"
    assert bob.delete("/api/rooms/general/messages/2").status_code == 403
    assert alice.delete("/api/rooms/general/messages/1").status_code == 404  # a join
    assert alice.delete("/api/rooms/general/messages/99").status_code == 404
    r = alice.client.patch("/api/rooms/general/messages/2", json={"text": ""},
                           headers=alice.headers)
    assert r.status_code == 400

    messages = [m for m in history(bob, "general") if m["type"] == "message"]
    assert [m["text"] for m in messages] == ["hello @bob"]
    assert rooms(bob)["general"]["mentions"] == 1

    assert alice.delete("/api/rooms/general/messages/2").status_code == 204
    deleted = stream.next()
    assert deleted.event == "message.deleted" and deleted.json()["target_seq"] == 2
    assert deleted.json()["text"] is None
    stream.close()
    assert alice.delete("/api/rooms/general/messages/2").status_code == 404
    original = [m for m in history(bob, "general") if m["seq"] == 2][0]
    assert original["text"] is None and original["deleted"] is True
    assert rooms(bob)["general"]["mentions"] == 0
    # Gone from the store, the edit's copy included.
    with app.extensions["chat"].store.read() as s:
        texts = [e.text for e in s.scalars(select(Event))]
        data = [e.data or "" for e in s.scalars(select(Event))]
    assert not any(t and "hel" in t for t in texts)
    assert not any("hel" in d for d in data)


def test_typing_is_ephemeral_and_rate_limited(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    stream = open_stream(bob, "/api/rooms/general/stream")
    user_stream = open_stream(bob, "/api/stream")
    assert stream.next().event == "ready" and user_stream.next().event == "ready"
    r = alice.post("/api/rooms/general/typing", json={"typing": True})
    assert r.status_code == 200 and r.get_json()["sent"] is True
    for s in (stream, user_stream):
        frame = s.next()
        assert frame.event == "typing" and frame.id is None
        data = frame.json()
        assert (data["user"], data["typing"], data["room"]) == ("alice", True, "general")
        assert 0 < data["expires_in"] <= 10
    # The same state again within a second is not sent again.
    assert alice.post("/api/rooms/general/typing", json={"typing": True}).get_json()[
        "sent"] is False
    r = alice.client.post("/api/rooms/general/typing", data={"typing": "false"},
                          headers=alice.headers)
    assert r.get_json()["sent"] is True
    assert stream.next().json()["typing"] is False
    stream.close()
    user_stream.close()
    # Nothing stored.
    assert rooms(alice)["general"]["last_seq"] == 1  # bob's join only
    assert [e["type"] for e in history(alice, "general")] == ["member.joined"]
    # Too fast: 429 with Retry-After.
    statuses = [alice.post("/api/rooms/general/typing", json={"typing": i % 2 == 0})
                for i in range(8)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].get_json()["error"]["code"] == "too_many_requests"
    assert carol.post("/api/rooms/general/typing", json={"typing": True}).status_code == 403


def test_a_deleted_message_is_not_unread(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    m = post(alice, "general", "oops")
    assert rooms(bob)["general"]["unread"] == 1
    alice.delete(f"/api/rooms/general/messages/{m['seq']}")
    assert rooms(bob)["general"]["unread"] == 0
    r = bob.post("/api/rooms/general/join")  # already a member: the real state
    assert (r.get_json()["unread"], r.get_json()["read_seq"]) == (0, 1)


def test_an_admin_watching_a_users_stream_does_not_get_their_dms(client, runner, make_user):
    alice = make_user("alice")
    make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    alice.post("/api/users/bob/messages", json={"text": "private"})
    runner.invoke(args=["create-user", "ops", "--admin", "--password", "password123"])
    token = runner.invoke(args=["create-token", "ops"]).stdout.strip()
    r = client.get("/api/users/alice/stream", headers={"Authorization": f"Bearer {token}"},
                   buffered=False)
    s = ClientStream(r)
    assert [x["room"] for x in s.next().json()["rooms"]] == ["general"]
    s.close()
    own = open_stream(alice, "/api/stream")
    assert [x["room"] for x in own.next().json()["rooms"]] == ["general", "alice~bob"]
    own.close()


def test_typing_in_a_room_you_are_not_in_is_refused_before_any_rate_limit(make_user):
    alice, carol = make_user("alice"), make_user("carol")
    alice.post("/api/rooms", json={"name": "general"})
    statuses = {carol.post("/api/rooms/general/typing", json={"typing": True}).status_code
                for _ in range(10)}
    assert statuses == {403}


def test_member_list_with_presence(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    make_user("carol")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    s = open_stream(alice, "/api/stream")
    assert s.next().event == "ready"
    r = bob.get("/api/rooms/general/members")
    assert r.status_code == 200
    assert r.get_json() == {"room": "general", "online": 1, "members": [
        {"username": "alice", "display_name": "alice", "online": True},
        {"username": "bob", "display_name": "bob", "online": False}]}
    s.close()
