"""A real-time chat and notification service: store first, publish, stream as SSE."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import load_config

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then test_config."""
    app = Flask(__name__, instance_relative_config=True,
                template_folder=os.path.join(os.path.dirname(__file__), "..", "templates"))
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(app.instance_path, os.environ, test_config))
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from . import (
        auth,
        cli,
        compat,
        direct,
        errors,
        health,
        logs,
        metrics,
        openapi,
        rooms,
        streams,
        web,
        webhooks,
    )
    from .broker import create_broker
    from .extension import ChatExtension
    from .hub import Hub
    from .presence import create_presence
    from .service import ChatService
    from .store import Store

    store = Store(app.config["DATABASE_URL"])
    if store.is_sqlite:
        # The embedded default runs with nothing set up; other databases use init-db.
        store.create_all()
    broker = create_broker(app.config["REDIS_URL"], app.config["CHAT_REDIS_HEALTH_SECONDS"])
    presence = create_presence(app.config["REDIS_URL"],
                               app.config["CHAT_PRESENCE_GRACE_SECONDS"],
                               app.config["CHAT_PRESENCE_TTL_SECONDS"])
    service = ChatService(store, broker, app.config, presence)
    hub = Hub(broker, service.heads, resync_seconds=app.config["CHAT_RESYNC_SECONDS"],
              presence=presence,
              write_timeout=app.config["CHAT_WRITE_TIMEOUT_SECONDS"],
              heartbeat=app.config["CHAT_HEARTBEAT_SECONDS"],
              check_access=service.stale_streams,
              access_seconds=app.config["CHAT_ACCESS_CHECK_SECONDS"])
    app.extensions["chat"] = ChatExtension(store=store, broker=broker, hub=hub, service=service)

    logs.init_app(app)
    errors.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(rooms.bp)
    app.register_blueprint(direct.bp)
    app.register_blueprint(direct.notifications_bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(compat.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    return app


def _instance_secret(instance_path: str) -> str:
    """Without SECRET_KEY (development), a random key kept in the instance folder."""
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path) as fh:
            key = fh.read().strip()
            if key:
                return key
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    log.warning("SECRET_KEY is not set; using a generated key in %s", path)
    return key
