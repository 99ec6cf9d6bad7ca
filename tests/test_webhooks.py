"""Incoming webhooks through the test client."""

import hashlib
import hmac
import json
import time

from sse_frames import ClientStream


def make_hook(api, room="general", **extra):
    r = api.post(f"/api/rooms/{room}/webhooks", json={"name": "ci", **extra})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def sign(secret, body, stamp=None):
    stamp = str(int(time.time() if stamp is None else stamp))
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def test_create_list_delete(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    hook = make_hook(alice)
    assert hook["url"].startswith("/hooks/wh_") and hook["signed"] is False
    assert "signing_secret" not in hook
    listed = alice.get("/api/rooms/general/webhooks").get_json()["webhooks"]
    assert listed == [{"id": hook["id"], "room": "general", "name": "ci", "signed": False,
                       "created_at": hook["created_at"]}]
    assert bob.get("/api/rooms/general/webhooks").status_code == 403  # not a member
    assert bob.post("/api/rooms/general/webhooks", json={"name": "x"}).status_code == 403
    assert alice.post("/api/rooms/general/webhooks", json={}).status_code == 400
    assert alice.delete(f"/api/rooms/general/webhooks/{hook['id']}").status_code == 204
    r = alice.client.post(hook["url"], json={"text": "gone"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "webhook_not_found"
    assert alice.delete(f"/api/rooms/general/webhooks/{hook['id']}").status_code == 404


def test_slack_style_payloads_post_as_a_bot(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    hook = make_hook(alice)
    stream = ClientStream(alice.client.get("/api/rooms/general/stream", headers=alice.headers,
                                           buffered=False))
    assert stream.next().event == "ready"
    client = alice.client
    client.delete_cookie("chat_session")
    r = client.post(hook["url"], json={"text": "build #7 passed", "username": "ci-bot"})
    assert r.status_code == 201
    message = r.get_json()
    assert (message["text"], message["sender"], message["bot"], message["webhook"]) == (
        "build #7 passed", "ci-bot", True, "ci")
    frame = stream.next()
    assert frame.event == "message" and frame.json() == message
    stream.close()
    r = client.post(hook["url"], data={"payload": json.dumps({"text": "from a form"})})
    assert r.status_code == 201 and r.get_json()["sender"] == "ci"
    r = client.post(hook["url"], data={"text": "plain form"})
    assert r.status_code == 201
    for bad, code in [({"data": {"payload": "{nope"}}, "invalid_json"),
                      ({"data": {"payload": "[1]"}}, "invalid_json"),
                      ({"json": {"username": "x"}}, "missing_field"),
                      ({"json": {"text": 5}}, "invalid_field")]:
        r = client.post(hook["url"], **bad)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == code, bad
    for url in ("/hooks/wh_nope_nope", hook["url"][:-3] + "AAA", "/hooks/x"):
        assert client.post(url, json={"text": "x"}).status_code == 404


def test_idempotency_key_stores_once(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    hook = make_hook(alice)
    headers = {"Idempotency-Key": "delivery-42"}
    first = alice.client.post(hook["url"], json={"text": "once"}, headers=headers)
    again = alice.client.post(hook["url"], json={"text": "once"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    texts = [m["text"] for m in alice.get("/api/rooms/general/messages").get_json()["messages"]]
    assert texts == ["once"]


def test_signed_webhooks(make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    hook = make_hook(alice, signed=True)
    secret = hook["signing_secret"]
    assert len(secret) == 64 and hook["signed"] is True
    body = json.dumps({"text": "signed hello"}).encode()
    post = lambda headers, data=body: alice.client.post(  # noqa: E731
        hook["url"], data=data, headers={"Content-Type": "application/json", **headers})
    r = post({"X-Chat-Signature": sign(secret, body)})
    assert r.status_code == 201 and r.get_json()["text"] == "signed hello"
    cases = [
        ({}, "signature_required"),
        ({"X-Chat-Signature": sign(secret, body + b" ")}, "bad_signature"),
        ({"X-Chat-Signature": sign("wrong", body)}, "bad_signature"),
        ({"X-Chat-Signature": sign(secret, body, time.time() - 301)}, "signature_expired"),
        ({"X-Chat-Signature": sign(secret, body, time.time() + 301)}, "signature_expired"),
        ({"X-Chat-Signature": "v1=abc"}, "bad_signature"),
        ({"X-Chat-Signature": "t=abc,v1=abc"}, "bad_signature"),
    ]
    for headers, code in cases:
        r = post(headers)
        assert r.status_code == 401, headers
        assert r.get_json()["error"]["code"] == code, headers
    tampered = json.dumps({"text": "signed hellO"}).encode()
    r = post({"X-Chat-Signature": sign(secret, body)}, data=tampered)
    assert r.status_code == 401
    texts = [m["text"] for m in alice.get("/api/rooms/general/messages").get_json()["messages"]]
    assert texts == ["signed hello"]
    listed = alice.get("/api/rooms/general/webhooks").get_json()["webhooks"]
    assert "signing_secret" not in listed[0]


def test_a_bot_message_belongs_to_no_user(make_user):
    """Not the hook creator's: unread for them too, editable by no one; its @mentions
    notify like anyone's, marked as from a bot."""
    alice, bob = make_user("alice"), make_user("bob")
    alice.post("/api/rooms", json={"name": "general"})
    bob.post("/api/rooms/general/join")
    hook = make_hook(alice)
    r = alice.client.post(hook["url"], json={"text": "deploy failed, @bob @alice look",
                                             "username": "alice"})
    assert r.status_code == 201
    message = r.get_json()
    assert message["sender"] == "alice" and message["bot"] is True
    for user in (alice, bob):
        room = next(room for room in user.get("/api/rooms").get_json()["rooms"]
                    if room["name"] == "general")
        assert (room["unread"], room["mentions"]) == (1, 1), (user.username, room)
        r = user.client.patch(f"/api/rooms/general/messages/{message['seq']}",
                              headers=user.headers, json={"text": "mine now"})
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "not_the_sender"
        r = user.delete(f"/api/rooms/general/messages/{message['seq']}")
        assert r.status_code == 403
        notes = user.get("/api/notifications").get_json()["notifications"]
        assert [(n["kind"], n["title"], n["ref"]) for n in notes] == [
            ("mention", "alice (bot) mentioned you in general",
             {"room": "general", "seq": message["seq"]})]
    history = alice.get("/api/rooms/general/messages").get_json()["messages"]
    assert history[-1] == message


def test_concurrent_deliveries_with_one_key_store_once(make_user, app):
    from concurrent.futures import ThreadPoolExecutor

    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    hook = make_hook(alice)

    def deliver(_):
        r = app.test_client().post(hook["url"], json={"text": "once"},
                                   headers={"Idempotency-Key": "job-9"})
        return r.status_code, r.get_json()["seq"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(deliver, range(16)))
    assert sorted(status for status, _ in results) == [200] * 15 + [201]
    assert len({seq for _, seq in results}) == 1
    texts = [m["text"] for m in alice.get("/api/rooms/general/messages").get_json()["messages"]
             if m["type"] == "message"]
    assert texts == ["once"]
