"""flask-sse compatibility through the test client: GET /stream?channel=, publishing over
HTTP, who may read which channel, and safe framing of what flask-sse publishers send.

Real flask-sse publishing through a real redis-server is in tests/test_compat_redis.py and,
across two gunicorn processes, in tests/e2e/test_flask_sse_e2e.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from sse_frames import ClientStream

from chat import create_app
from chat.hub import Hub, LiveEvent, Subscriber
from chat.sse import FrameError, flask_sse_frame, flask_sse_message

FAST_HASH = "pbkdf2:sha256:1000"


@pytest.fixture
def admin(client: Any, runner: Any) -> dict[str, str]:
    runner.invoke(args=["create-user", "ops", "--admin", "--password", "password123"])
    token = runner.invoke(args=["create-token", "ops"]).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def open_compat(client: Any, query: str = "", headers: dict[str, str] | None = None) -> Any:
    return client.get("/stream" + query, headers=headers or {}, buffered=False)


def publish(client: Any, headers: dict[str, str], channel: str, **body: Any) -> Any:
    return client.post(f"/api/channels/{channel}/events", headers=headers, json=body)


def opened(response: Any) -> ClientStream:
    """The stream, its opening bytes read: from then on it is subscribed."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    first = next(iter(response.response))
    assert first.startswith(b": stream open\n\n") and b"retry: " in first
    return ClientStream(response)


def test_a_published_event_reaches_the_channel_readers_with_type_id_and_retry(
        client: Any, make_user: Any, admin: dict[str, str]) -> None:
    alice = make_user("alice")
    news = opened(open_compat(client, "?channel=news", alice.headers))
    default = opened(open_compat(client, "", alice.headers))  # flask-sse's default: "sse"
    try:
        r = publish(client, admin, "news", data={"price": 3, "ok": True}, type="quote",
                    id="q-1", retry=5000)
        assert r.status_code == 202, r.get_json()
        assert r.get_json() == {"channel": "news", "message": {
            "data": {"price": 3, "ok": True}, "type": "quote", "id": "q-1", "retry": 5000}}
        r = publish(client, admin, "sse", data="to the default channel")
        assert r.status_code == 202
        frame = news.next()
        assert frame is not None and frame.event == "quote" and frame.id == "q-1"
        assert frame.json() == {"price": 3, "ok": True}
        assert news.parser.retry == 5000
        frame = default.next()
        assert frame is not None and (frame.event, frame.data) == ("message",
                                                                   "to the default channel")
        assert frame.id is None
    finally:
        news.close()
        default.close()


def test_text_data_arrives_exactly_and_cannot_forge_frames(
        client: Any, make_user: Any, admin: dict[str, str]) -> None:
    alice = make_user("alice")
    stream = opened(open_compat(client, "?channel=news", alice.headers))
    tricky = "line one\r\nevent: forged\ndata: forged\r\n\nid: 99\n retry: 1"
    try:
        assert publish(client, admin, "news", data=tricky).status_code == 202
        assert publish(client, admin, "news", data="after", type="next").status_code == 202
        frames = stream.take(2)
        assert [(f.event, f.data, f.id) for f in frames] == [
            ("message", tricky.replace("\r\n", "\n"), None), ("next", "after", None)]
    finally:
        stream.close()


