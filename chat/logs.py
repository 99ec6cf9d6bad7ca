"""One log line per request, and no secret in any log line.

Tokens travel in URLs (`?access_token=` on streams, `/hooks/<secret>`); a filter on
every handler scrubs them from messages and tracebacks, whoever logs them (the app,
werkzeug, gunicorn).
"""

from __future__ import annotations

import logging
import re
import sys
import time

from flask import Flask, Response, g, request

access_log = logging.getLogger("chat.access")

_SECRETS = [
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"\b(chat_[0-9a-f]{16}_)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    (re.compile(r"(/hooks/wh_[0-9a-f]{16}_)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    (re.compile(r"(\bv1=)[0-9a-f]{16,}"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    """The text with every token, hook secret and signature replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs secrets from a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_filter() -> None:
    """Put the filter on every handler of the root, app and gunicorn loggers."""
    for name in (None, "gunicorn.error", "gunicorn.access", "werkzeug"):
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def init_app(app: Flask) -> None:
    root = logging.getLogger()
    if not root.handlers and not app.testing:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(app.config["CHAT_LOG_LEVEL"].upper())
    install_filter()

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        started = g.get("request_started")
        duration = (time.perf_counter() - started) * 1000 if started else 0.0
        principal = g.get("principal")
        path = request.full_path.rstrip("?") if request.query_string else request.path
        if response.mimetype == "text/event-stream":
            # A stream's line is written when it opens; it logs its end itself.
            duration_text = "stream"
        else:
            duration_text = f"{duration:.1f}ms"
        access_log.info("%s %s %s %s user=%s", request.method, redact(path),
                        response.status_code, duration_text,
                        principal.username if principal else "-")
        return response
