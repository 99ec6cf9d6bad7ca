"""Rooms, messages, history and bad input through the test client."""

import threading

import pytest
from sqlalchemy import func, select

from chat.models import Event


def error_code(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]["code"]


def test_create_list_join_leave(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    r = alice.post("/api/rooms", json={"name": "general", "title": "General"})
    assert r.status_code == 201
    assert r.get_json()["name"] == "general" and r.get_json()["member"] is True

    rooms = bob.get("/api/rooms").get_json()["rooms"]
    assert [(x["name"], x["member"], x["last_seq"], x["unread"]) for x in rooms] == [
        ("general", False, 0, 0)
    ]
    assert bob.post("/api/rooms/general/messages", json={"text": "hi"}).status_code == 403
    assert bob.post("/api/rooms/general/join").status_code == 200
    assert bob.get("/api/rooms").get_json()["rooms"][0]["member"] is True
    assert bob.post("/api/rooms/general/leave").status_code == 200
    assert bob.get("/api/rooms").get_json()["rooms"][0]["member"] is False


def test_unread_counts_messages_from_others(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    alice.post("/api/rooms/general/messages", json={"text": "before bob joined"})
    bob.post("/api/rooms/general/join")
    for i in range(3):
        alice.post("/api/rooms/general/messages", json={"text": f"m{i}"})
    bob.post("/api/rooms/general/messages", json={"text": "mine"})
    by_name = {x["name"]: x for x in bob.get("/api/rooms").get_json()["rooms"]}
    assert by_name["general"]["unread"] == 3
    assert by_name["general"]["last_seq"] == 6  # 5 messages and bob's member.joined
    assert alice.get("/api/rooms").get_json()["rooms"][0]["unread"] == 1


def test_private_rooms_need_an_invite(make_user):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    assert alice.post("/api/rooms", json={"name": "secret", "private": True}).status_code == 201
    assert bob.get("/api/rooms").get_json()["rooms"] == []
    assert bob.post("/api/rooms/secret/join").status_code == 404
    assert bob.get("/api/rooms/secret/messages").status_code == 404
    assert bob.post("/api/rooms/secret/members", json={"username": "bob"}).status_code == 404

    r = alice.post("/api/rooms/secret/members", json={"username": "bob"})
    assert r.status_code == 201
    assert alice.post("/api/rooms/secret/members", json={"username": "bob"}).status_code == 200
    assert bob.post("/api/rooms/secret/messages", json={"text": "thanks"}).status_code == 201
    # Members of a private room may add others.
    assert bob.post("/api/rooms/secret/members", json={"username": "carol"}).status_code == 201
    assert [x["name"] for x in carol.get("/api/rooms").get_json()["rooms"]] == ["secret"]
    r = alice.post("/api/rooms/secret/members", json={"username": "nobody"})
    assert r.status_code == 404 and error_code(r) == "user_not_found"


def test_post_json_and_form_and_history(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = alice.post("/api/rooms/general/messages", json={"text": "hello\nworld"})
    assert r.status_code == 201
    m = r.get_json()
    assert set(m) >= {"id", "room", "seq", "sender", "text", "created_at", "client_msg_id"}
    assert (m["room"], m["seq"], m["sender"], m["text"]) == ("general", 1, "alice",
                                                              "hello\nworld")
    assert m["created_at"].endswith("Z")
    r = alice.client.post("/api/rooms/general/messages", data={"text": "from a form"},
                          headers=alice.headers)
    assert r.status_code == 201 and r.get_json()["seq"] == 2

    for i in range(3, 11):
        alice.post("/api/rooms/general/messages", json={"text": f"m{i}"})
    seqs = lambda r: [x["seq"] for x in r.get_json()["messages"]]  # noqa: E731
    assert seqs(alice.get("/api/rooms/general/messages")) == list(range(1, 11))
    assert seqs(alice.get("/api/rooms/general/messages?limit=3")) == [8, 9, 10]
    assert seqs(alice.get("/api/rooms/general/messages?after=7")) == [8, 9, 10]
    assert seqs(alice.get("/api/rooms/general/messages?after=2&limit=2")) == [3, 4]
    assert seqs(alice.get("/api/rooms/general/messages?before=4")) == [1, 2, 3]
    assert seqs(alice.get("/api/rooms/general/messages?before=9&limit=2")) == [7, 8]


def test_client_msg_id_and_idempotency_key(app, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    first = alice.post("/api/rooms/general/messages", json={"text": "once", "client_msg_id": "k1"})
    again = alice.post("/api/rooms/general/messages", json={"text": "once", "client_msg_id": "k1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json() == first.get_json()
    assert first.get_json()["client_msg_id"] == "k1"

    h1 = alice.post("/api/rooms/general/messages", json={"text": "hdr"},
                    headers={"Idempotency-Key": "k2"})
    h2 = alice.post("/api/rooms/general/messages", json={"text": "hdr"},
                    headers={"Idempotency-Key": "k2"})
    assert (h1.status_code, h2.status_code) == (201, 200)
    with app.extensions["chat"].store.read() as s:
        assert s.scalar(select(func.count(Event.id))) == 2


def test_concurrent_requests_with_one_key_store_one_message(app, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    statuses = []

    def send():
        client = app.test_client()
        r = client.post("/api/rooms/general/messages", json={"text": "x", "client_msg_id": "same"},
                        headers=alice.headers)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] * 19 + [201]
    with app.extensions["chat"].store.read() as s:
        assert s.scalar(select(func.count(Event.id))) == 1


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": ["a list"]}, 400, "invalid_json"),
        ({"json": {}}, 400, "missing_field"),
        ({"json": {"text": 5}}, 400, "invalid_field"),
        ({"json": {"text": "   \n "}}, 400, "invalid_field"),
        ({"json": {"text": "a\u0000b"}}, 400, "invalid_field"),
        ({"json": {"text": "x", "client_msg_id": 7}}, 400, "invalid_field"),
        ({"json": {"text": "x", "client_msg_id": "k" * 65}}, 400, "invalid_field"),
        ({"data": "text=hi", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": '{"text": "\\ud800"}', "content_type": "application/json"}, 400,
         "invalid_field"),
    ],
)
def test_bad_message_input(make_user, kwargs, status, code):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = alice.client.post("/api/rooms/general/messages", headers=alice.headers, **kwargs)
    assert r.status_code == status, r.get_json()
    assert error_code(r) == code
    assert alice.get("/api/rooms/general/messages").get_json()["messages"] == []


def test_message_size_limit(app, make_user):
    app.config["CHAT_MAX_MESSAGE_BYTES"] = 100
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    assert alice.post("/api/rooms/general/messages", json={"text": "é" * 50}).status_code == 201
    r = alice.post("/api/rooms/general/messages", json={"text": "é" * 51})
    assert r.status_code == 413 and error_code(r) == "message_too_large"
    assert r.get_json()["error"]["field"] == "text"


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "a" * 33, "sp ace", "ünï", "a/b",
                                  "x\ny"])
def test_bad_room_names(make_user, name):
    alice = make_user("alice")
    r = alice.post("/api/rooms", json={"name": name})
    assert r.status_code == 400
    assert r.get_json()["error"]["field"] == "name"


def test_bad_names_in_urls_and_unknown_rooms(make_user):
    alice = make_user("alice")
    r = alice.post("/api/rooms/NOPE/messages", json={"text": "x"})
    assert r.status_code == 400 and error_code(r) == "invalid_name"
    r = alice.post("/api/rooms/nope/messages", json={"text": "x"})
    assert r.status_code == 404 and error_code(r) == "room_not_found"
    assert alice.get("/api/rooms/nope/stream").status_code == 404
    r = alice.post("/api/rooms", json={"name": "ok", "private": "maybe"})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "private"


def test_duplicate_room_is_409(make_user):
    alice = make_user("alice")
    assert alice.post("/api/rooms", json={"name": "general"}).status_code == 201
    r = alice.post("/api/rooms", json={"name": "general"})
    assert r.status_code == 409 and error_code(r) == "room_exists"


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "after=-1",
                                   "before=0", "after=1.5"])
def test_bad_history_parameters(make_user, query):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = alice.get(f"/api/rooms/general/messages?{query}")
    assert r.status_code == 400 and error_code(r) == "invalid_parameter"


def test_unauthenticated_and_unknown_routes_are_json(client):
    for method, path in [("get", "/api/rooms"), ("post", "/api/rooms"),
                         ("get", "/api/stream"), ("get", "/api/rooms/x/stream")]:
        r = getattr(client, method)(path)
        assert r.status_code == 401 and error_code(r) == "not_authenticated"
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.put("/api/rooms")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_oversized_body_is_413_json(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = alice.post("/api/rooms/general/messages", json={"text": "x" * (4 << 20)})
    assert r.status_code == 413
    assert "error" in r.get_json()


def test_empty_client_msg_id_falls_back_to_the_idempotency_key(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    statuses = [alice.post("/api/rooms/general/messages", json={"text": "x", "client_msg_id": ""},
                           headers={"Idempotency-Key": "k"}).status_code for _ in range(2)]
    assert statuses == [201, 200]


def test_lone_surrogates_and_deep_nesting_are_400_not_500(client, make_user):
    alice = make_user("alice")
    for path, raw in [("/api/rooms", '{"name": "ok", "title": "\\ud800"}'),
                      ("/api/users", '{"username": "bob", "password": "\\udfff-password"}'),
                      ("/api/tokens", '{"name": "\\ud800"}')]:
        r = alice.client.post(path, data=raw, content_type="application/json",
                              headers=alice.headers)
        assert r.status_code == 400, (path, r.get_json())
    r = client.post("/api/users", data="[" * 100_000, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_json"
