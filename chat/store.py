"""The database: engine, short sessions, and the one write path that assigns seq."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .models import Base

log = logging.getLogger(__name__)


class Store:
    """Owns the engine. Callers take a session for one short unit of work and let it go."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            engine_options.setdefault("connect_args", {})["timeout"] = 10
        else:
            engine_options.setdefault("pool_pre_ping", True)
        self.engine: Engine = create_engine(url, **engine_options)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer; waiting for its file lock is a C call that no greenlet can
        # leave. Writers of this process queue on a (gevent-patched) lock instead.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; whatever it began is rolled back and it is closed."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction, committed on success, rolled back on error."""
        if self._write_lock is None:
            with self._sessions.begin() as session:
                yield session
            return
        with self._write_lock, self._sessions() as session:
            session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})
            yield session
            session.commit()

    def create_all(self) -> None:
        """Create missing tables (idempotent, and safe when several processes start at
        once: on SQLite the check and the creation share one write transaction)."""
        if not self.is_sqlite:
            Base.metadata.create_all(self.engine)
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                Base.metadata.create_all(conn)

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so a read-then-write transaction never
        # fails to upgrade; readers take a plain snapshot.
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))
