"""Rate limits per key: a token bucket in the worker, or a window shared through Redis."""

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


_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if count > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end
return 0
"""


class RedisRateLimiter(RateLimiter):
    """The same allowance shared by every worker: `burst` actions per `burst / rate`
    seconds per key, counted in Redis. If Redis fails, each worker limits on its own."""

    def __init__(self, url: str, rate: float, burst: int, prefix: str = "chat:rate:") -> None:
        super().__init__(rate, burst)
        import redis

        self._errors = (redis.RedisError,)
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self._script = self._redis.register_script(_WINDOW)
        self.prefix = prefix
        self.window_ms = int(1000 * burst / rate)

    def take(self, key: str) -> float:
        try:
            wait_ms = int(self._script(keys=[self.prefix + key],
                                       args=[self.window_ms, self.burst]))
        except self._errors:
            return super().take(key)
        return max(wait_ms, 1) / 1000 if wait_ms else 0.0

    def close(self) -> None:
        self._redis.close()


def create_rate_limiter(redis_url: str | None, rate: float, burst: int) -> RateLimiter:
    """Shared through Redis when there is one, else this worker's own."""
    if redis_url:
        return RedisRateLimiter(redis_url, rate, burst)
    return RateLimiter(rate, burst)
