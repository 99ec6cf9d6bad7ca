"""Configuration: safe defaults, overridden by the environment (12-factor)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

_TRUE = {"1", "true", "yes", "on"}


def _bool(value: str) -> bool:
    return value.strip().lower() in _TRUE


def _list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Comma- or space-separated items (a list given by a test passes as it is)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


# name -> (default, parser); every key can be set by an environment variable of the same name.
_SETTINGS: dict[str, tuple[Any, Any]] = {
    "DATABASE_URL": (None, str),
    "REDIS_URL": (None, str),
    "SECRET_KEY": (None, str),
    "CHAT_OPEN_REGISTRATION": (True, _bool),
    "CHAT_HEARTBEAT_SECONDS": (15.0, float),
    "CHAT_RETRY_MS": (2000, int),
    "CHAT_MAX_MESSAGE_BYTES": (16384, int),
    "CHAT_REPLAY_LIMIT": (1000, int),
    "CHAT_CLIENT_QUEUE_SIZE": (512, int),
    "CHAT_WRITE_TIMEOUT_SECONDS": (30.0, float),
    "CHAT_RESYNC_SECONDS": (5.0, float),
    "CHAT_ACCESS_CHECK_SECONDS": (60.0, float),
    "CHAT_PRESENCE_GRACE_SECONDS": (5.0, float),
    "CHAT_PRESENCE_TTL_SECONDS": (30.0, float),
    "CHAT_PASSWORD_HASH": ("scrypt", str),
    "CHAT_SECURE_COOKIES": (False, _bool),
    "CHAT_SESSION_DAYS": (30, int),
    "CHAT_REDIS_HEALTH_SECONDS": (5.0, float),
    "CHAT_LOG_LEVEL": ("info", str),
    # flask-sse compatibility (chat/compat.py): glob patterns of the Redis channels that
    # GET /stream serves to logged-in users, those it serves to anyone, and the origins of
    # other sites whose pages may read them.
    "CHAT_SSE_CHANNELS": (["*"], _list),
    "CHAT_SSE_PUBLIC_CHANNELS": ([], _list),
    "CHAT_SSE_CORS_ORIGINS": ([], _list),
}


def load_config(
    instance_path: str, environ: Mapping[str, str], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Defaults, then the environment, then the test mapping."""
    config: dict[str, Any] = {}
    for name, (default, parse) in _SETTINGS.items():
        raw = environ.get(name)
        config[name] = parse(raw) if raw not in (None, "") else default
    if overrides:
        config.update(overrides)
    for name, (_, parse) in _SETTINGS.items():
        if parse is _list:
            config[name] = _list(config[name])
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(instance_path, "chat.db")
    if not config["REDIS_URL"] or config["REDIS_URL"].startswith("memory:"):
        config["REDIS_URL"] = None
    config["MAX_CONTENT_LENGTH"] = max(1 << 20, config["CHAT_MAX_MESSAGE_BYTES"] * 8)
    return config


def setting_names() -> list[str]:
    """Every setting read from the environment."""
    return list(_SETTINGS)
