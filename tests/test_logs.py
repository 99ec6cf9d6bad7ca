"""Request logging, and no secret in any log line."""

import logging

from chat.logs import RedactingFilter, redact


def test_one_line_per_request_with_user_status_and_duration(client, make_user, caplog):
    alice = make_user("alice")
    caplog.set_level(logging.INFO, logger="chat.access")
    alice.get("/api/rooms")
    alice.post("/api/rooms", json={"name": "Bad Name"})
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.access"]
    assert lines[0].startswith("GET /api/rooms 200 ") and lines[0].endswith("user=alice")
    assert "ms user=" in lines[0]
    assert lines[1].startswith("POST /api/rooms 400 ")


def test_tokens_and_hook_secrets_never_reach_a_log(client, make_user, caplog):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    hook = alice.post("/api/rooms/general/webhooks", json={"name": "ci"}).get_json()
    caplog.set_level(logging.INFO)
    handler_filter = RedactingFilter()
    for record_source in (
        lambda: client.get(f"/api/rooms/general/stream?access_token={alice.token}",
                           buffered=False).close(),
        lambda: client.get(f"/api/rooms/nope/stream?access_token={alice.token}"),
        lambda: client.post(hook["url"], json={"text": "x"}),
        lambda: client.post(hook["url"] + "x", json={"text": "x"}),
    ):
        record_source()
    logging.getLogger("chat.test").warning("token %s in a message", alice.token)
    secret = hook["url"].rsplit("_", 1)[1]
    for record in caplog.records:
        handler_filter.filter(record)
        text = record.getMessage() + (record.exc_text or "")
        assert alice.token not in text and secret not in text, text
    assert any("access_token=[redacted]" in r.getMessage() for r in caplog.records)


def test_redact():
    token = "chat_0123456789abcdef_SECRETsecret-_x"
    assert redact(f"GET /api/stream?access_token={token}&x=1") == \
        "GET /api/stream?access_token=[redacted]&x=1"
    assert redact(f"Bearer {token}") == "Bearer chat_0123456789abcdef_[redacted]"
    assert redact("/hooks/wh_0123456789abcdef_abcDEF-_9 x") == \
        "/hooks/wh_0123456789abcdef_[redacted] x"
    assert redact("t=1,v1=" + "ab" * 32) == "t=1,v1=[redacted]"
