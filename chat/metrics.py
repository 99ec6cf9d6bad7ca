"""Prometheus metrics, correct across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it for every worker) each
process writes its samples to files there and /metrics adds them up; without it (one
process: tests, `flask run`) the default registry serves them.
"""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

bp = Blueprint("metrics", __name__)

OPEN_STREAMS = Gauge("chat_open_streams", "SSE streams open now", multiprocess_mode="livesum")
MESSAGES_STORED = Counter("chat_messages_stored", "Messages stored (by the API or a webhook)")
EVENTS_DELIVERED = Counter("chat_events_delivered", "Events written to stream clients")
EVENTS_REPLAYED = Counter("chat_events_replayed",
                          "Events sent from the store: resumes, catch-ups and gap fills")
DELIVERY_LAG = Histogram(
    "chat_delivery_lag_seconds", "From a message being stored to its write to a stream",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BROKER_RECONNECTS = Counter("chat_broker_reconnects", "Times the broker subscriber reconnected")
SLOW_CLIENTS_DROPPED = Counter("chat_slow_clients_dropped",
                               "Streams cut because the client read too slowly")


@bp.get("/metrics")
def metrics() -> Response:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
