"""Incoming webhooks end to end: two gunicorn processes sharing one SQLite file and one
real redis-server. The hook is made and the room is watched on service A; deliveries go
to service B as raw HTTP requests (bytes and an explicit Content-Type, as curl sends
them), so a delivered message reaches A's stream only through Redis.

tests/test_webhooks.py is the ground truth of the behaviour (docs/API.md, "Incoming
webhooks"); these tests check that it holds over real sockets and processes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests

from .conftest import Api, RedisServer, Service, ServiceFactory
from .sse_client import SSEClient

pytestmark = pytest.mark.e2e

ROOM = "deploys"
WAIT = 15.0  # the bound on every wait for a stream event
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# No store backstop: a delivered message must reach the other process's stream through
# Redis in real time, not from a periodic resync of the shared database.
LIVE_ONLY = {"CHAT_RESYNC_SECONDS": "0"}


# --------------------------------------------------------------------------- helpers


def deliver(svc: Service, path: str, body: bytes, content_type: str = JSON,
            **headers: str) -> requests.Response:
    """A raw POST, as `curl -H 'Content-Type: ...' --data-binary @body` sends it: no
    cookie, no token, the body bytes exactly as given."""
    with requests.Session() as session:
        resp = session.post(svc.base + path, data=body, timeout=15,
                            headers={"Content-Type": content_type, **headers})
        _ = resp.content
    assert resp.request.body == body
    return resp


def created(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 201, (resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].startswith(JSON), resp.headers
    data: dict[str, Any] = resp.json()
    return data


def expect_error(resp: requests.Response, status: int, code: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].startswith(JSON), (resp.headers, resp.text[:300])
    assert resp.json()["error"]["code"] == code, resp.text[:500]


def sign(secret: str, body: bytes, stamp: float | None = None) -> str:
    """X-Chat-Signature as docs/API.md specifies it: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<raw body>" keyed with the signing secret>."""
    t = str(int(time.time() if stamp is None else stamp))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def make_hook(api: Api, name: str = "ci", **extra: Any) -> dict[str, Any]:
    r = api.post(f"/api/rooms/{ROOM}/webhooks", {"name": name, **extra})
    assert r.status_code == 201, (r.status_code, r.text[:500])
    hook: dict[str, Any] = r.json()
    assert hook["url"].startswith("/hooks/wh_"), hook
    return hook


def expect_ready(client: SSEClient) -> None:
    ev = client.next_event(WAIT)
    assert ev.event == "ready", ev


def expect_message(client: SSEClient, message: dict[str, Any]) -> None:
    """The stream's next event is exactly this stored message (nothing before it)."""
    ev = client.next_event(WAIT)
    assert ev.event == "message", ev
    assert ev.json() == message, (ev.data, message)
    assert ev.id == str(message["seq"]), ev


def messages(api: Api) -> list[dict[str, Any]]:
    return [m for m in api.history(ROOM) if m["type"] == "message"]


def key_id(hook: dict[str, Any]) -> str:
    return str(hook["url"].split("_", 2)[1])


def url_secret(hook: dict[str, Any]) -> str:
    return str(hook["url"].split("_", 2)[2])


def assert_not_logged(services: list[Service], hook: dict[str, Any], *extra: str) -> None:
    """The hook's URL secret (and any extra secret) is in no server log, while the
    deliveries themselves were logged, redacted."""
    logs = {svc.name: svc.log_text() for svc in services}
    for name, text in logs.items():
        for secret in (url_secret(hook), *extra):
            assert secret not in text, f"a secret is in the log of {name}"
    redacted = f"/hooks/wh_{key_id(hook)}_[redacted]"
    assert any(redacted in text for text in logs.values()), (redacted, logs)


@pytest.fixture
def pair(redis_server: RedisServer, service_factory: ServiceFactory) -> SimpleNamespace:
    """Services a and b (one worker each) on one SQLite file and one redis-server;
    alice owns ROOM and watches its stream on a."""
    # SQLite tables are created when the app starts: no separate init-db run.
    a = service_factory("a", redis=redis_server, env=LIVE_ONLY, init_db=False)
    b = service_factory("b", redis=redis_server, env=LIVE_ONLY, init_db=False)
    assert a.db_path == b.db_path
    token = a.register("alice")
    alice = a.api(token)
    alice.create_room(ROOM)
    stream = a.stream(f"/api/rooms/{ROOM}/stream", token)
    expect_ready(stream)
    return SimpleNamespace(a=a, b=b, token=token, alice=alice, stream=stream)


