"""Prometheus metrics, correct across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it for every worker) each
process writes its samples to files there and /metrics adds them up; without it (one
process: tests, `flask run`) the default registry serves them.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

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
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_LAG = Histogram(
    "chat_delivery_lag_seconds", "From a message being stored to its write to a stream",
    buckets=LAG_BUCKETS,
)
BROKER_RECONNECTS = Counter("chat_broker_reconnects", "Times the broker subscriber reconnected")
SLOW_CLIENTS_DROPPED = Counter("chat_slow_clients_dropped",
                               "Streams cut because the client read too slowly")


class FrameTally:
    """Per-frame figures (deliveries, replays, lags) tallied in plain integers and added
    to the shared metrics once a second: in multiprocess mode every metric update is a
    locked write to a memory-mapped file, too dear for each frame of a fan-out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.delivered = 0
        self.replayed = 0
        self.lag_sum = 0.0
        self.lag_counts = [0] * (len(LAG_BUCKETS) + 1)

    def lag(self, seconds: float) -> None:
        self.lag_counts[bisect_left(LAG_BUCKETS, seconds)] += 1
        self.lag_sum += seconds

    def flush(self) -> None:
        with self._lock:
            delivered, replayed = self.delivered, self.replayed
            lag_sum, lag_counts = self.lag_sum, self.lag_counts
            self._reset()
        if delivered:
            EVENTS_DELIVERED.inc(delivered)
        if replayed:
            EVENTS_REPLAYED.inc(replayed)
        if any(lag_counts):
            # Histogram.observe() one value at a time, in bulk: the same buckets and sum.
            DELIVERY_LAG._sum.inc(lag_sum)  # noqa: SLF001
            for index, count in enumerate(lag_counts):
                if count:
                    DELIVERY_LAG._buckets[index].inc(count)  # noqa: SLF001


TALLY = FrameTally()


@bp.get("/metrics")
def metrics() -> Response:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    TALLY.flush()
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
