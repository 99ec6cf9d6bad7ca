"""A small in-process token bucket per key (per worker: a user spread over several
workers gets each worker's allowance)."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """At most `burst` actions at once per key, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely holds no information.
        full = [k for k, (t, s) in self._buckets.items()
                if t + (now - s) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
