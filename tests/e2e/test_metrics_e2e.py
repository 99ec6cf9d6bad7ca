"""/metrics from a real gunicorn worker (multiprocess mode) moves when messages flow."""

from __future__ import annotations

import re

import pytest
import requests

from .conftest import ServiceFactory

pytestmark = pytest.mark.e2e


def value(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} missing:\n{text[:2000]}"
    return float(match.group(1))


def test_metrics_under_gunicorn(service_factory: ServiceFactory) -> None:
    svc = service_factory("metrics")
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room("general")

    def scrape() -> str:
        with requests.get(f"{svc.base}/metrics", timeout=10) as r:
            assert r.status_code == 200
            return r.text

    assert value(scrape(), "chat_open_streams") == 0
    stream = svc.stream("/api/rooms/general/stream", token)
    assert stream.next_event(10).event == "ready"
    for i in range(3):
        api.post_message("general", f"m{i}")
    assert [stream.next_event(10).event for _ in range(3)] == ["message"] * 3
    text = scrape()
    assert value(text, "chat_open_streams") == 1
    assert value(text, "chat_messages_stored_total") == 3
    assert value(text, "chat_events_delivered_total") >= 3
    assert value(text, "chat_delivery_lag_seconds_count") == 3
    assert value(text, "chat_delivery_lag_seconds_sum") < 3  # well under a second each
    stream.close()