def test_publishing_takes_an_admin_and_a_good_body(
        client: Any, make_user: Any, admin: dict[str, str]) -> None:
    alice = make_user("alice")
    r = publish(client, alice.headers, "news", data="x")
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = client.post("/api/channels/news/events", json={"data": "x"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "not_authenticated"
    cases = [
        ({}, 400, "missing_field", "data"),
        ({"data": "x", "type": "a\nb"}, 400, "invalid_field", "type"),
        ({"data": "x", "id": "1\r2"}, 400, "invalid_field", "id"),
        ({"data": "x", "type": 5}, 400, "invalid_field", "type"),
        ({"data": "x", "retry": -1}, 400, "invalid_field", "retry"),
        ({"data": "x", "retry": "soon"}, 400, "invalid_field", "retry"),
        ({"data": "x", "type": "t" * 101}, 400, "invalid_field", "type"),
    ]
    for body, status, code, field in cases:
        r = client.post("/api/channels/news/events", headers=admin, json=body)
        assert r.status_code == status, (body, r.get_json())
        assert r.get_json()["error"]["code"] == code and r.get_json()["error"]["field"] == field
    r = client.post("/api/channels/news/events", headers=admin, data="data",
                    content_type="text/plain")
    assert r.status_code == 415
    # A form, as `curl -d data=... -d type=...` sends it.
    r = client.post("/api/channels/news/events", headers=admin,
                    data={"data": "from a form", "type": "note", "retry": "3000"})
    assert r.status_code == 202
    assert r.get_json()["message"] == {"data": "from a form", "type": "note", "retry": 3000}


@pytest.mark.parametrize("channel", ["chat:room:1", "chat:_control", "__keyspace@0__:x",
                                     "a\tb", "x" * 201])
def test_reserved_and_malformed_channels_are_refused(
        client: Any, make_user: Any, admin: dict[str, str], channel: str) -> None:
    alice = make_user("alice")
    r = open_compat(client, "?" + _query(channel), alice.headers)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_channel"
    r = publish(client, admin, _path(channel), data="x")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_channel"


def _query(channel: str) -> str:
    from urllib.parse import urlencode
    return urlencode({"channel": channel})


def _path(channel: str) -> str:
    from urllib.parse import quote
    return quote(channel, safe="")


def test_a_stream_needs_a_login_unless_its_channel_is_public(tmp_path: Any) -> None:
    app = _app(tmp_path, CHAT_SSE_PUBLIC_CHANNELS="public.*, status",
               CHAT_SSE_CHANNELS="public.* status news")
    try:
        client = app.test_client()
        r = client.get("/stream?channel=news")
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "not_authenticated"
        r = client.get("/stream")  # "sse" is not among CHAT_SSE_CHANNELS here
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "channel_not_found"
        r = client.get("/stream?channel=other", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 404
        for channel in ("public.prices", "status"):
            stream = opened(open_compat(client, "?channel=" + channel))
            stream.close()
        # A public channel still refuses a credential that is no good.
        r = client.get("/stream?channel=status&access_token=revoked-or-made-up")
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_token"
    finally:
        _close(app)


def test_by_default_no_channel_is_public(client: Any) -> None:
    for query in ("", "?channel=sse", "?channel=news"):
        r = client.get("/stream" + query)
        assert r.status_code == 401, query


def test_a_token_in_the_query_works_and_its_revocation_ends_the_stream(
        client: Any, make_user: Any) -> None:
    alice = make_user("alice")
    stream = opened(open_compat(client, f"?channel=news&access_token={alice.token}"))
    try:
        token_id = alice.get("/api/tokens").get_json()["tokens"][0]["id"]
        assert alice.delete(f"/api/tokens/{token_id}").status_code == 204
        assert stream.next(max_chunks=10) is None and stream.ended
    finally:
        stream.close()


def test_idle_streams_get_heartbeats(client: Any, make_user: Any) -> None:
    alice = make_user("alice")  # CHAT_HEARTBEAT_SECONDS is 0.5 in tests
    stream = opened(open_compat(client, "?channel=quiet", alice.headers))
    try:
        started = time.monotonic()
        chunks = iter(stream.response.response)
        assert next(chunks) == b":\n\n"
        assert next(chunks) == b":\n\n"
        assert time.monotonic() - started >= 0.5
    finally:
        stream.close()


def test_cors_lets_listed_origins_read_and_resume(tmp_path: Any) -> None:
    app = _app(tmp_path, CHAT_SSE_PUBLIC_CHANNELS="status",
               CHAT_SSE_CORS_ORIGINS="https://shop.example")
    try:
        client = app.test_client()
        r = open_compat(client, "?channel=status", {"Origin": "https://shop.example"})
        assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "Origin" in r.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in r.headers
        r.close()
        r = open_compat(client, "?channel=status", {"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in r.headers
        r.close()
        # The preflight of an EventSource reconnecting with Last-Event-ID.
        r = client.options("/stream?channel=status", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id"})
        assert r.status_code == 200
        assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "last-event-id" in r.headers["Access-Control-Allow-Headers"].lower()
        r = client.options("/stream", headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "GET"})
        assert "Access-Control-Allow-Origin" not in r.headers
    finally:
        _close(app)


def _app(tmp_path: Any, **config: Any) -> Flask:
    return create_app({"TESTING": True, "SECRET_KEY": "test",
                       "DATABASE_URL": f"sqlite:///{tmp_path / 'compat.db'}",
                       "REDIS_URL": None, "CHAT_PASSWORD_HASH": FAST_HASH,
                       "CHAT_HEARTBEAT_SECONDS": 0.5, **config})


def _close(app: Flask) -> None:
    app.extensions["chat"].hub.shutdown()
    app.extensions["chat"].store.dispose()


# -- the hub and the wire format, one part at a time --------------------------------------


def test_flask_sse_messages_become_the_frames_flask_sse_would_send() -> None:
    def frame(message: Any) -> tuple[str | None, bytes]:
        return flask_sse_frame(json.dumps(message).encode())

    assert frame({"data": "hi"}) == (None, b"data: hi\n")
    assert frame({"data": {"a": [1, 2]}, "type": "t", "id": 7, "retry": 100}) == (
        "t", b'event: t\ndata: {"a": [1, 2]}\nid: 7\nretry: 100\n')
    assert frame({"data": "x", "type": "", "id": None, "retry": "no"}) == (None, b"data: x\n")
    assert frame({"data": ""}) == (None, b"data: \n")
    with pytest.raises(FrameError):
        frame({"data": "x", "type": "a\ndata: forged"})
    with pytest.raises(FrameError):
        frame({"data": "x", "id": "1\r\nevent: forged"})
    for bad in (b"not json", b"[1]", b'{"type": "no data"}', b"\xff\xfe",
                json.dumps({"data": "x", "type": {"a": 1}}).encode()):
        with pytest.raises(ValueError):
            flask_sse_frame(bad)
    # What this service publishes is what flask-sse publishes (Message.to_dict()).
    assert json.loads(flask_sse_message({"k": 1}, "t", "i", 5)) == {
        "data": {"k": 1}, "type": "t", "id": "i", "retry": 5}
    assert json.loads(flask_sse_message("x")) == {"data": "x"}


def test_the_hub_subscribes_a_raw_channel_once_and_drops_what_it_cannot_frame() -> None:
    from chat.broker import MemoryBroker

    broker = MemoryBroker()
    hub = Hub(broker, heads=lambda ids: {}, background=False)
    a, b = Subscriber(max_queue=10), Subscriber(max_queue=10)
    hub.attach(a, {"sse:news": None})
    hub.attach(b, {"sse:news": None})
    assert "news" in broker._channels and "chat:sse:news" not in broker._channels
    broker.publish("news", b'{"data": "x", "type": "bad\\ndata: forged"}')
    broker.publish("news", b"garbage")
    broker.publish("news", b'{"data": "ok", "type": "t"}')
    for sub in (a, b):
        items = sub.take(0)
        assert len(items) == 1 and isinstance(items[0], LiveEvent)
        assert items[0].body == b"event: t\ndata: ok\n"
    hub.detach(a)
    assert "news" in broker._channels
    hub.detach(b)
    assert "news" not in broker._channels
