import time

from chat.ratelimit import RateLimiter


def test_burst_then_refill():
    limiter = RateLimiter(rate=50.0, burst=3)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0 < wait <= 1 / 50 + 1e-6
    assert limiter.take("b") == 0.0  # keys are apart
    time.sleep(wait + 0.01)
    assert limiter.take("a") == 0.0


def test_full_buckets_are_forgotten_when_the_table_is_full():
    limiter = RateLimiter(rate=1000.0, burst=1, max_keys=10)
    for i in range(10):
        limiter.take(str(i))
    time.sleep(0.01)
    limiter.take("new")
    assert len(limiter._buckets) <= 10
