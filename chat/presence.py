"""Who is online: a user is online while at least one of their streams is open, on any
worker or machine.

Each worker counts its own streams per user. A user whose last local stream closed is
kept for a grace period, so a reconnect blip announces nothing. With Redis, each worker
claims its online users in a per-user sorted set with an expiry it keeps refreshing; a
worker that dies stops refreshing, its claims expire, and any worker's reaper announces
the user offline. The Lua scripts make each transition happen exactly once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable

import redis

log = logging.getLogger(__name__)

# (user id, online) -> None; called once per transition.
Announcer = Callable[[int, bool], None]


class Presence:
    """In-process presence: the one worker sees every stream."""

    def __init__(self, grace_seconds: float = 5.0) -> None:
        self.grace = grace_seconds
        self.announce: Announcer = lambda user_id, online: None
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._leaving: dict[int, float] = {}  # user id -> when the grace period ends

    def opened(self, user_id: int) -> None:
        """A stream of the user opened on this worker."""
        with self._lock:
            count = self._counts.get(user_id, 0)
            self._counts[user_id] = count + 1
            returning = self._leaving.pop(user_id, None) is not None
        if count == 0 and not returning and self._claim(user_id):
            self._safe_announce(user_id, True)

    def closed(self, user_id: int) -> None:
        """A stream of the user ended on this worker."""
        with self._lock:
            count = self._counts.get(user_id, 0) - 1
            if count > 0:
                self._counts[user_id] = count
                return
            self._counts.pop(user_id, None)
            self._leaving[user_id] = time.monotonic() + self.grace

    def tick(self) -> None:
        """Called about once a second: let go of users whose grace period ended."""
        now = time.monotonic()
        with self._lock:
            due = [uid for uid, deadline in self._leaving.items() if deadline <= now]
            for uid in due:
                del self._leaving[uid]
        for uid in due:
            if self._release(uid):
                self._safe_announce(uid, False)

    def online(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these users are online."""
        with self._lock:
            return {uid for uid in user_ids if uid in self._counts or uid in self._leaving}

    def _claim(self, user_id: int) -> bool:
        """Claim the user for this worker; True if they were offline everywhere."""
        return True

    def _release(self, user_id: int) -> bool:
        """Drop this worker's claim; True if no worker claims the user any more."""
        return True

    def _safe_announce(self, user_id: int, online: bool) -> None:
        try:
            self.announce(user_id, online)
        except Exception:
            log.exception("presence: announcing user %s failed", user_id)

    def close(self) -> None:  # noqa: B027 - nothing to release in-process
        """Release connections."""

    def local_users(self) -> list[int]:
        with self._lock:
            return list(self._counts) + list(self._leaving)


_CLAIM = """
local now, expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local was = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], expiry, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil((expiry - now) * 1000) + 60000)
redis.call('ZADD', KEYS[2], 'GT', expiry, ARGV[4])
return was
"""

# Offline only if no live claim is left; the ZREM from the index happens once, so of two
# workers (or a worker and a reaper) only one announces.
_RELEASE = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[1], ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[3])
"""


class RedisPresence(Presence):
    """Presence shared by every worker through Redis."""

    def __init__(self, url: str, grace_seconds: float = 5.0, ttl_seconds: float = 30.0,
                 prefix: str = "chat:presence:") -> None:
        super().__init__(grace_seconds)
        self.ttl = ttl_seconds
        self.prefix = prefix
        self.worker = secrets.token_hex(8)
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._claim_script = self._redis.register_script(_CLAIM)
        self._release_script = self._redis.register_script(_RELEASE)
        self._last_refresh = 0.0
        self._last_reap = 0.0

    @property
    def index(self) -> str:
        return self.prefix + "online"

    def _key(self, user_id: int) -> str:
        return f"{self.prefix}{user_id}"

    def _claim(self, user_id: int) -> bool:
        now = time.time()
        try:
            was = self._claim_script(keys=[self._key(user_id), self.index],
                                     args=[now, now + self.ttl, self.worker, user_id])
        except redis.RedisError as exc:
            log.warning("presence: claim failed (%s)", exc)
            return False
        return int(was) == 0

    def _release(self, user_id: int) -> bool:
        return self._run_release(user_id, self.worker)

    def _run_release(self, user_id: int, worker: str) -> bool:
        try:
            gone = self._release_script(keys=[self._key(user_id), self.index],
                                        args=[time.time(), worker, user_id])
        except redis.RedisError as exc:
            log.warning("presence: release failed (%s)", exc)
            return False
        return int(gone) == 1

    def tick(self) -> None:
        super().tick()
        now = time.time()
        if now - self._last_refresh >= self.ttl / 3:
            self._last_refresh = now
            self._refresh(now)
        if now - self._last_reap >= self.ttl / 2:
            self._last_reap = now
            self._reap(now)

    def _refresh(self, now: float) -> None:
        users = self.local_users()
        if not users:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for uid in users:
                pipe.zadd(self._key(uid), {self.worker: now + self.ttl})
                pipe.expire(self._key(uid), int(self.ttl) + 60)
                pipe.zadd(self.index, {str(uid): now + self.ttl}, gt=True)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("presence: refresh failed (%s)", exc)

    def _reap(self, now: float) -> None:
        """Announce users whose every claim expired (their workers died)."""
        try:
            stale = self._redis.zrangebyscore(self.index, "-inf", now, start=0, num=500)
        except redis.RedisError as exc:
            log.warning("presence: reap failed (%s)", exc)
            return
        for raw in stale:
            uid = int(raw)
            if self._run_release(uid, ""):
                self._safe_announce(uid, False)

    def online(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        if not ids:
            return set()
        try:
            scores = self._redis.zmscore(self.index, [str(uid) for uid in ids])
        except redis.RedisError as exc:
            log.warning("presence: lookup failed (%s)", exc)
            return super().online(ids)
        now = time.time()
        return {uid for uid, score in zip(ids, scores, strict=True)
                if score is not None and score > now}

    def close(self) -> None:
        self._redis.close()


def create_presence(redis_url: str | None, grace_seconds: float,
                    ttl_seconds: float) -> Presence:
    if redis_url:
        return RedisPresence(redis_url, grace_seconds, ttl_seconds)
    return Presence(grace_seconds)
