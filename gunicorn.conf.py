"""gunicorn settings for the chat service: gevent workers serving long-lived SSE streams.

Command-line flags (--bind, --workers, ...) override these.
"""

import os
import resource
import shutil
import tempfile

bind = os.environ.get("CHAT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
# Every open stream is one connection of a worker.
worker_connections = int(os.environ.get("CHAT_WORKER_CONNECTIONS", "12000"))
# The gevent worker reports to the arbiter from its own loop, so long streams do not
# count against this; it only catches a worker whose loop is frozen.
timeout = int(os.environ.get("CHAT_WORKER_TIMEOUT", "30"))
# Streams are ended by the app within a second of SIGTERM; this bounds ordinary requests.
graceful_timeout = int(os.environ.get("CHAT_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
errorlog = "-"
loglevel = os.environ.get("CHAT_LOG_LEVEL", "info")
# No preload: the app (and any broker connection) is built in each worker after the fork.
preload_app = False
# Young-generation collections run every 20,000 net allocations instead of 700.
GC_THRESHOLDS = (20_000, 20, 20)


# The Prometheus sample directory this master made for its workers (removed at exit).
_metrics_dir = None


def on_starting(server):
    """Refuse a setup that would silently lose messages or run out of descriptors; give
    the workers a fresh directory for their Prometheus samples."""
    redis_url = os.environ.get("REDIS_URL", "")
    if server.cfg.workers > 1 and (not redis_url or redis_url.startswith("memory:")):
        raise SystemExit(
            "chat: more than one worker needs REDIS_URL; the in-process broker cannot "
            "reach other workers. Set REDIS_URL or run --workers 1."
        )
    database_url = os.environ.get("DATABASE_URL", "")
    if server.cfg.workers > 1 and (not database_url or database_url.startswith("sqlite")):
        raise SystemExit(
            "chat: SQLite serves one worker (its lock waits would freeze the others); "
            "use PostgreSQL (DATABASE_URL) for more workers, or run --workers 1."
        )
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
    else:
        global _metrics_dir
        _metrics_dir = tempfile.mkdtemp(prefix="chat-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = server.cfg.worker_connections + 256
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def on_exit(server):
    """Remove the sample directory made in on_starting (one set by the operator stays)."""
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def child_exit(server, worker):
    """A dead worker's open-streams gauge must stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Tune the collector for many long-lived streams, and end every stream cleanly as
    soon as the worker starts to shut down, so clients get a complete response and
    reconnect elsewhere instead of being cut after the grace period."""
    import gc

    import gevent

    # A full collection walks every object of every open stream and freezes them all
    # while it does (measured: 30 ms at 1,000 streams, over 300 ms at 10,000). The app's
    # startup objects never become garbage: keep them out of every collection, and
    # collect the young generations less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

    def watch():
        while worker.alive:
            gevent.sleep(0.25)
        # Only this app has a hub (gunicorn also reads this file for any other app run
        # from the repository's root).
        chat = getattr(worker.wsgi, "extensions", {}).get("chat")
        if chat is not None:
            chat.hub.shutdown()

    gevent.spawn(watch)