# --------------------------------------------------------------------------- tests


def test_slack_json_and_form_payloads_post_as_a_bot(pair: SimpleNamespace) -> None:
    a, b, alice, stream = pair.a, pair.b, pair.alice, pair.stream
    hook = make_hook(alice)
    assert hook["signed"] is False and "signing_secret" not in hook, hook

    # Slack-style JSON, delivered to the other process.
    body = json.dumps({"text": "build #7 passed ✓", "username": "ci-bot"}).encode()
    first = created(deliver(b, hook["url"], body))
    assert (first["text"], first["sender"], first["bot"], first["webhook"]) == (
        "build #7 passed ✓", "ci-bot", True, "ci"), first
    assert (first["type"], first["room"], first["channel"], first["seq"]) == (
        "message", ROOM, f"room:{ROOM}", 1), first
    expect_message(stream, first)

    # A form whose `payload` field holds the JSON, url-encoded (quotes, '&', '=', '+').
    payload = json.dumps({"text": "deploy a+b=c & done", "username": "deployer"})
    form = created(deliver(b, hook["url"], b"payload=" + quote_plus(payload).encode(), FORM))
    assert (form["text"], form["sender"], form["bot"], form["webhook"], form["seq"]) == (
        "deploy a+b=c & done", "deployer", True, "ci", 2), form
    expect_message(stream, form)

    # Without a username the message shows the webhook's name; plain form fields work too.
    bare = json.dumps({"text": "nightly export done"})
    nameless = created(deliver(b, hook["url"], b"payload=" + quote_plus(bare).encode(), FORM))
    assert (nameless["sender"], nameless["bot"], nameless["seq"]) == ("ci", True, 3), nameless
    expect_message(stream, nameless)
    plain = created(deliver(a, hook["url"], b"text=plain+form&username=cron", FORM))
    assert (plain["text"], plain["sender"], plain["bot"]) == ("plain form", "cron", True), plain
    expect_message(stream, plain)

    # History, read from either process, holds exactly these.
    assert messages(alice) == [first, form, nameless, plain]
    assert messages(b.api(pair.token)) == [first, form, nameless, plain]


def test_signed_hook_accepts_only_fresh_matching_signatures(pair: SimpleNamespace) -> None:
    a, b, alice, stream = pair.a, pair.b, pair.alice, pair.stream
    hook = make_hook(alice, signed=True)
    secret = hook["signing_secret"]
    assert hook["signed"] is True and len(secret) == 64, hook
    listed = alice.get(f"/api/rooms/{ROOM}/webhooks").json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "signing_secret" not in listed[0]

    body = json.dumps({"text": "backup finished", "username": "backup"}).encode()
    good = created(deliver(b, hook["url"], body, **{"X-Chat-Signature": sign(secret, body)}))
    assert (good["text"], good["sender"], good["bot"]) == ("backup finished", "backup", True)
    expect_message(stream, good)

    # Key rotation on the sender's side (a stale v1 first), signed two minutes ago.
    rotated_body = json.dumps({"text": "rotated"}).encode()
    stale = hmac.new(secrets.token_hex(32).encode(), rotated_body, hashlib.sha256).hexdigest()
    header = sign(secret, rotated_body, time.time() - 120)
    t, v1 = header.split(",")
    rotated = created(deliver(b, hook["url"], rotated_body,
                              **{"X-Chat-Signature": f"{t},v1={stale},{v1}"}))
    assert (rotated["text"], rotated["sender"], rotated["seq"]) == (
        "rotated", "ci", good["seq"] + 1), rotated
    expect_message(stream, rotated)

    other = json.dumps({"text": "backup FAILED", "username": "backup"}).encode()
    unkeyed = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()  # no "<t>." part
    rejected = [
        ("unsigned", body, {}, "signature_required"),
        ("tampered body", other, {"X-Chat-Signature": sign(secret, body)}, "bad_signature"),
        ("wrong secret", body, {"X-Chat-Signature": sign(secrets.token_hex(32), body)},
         "bad_signature"),
        ("not over <t>.<body>", body,
         {"X-Chat-Signature": f"t={int(time.time())},v1={unkeyed}"}, "bad_signature"),
        ("no t=", body, {"X-Chat-Signature": sign(secret, body).split(",")[1]},
         "bad_signature"),
        ("six minutes old", body, {"X-Chat-Signature": sign(secret, body, time.time() - 360)},
         "signature_expired"),
        ("six minutes ahead", body,
         {"X-Chat-Signature": sign(secret, body, time.time() + 360)}, "signature_expired"),
    ]
    before = messages(alice)
    assert before == [good, rotated]
    for what, data, headers, code in rejected:
        for svc in (b, a):
            resp = deliver(svc, hook["url"], data, **headers)
            assert resp.status_code == 401, (what, svc.name, resp.status_code, resp.text[:300])
            expect_error(resp, 401, code)
        assert messages(alice) == before, f"{what}: a rejected delivery was stored"

    # Nothing was stored or streamed: the next delivery takes the next seq and is the very
    # next event on the stream.
    last = created(deliver(b, hook["url"], other, **{"X-Chat-Signature": sign(secret, other)}))
    assert last["seq"] == rotated["seq"] + 1, last
    expect_message(stream, last)
    assert messages(alice) == [good, rotated, last]

    signatures = [h["X-Chat-Signature"].rsplit("v1=", 1)[1] for _, _, h, _ in rejected if h]
    assert_not_logged([a, b], hook, secret, *signatures)


