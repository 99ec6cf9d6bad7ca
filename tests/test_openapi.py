"""The OpenAPI document (chat/openapi.py): valid OpenAPI 3.1, in step with the routes,
true to what the API answers, and its page for people."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from markupsafe import escape
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from sse_frames import ClientStream

from chat import openapi

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
RULE_ARG = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")


@pytest.fixture(autouse=True)
def _registered(app: Flask) -> None:
    """Until create_app registers the blueprint, the tests register it themselves."""
    if "openapi" not in app.blueprints:
        app.register_blueprint(openapi.bp)


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    r = client.get("/api/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in doc["paths"].items()
            for method, operation in item.items() if method in METHODS]


def routes(app: Flask, api_only: bool) -> dict[str, set[str]]:
    """Every route (but static files) as an OpenAPI path → its methods, HEAD and OPTIONS
    (which Flask adds by itself) left out."""
    out: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or (api_only and not rule.rule.startswith("/api/")):
            continue
        path = RULE_ARG.sub(r"{\2}", rule.rule)
        out.setdefault(path, set()).update(
            m.lower() for m in (rule.methods or set()) - {"HEAD", "OPTIONS"})
    return out


# --------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert not errors, "\n".join(errors[:20])
    # Served as built: the module's data, once.
    assert doc == json.loads(json.dumps(openapi.build_document()))
    assert openapi.build_document() is openapi.build_document()


def test_every_api_route_is_documented_with_its_methods(app: Flask,
                                                        doc: dict[str, Any]) -> None:
    documented = {path: {m for m in item if m in METHODS}
                  for path, item in doc["paths"].items()}
    served = routes(app, api_only=True)
    missing = {path: methods - documented.get(path, set())
               for path, methods in served.items() if methods - documented.get(path, set())}
    assert not missing, f"routes missing from chat/openapi.py: {missing}"


def test_every_documented_operation_exists(app: Flask, doc: dict[str, Any]) -> None:
    served = routes(app, api_only=False)
    extra = {(path, method) for path, method, _ in operations(doc)
             if method not in served.get(path, set())}
    assert not extra, f"documented, but no such route: {sorted(extra)}"


def test_path_parameters_match_the_rules(app: Flask, doc: dict[str, Any]) -> None:
    converters = {}
    for rule in app.url_map.iter_rules():
        path = RULE_ARG.sub(r"{\2}", rule.rule)
        converters[path] = {name: conv or "default" for conv, name in RULE_ARG.findall(rule.rule)}
    for path, method, operation in operations(doc):
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(converters[path]), (method, path)
        for name, converter in converters[path].items():
            kind = declared[name]["schema"]["type"]
            is_int = converter.split("(")[0] == "int"
            assert kind == ("integer" if is_int else "string"), (path, name)


def test_every_operation_documents_its_errors(doc: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in operations(doc):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        assert any(s.startswith("2") for s in responses), where
        assert "500" in responses, where
        for status, response in responses.items():
            if status.startswith("4") or status == "500":
                schema = response["content"]["application/json"]["schema"]
                assert error_ref in schema["allOf"], (where, status)
                codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                assert codes and all(f"`{code}`" in response["description"] for code in codes)
        security = operation.get("security", doc["security"])
        if security:
            assert set(_codes(responses, "401")) == {"not_authenticated", "invalid_token"}, where
            if method != "get":
                assert "cross_site_request" in _codes(responses, "403"), where
        body = operation.get("requestBody")
        if body:
            assert "application/json" in body["content"], where
            assert "unsupported_media_type" in _codes(responses, "415"), where
            assert "invalid_json" in _codes(responses, "400"), where
            assert "too_large" in _codes(responses, "413"), where


def _codes(responses: dict[str, Any], status: str) -> list[str]:
    if status not in responses:
        return []
    schema = responses[status]["content"]["application/json"]["schema"]
    return schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]


def test_security_schemes(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http",
                                     "scheme": "bearer"}
    assert (schemes["sessionCookie"]["in"], schemes["sessionCookie"]["name"]) == \
        ("cookie", "chat_session")
    assert (schemes["streamToken"]["in"], schemes["streamToken"]["name"]) == \
        ("query", "access_token")
    for path, method, operation in operations(doc):
        uses_query_token = any("streamToken" in r for r in operation.get("security", []))
        is_stream = any("text/event-stream" in response.get("content", {})
                        for response in operation["responses"].values())
        assert uses_query_token == is_stream, (method, path)


# --------------------------------------------------------------------------- the page


def test_the_page_lists_every_operation_under_a_strict_policy(client: Any,
                                                              doc: dict[str, Any]) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "script-src" not in csp
    nonce = re.search(r"style-src 'nonce-([^']+)'", csp).group(1)
    html = r.get_data(as_text=True)
    assert re.findall(r"<style[^>]*>", html) == [f'<style nonce="{nonce}">']
    assert "<script" not in html and not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from elsewhere
    for path, method, operation in operations(doc):
        assert f'<span class="method">{method.upper()}</span><code>{path}</code>' in html
        assert str(escape(operation["summary"])) in html
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert client.get("/api/docs").headers["Content-Security-Policy"] != csp  # fresh nonce


def test_the_page_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>'
    document = json.loads(json.dumps(openapi.build_document()))
    document["info"]["title"] = evil
    document["info"]["description"] = f"`{evil}` {evil}"
    operation = document["paths"]["/api/me"]["get"]
    operation["summary"] = evil
    operation["parameters"] = [{"name": evil, "in": "query", "description": evil,
                                "schema": {"type": "string", "pattern": evil}}]
    document["paths"][f"/api/{evil}"] = document["paths"].pop("/api/me")
    document["components"]["schemas"]["User"]["properties"][evil] = {
        "type": "string", "description": evil, "enum": [evil]}
    html = openapi.render_page(document, "n0nce")
    assert "<script" not in html and "alert(" in html
    assert "&lt;script&gt;" in html


# --------------------------------------------------------------------------- the answers


class Conformance:
    """Checks real responses against the document: documented status, content type,
    required headers, body schema."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def schema_for(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path} answered undocumented {status}"
        return responses[str(status)]

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        root = {**schema, "components": self.doc["components"]}
        errors = list(OAS31Validator(root).iter_errors(instance))
        assert not errors, (instance, [e.message for e in errors][:5])

    def __call__(self, response: Any, method: str, path: str, status: int | None = None,
                 code: str | None = None) -> Any:
        if status is not None:
            assert response.status_code == status, (method, path, response.get_data()[:300])
        documented = self.schema_for(path, method, response.status_code)
        self.seen.add((method, path, str(response.status_code)))
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, (method, path, name)
        content = documented.get("content")
        if not content:
            assert response.get_data() == b"", (method, path)
            return None
        assert response.mimetype in content, (method, path, response.mimetype)
        if response.mimetype != "application/json":
            return None
        body = response.get_json()
        self.validate(content["application/json"]["schema"], body)
        if code is not None:
            assert body["error"]["code"] == code, body
        return body


