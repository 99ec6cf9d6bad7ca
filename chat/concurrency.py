"""What differs between a gevent worker and plain threads (tests, the dev server)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def gevent_patched() -> bool:
    """True inside a gevent-patched process (the gunicorn worker)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("threading"))


def event_type() -> type[Any]:
    """gevent's own Event where gevent is patched in: lighter and faster to wake than the
    patched threading.Event."""
    if gevent_patched():
        from gevent.event import Event

        return Event
    return threading.Event


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-heavy C code (password hashing: about 90 ms) in a native thread under
    gevent, so the worker's other greenlets, every open stream among them, keep going."""
    if gevent_patched():
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)  # type: ignore[no-any-return]
    return fn(*args)