def test_idempotency_key_replay_stores_and_streams_once(pair: SimpleNamespace) -> None:
    a, b, alice, stream = pair.a, pair.b, pair.alice, pair.stream
    hook = make_hook(alice)
    body = json.dumps({"text": "pipeline 981 passed", "username": "ci"}).encode()
    key = {"Idempotency-Key": "981-build"}

    first = deliver(b, hook["url"], body, **key)
    original = created(first)
    expect_message(stream, original)
    # The CI job retries: on the same process, then on the other one.
    for svc in (b, a):
        again = deliver(svc, hook["url"], body, **key)
        assert again.status_code == 200, (svc.name, again.status_code, again.text[:300])
        assert again.json() == original, (again.json(), original)

    # The same key on another webhook of the room is another delivery.
    other_hook = make_hook(alice, name="other")
    elsewhere = created(deliver(b, other_hook["url"], body, **key))
    assert elsewhere["seq"] == original["seq"] + 1 and elsewhere["webhook"] == "other"
    # ...so the replays stored nothing and streamed nothing.
    expect_message(stream, elsewhere)
    assert messages(alice) == [original, elsewhere]


def test_deleted_and_malformed_hook_urls_are_json_404s(pair: SimpleNamespace) -> None:
    a, b, alice, stream = pair.a, pair.b, pair.alice, pair.stream
    hook = make_hook(alice)
    body = json.dumps({"text": "works"}).encode()
    works = created(deliver(b, hook["url"], body))
    expect_message(stream, works)

    prefix = f"/hooks/wh_{key_id(hook)}_"
    secret = url_secret(hook)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    malformed = [
        "/hooks/x",
        "/hooks/wh_nope_nope",
        prefix + flipped,  # the right key id, a wrong secret
        prefix + secret[:-2],  # truncated
        f"/hooks/wh_{'0' * 16}_{secret}",  # the right secret, a wrong key id
        prefix + secret + "x" * 200,  # too long
    ]
    for path in malformed:
        for svc in (a, b):
            expect_error(deliver(svc, path, body), 404, "webhook_not_found")
    # Not a webhook URL at all: still a JSON 404, never an HTML page.
    expect_error(deliver(b, "/hooks/", body), 404, "not_found")

    r = alice.request("DELETE", f"/api/rooms/{ROOM}/webhooks/{hook['id']}")
    assert r.status_code == 204, (r.status_code, r.text[:300])
    for svc in (a, b):
        expect_error(deliver(svc, hook["url"], body), 404, "webhook_not_found")
    r = alice.get(f"/api/rooms/{ROOM}/webhooks")
    assert r.status_code == 200 and r.json()["webhooks"] == [], r.text[:300]

    # Nothing was stored or streamed for any of them.
    assert messages(alice) == [works]
    marker = alice.post_message(ROOM, "marker")
    assert marker["seq"] == works["seq"] + 1, marker
    expect_message(stream, marker)

    assert_not_logged([a, b], hook)
