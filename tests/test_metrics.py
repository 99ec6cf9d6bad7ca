"""Prometheus metrics move when messages flow."""

import re

from sse_frames import ClientStream


def sample(client, name):
    text = client.get("/metrics").get_data(as_text=True)
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_metrics_move(client, make_user):
    alice = make_user("alice")
    alice.post("/api/rooms", json={"name": "general"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    before = {name: sample(client, name) for name in (
        "chat_messages_stored_total", "chat_events_delivered_total",
        "chat_events_replayed_total", "chat_open_streams", "chat_delivery_lag_seconds_count")}
    alice.post("/api/rooms/general/messages", json={"text": "one"})
    s = ClientStream(alice.client.get("/api/rooms/general/stream", headers={
        **alice.headers, "Last-Event-ID": "0"}, buffered=False))
    assert s.next().event == "ready" and s.next().json()["text"] == "one"  # replayed
    assert sample(client, "chat_open_streams") == before["chat_open_streams"] + 1
    alice.post("/api/rooms/general/messages", json={"text": "two"})
    assert s.next().json()["text"] == "two"  # live
    assert sample(client, "chat_messages_stored_total") == \
        before["chat_messages_stored_total"] + 2
    assert sample(client, "chat_events_replayed_total") == \
        before["chat_events_replayed_total"] + 1
    assert sample(client, "chat_events_delivered_total") >= \
        before["chat_events_delivered_total"] + 2
    assert sample(client, "chat_delivery_lag_seconds_count") == \
        before["chat_delivery_lag_seconds_count"] + 1
    s.close()
    assert sample(client, "chat_open_streams") == before["chat_open_streams"]
    for name in ("chat_broker_reconnects_total", "chat_slow_clients_dropped_total"):
        sample(client, name)


def test_tally_flush_matches_observing_one_by_one():
    from prometheus_client import CollectorRegistry, Histogram

    from chat import metrics

    values = [0.0004, 0.001, 0.003, 0.04, 0.2, 7.0, 30.0]
    registry = CollectorRegistry()
    reference = Histogram("reference", "x", buckets=metrics.LAG_BUCKETS, registry=registry)
    for value in values:
        reference.observe(value)

    def buckets(samples, name):
        return {s.labels["le"]: s.value for s in samples if s.name == f"{name}_bucket"}

    before = buckets(metrics.DELIVERY_LAG.collect()[0].samples, "chat_delivery_lag_seconds")
    tally = metrics.FrameTally()
    for value in values:
        tally.lag(value)
    tally.flush()
    after = buckets(metrics.DELIVERY_LAG.collect()[0].samples, "chat_delivery_lag_seconds")
    expected = buckets(reference.collect()[0].samples, "reference")
    assert {le: after[le] - before[le] for le in after} == expected