def test_answers_conform_to_the_document(client: Any, make_user: Any, runner: Any,
                                         doc: dict[str, Any]) -> None:
    check = Conformance(doc)
    alice, bob = make_user("alice"), make_user("bob")

    # Identity
    r = client.post("/api/users", json={"username": "carol", "password": "password123"})
    check(r, "post", "/api/users", 201)
    check(client.post("/api/users", json={"username": "carol", "password": "password123"}),
          "post", "/api/users", 409, "username_taken")
    check(client.post("/api/users", data={"username": "x"}), "post", "/api/users", 415,
          "unsupported_media_type")
    check(client.post("/api/session", data={"username": "carol", "password": "nope"}),
          "post", "/api/session", 401, "invalid_credentials")
    check(client.post("/api/session", json={"username": "carol", "password": "password123"}),
          "post", "/api/session", 200)
    check(client.delete("/api/session"), "delete", "/api/session", 200)
    check(client.get("/api/me"), "get", "/api/me", 401, "not_authenticated")
    check(client.get("/api/me", headers={"Authorization": "Bearer chat_0_x"}), "get",
          "/api/me", 401, "invalid_token")
    check(alice.get("/api/me"), "get", "/api/me", 200)
    token = check(alice.post("/api/tokens", json={"name": "ci"}), "post", "/api/tokens", 201)
    check(alice.post("/api/tokens"), "post", "/api/tokens", 201)
    check(alice.post("/api/tokens", data="[1]", content_type="application/json"),
          "post", "/api/tokens", 400, "invalid_json")
    check(alice.get("/api/tokens"), "get", "/api/tokens", 200)
    check(alice.delete(f"/api/tokens/{token['id']}"), "delete", "/api/tokens/{token_id}", 204)
    check(alice.delete(f"/api/tokens/{token['id']}"), "delete", "/api/tokens/{token_id}",
          404, "not_found")

    # Rooms
    check(alice.post("/api/rooms", {"name": "general", "title": "General"}),
          "post", "/api/rooms", 201)
    check(alice.post("/api/rooms", data={"name": "secret", "private": "on"}),
          "post", "/api/rooms", 201)
    check(alice.post("/api/rooms", {"name": "general"}), "post", "/api/rooms", 409,
          "room_exists")
    check(alice.post("/api/rooms", {"name": "Bad Name"}), "post", "/api/rooms", 400,
          "invalid_name")
    members = "/api/rooms/{room}/members"
    check(alice.post("/api/rooms/general/members", {"username": "bob"}), "post", members, 201)
    check(alice.post("/api/rooms/general/members", {"username": "bob"}), "post", members, 200)
    check(alice.post("/api/rooms/general/members", {"username": "zed"}), "post", members,
          404, "user_not_found")
    check(bob.post("/api/rooms/secret/join"), "post", "/api/rooms/{room}/join", 404,
          "room_not_found")
    check(bob.post("/api/rooms/general/join"), "post", "/api/rooms/{room}/join", 200)
    sent = "/api/rooms/{room}/messages"
    first = check(alice.post("/api/rooms/general/messages", {"text": "hi @bob",
                                                             "client_msg_id": "k1"}),
                  "post", sent, 201)
    check(alice.post("/api/rooms/general/messages", {"text": "again", "client_msg_id": "k1"}),
          "post", sent, 200)
    second = check(alice.post("/api/rooms/general/messages", data={"text": "two"}),
                   "post", sent, 201)
    check(alice.post("/api/rooms/general/messages", {"text": "x" * 20000}), "post", sent,
          413, "message_too_large")
    check(alice.post("/api/rooms/general/messages", {"text": " "}), "post", sent, 400,
          "invalid_field")
    check(alice.post("/api/rooms/bob~alice/messages", {"text": "x"}), "post", sent, 400,
          "invalid_name")
    one = "/api/rooms/{room}/messages/{seq}"
    check(alice.client.patch(f"/api/rooms/general/messages/{first['seq']}",
                             json={"text": "edited"}, headers=alice.headers),
          "patch", one, 200)
    check(bob.client.patch(f"/api/rooms/general/messages/{first['seq']}",
                           json={"text": "mine"}, headers=bob.headers),
          "patch", one, 403, "not_the_sender")
    check(alice.delete(f"/api/rooms/general/messages/{second['seq']}"), "delete", one, 204)
    check(alice.delete(f"/api/rooms/general/messages/{second['seq']}"), "delete", one, 404,
          "message_not_found")
    check(bob.post("/api/rooms/general/leave"), "post", "/api/rooms/{room}/leave", 200)
    check(bob.post("/api/rooms/general/leave"), "post", "/api/rooms/{room}/leave", 403,
          "not_a_member")
    history = check(alice.get("/api/rooms/general/messages?limit=200"), "get", sent, 200)
    assert {e["type"] for e in history["messages"]} == {
        "message", "member.joined", "member.left", "message.updated", "message.deleted"}
    check(alice.get("/api/rooms/general/messages?limit=201"), "get", sent, 400,
          "invalid_parameter")
    read = "/api/rooms/{room}/read"
    check(alice.post("/api/rooms/general/read", {"seq": 2}), "post", read, 200)
    check(alice.post("/api/rooms/general/read", data={"seq": "99"}), "post", read, 400,
          "invalid_field")
    typing = "/api/rooms/{room}/typing"
    check(alice.post("/api/rooms/general/typing", data={"typing": "off"}), "post", typing, 200)
    answers = [alice.post("/api/rooms/general/typing") for _ in range(6)]
    check(answers[-1], "post", typing, 429, "too_many_requests")
    check(alice.get("/api/rooms/general/presence"), "get", "/api/rooms/{room}/presence", 200)
    check(alice.get("/api/rooms/general/members"), "get", members, 200)
    check(bob.get("/api/rooms/secret/members"), "get", members, 404, "room_not_found")

    # Direct messages and notifications
    dm = "/api/users/{name}/messages"
    check(alice.post("/api/users/bob/messages", {"text": "psst"},
                     headers={"Idempotency-Key": "dm-1"}), "post", dm, 201)
    check(alice.post("/api/users/bob/messages", data={"text": "psst"},
                     headers={"Idempotency-Key": "dm-1"}), "post", dm, 200)
    check(alice.post("/api/users/alice/messages", {"text": "me"}), "post", dm, 400,
          "invalid_field")
    check(alice.post("/api/users/zed/messages", {"text": "?"}), "post", dm, 404,
          "user_not_found")
    rooms = check(alice.get("/api/rooms"), "get", "/api/rooms", 200)["rooms"]
    assert [r["kind"] for r in rooms] == ["room", "room", "dm"] and rooms[2]["with"] == "bob"
    notify = "/api/users/{name}/notifications"
    check(alice.post("/api/users/alice/notifications",
                     {"title": "Deploy", "url": "/runs/7", "level": "success"}),
          "post", notify, 201)
    check(bob.post("/api/users/alice/notifications", {"title": "hi"}), "post", notify, 403,
          "forbidden")
    check(alice.post("/api/users/alice/notifications", {"title": "x", "url": "javascript:1"}),
          "post", notify, 400, "invalid_field")
    notes = check(bob.get("/api/notifications"), "get", "/api/notifications", 200)
    assert notes["notifications"][0]["kind"] == "mention"
    check(bob.get("/api/notifications?before=0"), "get", "/api/notifications", 400,
          "invalid_parameter")
    check(bob.post("/api/notifications/read", {"seq": 1}), "post", "/api/notifications/read",
          200)

    # Streams: the errors are JSON; the stream's own frames carry the documented data.
    check(client.get("/api/stream?access_token=bad"), "get", "/api/stream", 401,
          "invalid_token")
    check(alice.get("/api/users/bob/stream"), "get", "/api/users/{name}/stream", 403,
          "forbidden")
    check(alice.get("/api/rooms/nowhere/stream"), "get", "/api/rooms/{room}/stream", 404,
          "room_not_found")
    for path, template in (("/api/stream", "/api/stream"),
                           ("/api/users/alice/stream", "/api/users/{name}/stream"),
                           ("/api/rooms/general/stream", "/api/rooms/{room}/stream")):
        response = client.get(f"{path}?access_token={alice.token}", buffered=False)
        check(response, "get", template, 200)
        stream = ClientStream(response)
        ready = stream.next()
        assert ready.event == "ready"
        check.validate({"$ref": "#/components/schemas/StreamReady"}, ready.json())
        stream.close()
    response = client.get("/api/rooms/general/stream", headers={
        **alice.headers, "Last-Event-ID": "0"}, buffered=False)
    stream = ClientStream(response)
    assert stream.next().event == "ready"
    replayed = stream.take(len(history["messages"]) - 2)  # the room's events, replayed
    assert {f.event for f in replayed} >= {"member.joined", "message", "message.updated"}
    for frame in replayed:
        check.validate({"$ref": "#/components/schemas/Event"}, frame.json())
    stream.close()
    response = client.get("/api/rooms/general/stream", headers={
        **alice.headers, "Last-Event-ID": "nonsense"}, buffered=False)
    stream = ClientStream(response)
    assert stream.next().event == "ready"
    reset = stream.next()
    check.validate({"$ref": "#/components/schemas/StreamReset"}, reset.json())
    stream.close()

    # Webhooks
    hooks = "/api/rooms/{room}/webhooks"
    plain = check(alice.post("/api/rooms/general/webhooks", {"name": "ci"}), "post", hooks, 201)
    signed = check(alice.post("/api/rooms/general/webhooks", data={"name": "s", "signed": "1"}),
                   "post", hooks, 201)
    assert "signing_secret" in signed and "signing_secret" not in plain
    check(alice.post("/api/rooms/general/webhooks", {"name": " "}), "post", hooks, 400,
          "invalid_field")
    check(bob.get("/api/rooms/general/webhooks"), "get", hooks, 403, "not_a_member")
    check(alice.get("/api/rooms/general/webhooks"), "get", hooks, 200)
    deliver = "/hooks/{token}"
    bot = check(client.post(plain["url"], json={"text": "built", "username": "CI bot"},
                            headers={"Idempotency-Key": "run-1"}), "post", deliver, 201)
    assert bot["bot"] is True and bot["sender"] == "CI bot"
    check(client.post(plain["url"], json={"text": "again"}, headers={"Idempotency-Key": "run-1"}),
          "post", deliver, 200)
    check(client.post(plain["url"], data={"payload": '{"text": "from a form"}'}),
          "post", deliver, 201)
    check(client.post(plain["url"], data={"payload": "[]"}), "post", deliver, 400,
          "invalid_json")
    check(client.post(signed["url"], json={"text": "x"}), "post", deliver, 401,
          "signature_required")
    check(client.post("/hooks/wh_0_x", json={"text": "x"}), "post", deliver, 404,
          "webhook_not_found")
    one_hook = "/api/rooms/{room}/webhooks/{webhook_id}"
    check(alice.delete(f"/api/rooms/general/webhooks/{plain['id']}"), "delete", one_hook, 204)
    check(alice.delete(f"/api/rooms/general/webhooks/{plain['id']}"), "delete", one_hook, 404,
          "webhook_not_found")
    check(client.post(plain["url"], json={"text": "x"}), "post", deliver, 404,
          "webhook_not_found")
    history = check(alice.get("/api/rooms/general/messages"), "get", sent, 200)
    assert any(m.get("bot") for m in history["messages"])

    # flask-sse channels
    runner.invoke(args=["create-user", "ops", "--admin", "--password", "password123"])
    ops = {"Authorization": "Bearer " + runner.invoke(args=["create-token", "ops"]).stdout.strip()}
    channel, events = "/stream", "/api/channels/{channel}/events"
    check(client.get("/stream"), "get", channel, 401, "not_authenticated")
    check(alice.get("/stream?channel=chat:x"), "get", channel, 400, "invalid_channel")
    response = alice.get("/stream?channel=news", buffered=False)
    check(response, "get", channel, 200)
    news = ClientStream(response)
    check(client.post("/api/channels/news/events", headers=ops,
                      json={"data": {"n": 1}, "type": "n", "id": "1", "retry": 10}),
          "post", events, 202)
    check(client.post("/api/channels/news/events", headers=ops, data={"data": "x"}),
          "post", events, 202)
    assert [f.event for f in news.take(2)] == ["n", "message"]
    news.close()
    check(alice.post("/api/channels/news/events", {"data": 1}), "post", events, 403,
          "forbidden")
    check(client.post("/api/channels/news/events", headers=ops, json={}), "post", events, 400,
          "missing_field")
    check(client.post("/api/channels/__x/events", headers=ops, json={"data": 1}), "post",
          events, 400, "invalid_channel")

    # Operations
    check(client.get("/healthz"), "get", "/healthz", 200)
    check(client.get("/readyz"), "get", "/readyz", 200)
    check(client.get("/metrics"), "get", "/metrics", 200)

    # This document and its page.
    check(client.get("/api/openapi.json"), "get", "/api/openapi.json", 200)
    check(client.get("/api/docs"), "get", "/api/docs", 200)
    check(alice.delete("/api/session"), "delete", "/api/session", 200)

    # Every documented success answered and was checked (a 503 from /readyz needs a
    # database or broker that is down: not here).
    unseen = {(method, path, status) for path, method, operation in operations(doc)
              for status in operation["responses"] if status[0] in "23"} - check.seen
    assert not unseen, sorted(unseen)
