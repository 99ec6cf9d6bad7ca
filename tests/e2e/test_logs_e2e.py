"""What a real gunicorn worker logs: a line per request, and no secret."""

from __future__ import annotations

import pytest
import requests

from .conftest import ServiceFactory

pytestmark = pytest.mark.e2e


def test_gunicorn_logs_requests_without_secrets(service_factory: ServiceFactory) -> None:
    svc = service_factory("logs")
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room("general")
    hook = api.post("/api/rooms/general/webhooks", {"name": "ci"}).json()
    stream = svc.stream(f"/api/rooms/general/stream?access_token={token}", None)
    assert stream.next_event(10).event == "ready"
    with requests.Session() as http:
        assert http.post(svc.base + hook["url"], json={"text": "hi"}, timeout=10).ok
        assert http.get(f"{svc.base}/api/me?access_token={token}", timeout=10).status_code == 401
    assert stream.next_event(10).event == "message"
    stream.close()
    svc.stop()
    log = svc.log_text()
    secret = hook["url"].rsplit("_", 1)[1]
    assert token not in log and secret not in log
    assert "GET /api/rooms/general/stream?access_token=[redacted] 200 stream user=alice" in log
    assert "POST /hooks/wh_" in log and "[redacted] 201" in log
    assert "GET /api/me?access_token=[redacted] 401" in log
    assert "ended after" in log
