"""Fixtures for unit and integration tests (the e2e ones live in tests/e2e)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from chat import create_app

FAST_HASH = "pbkdf2:sha256:1000"


@pytest.fixture
def app(tmp_path: Any) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
            "REDIS_URL": None,
            "CHAT_PASSWORD_HASH": FAST_HASH,
            "CHAT_HEARTBEAT_SECONDS": 0.5,
        }
    )
    yield app
    app.extensions["chat"].hub.shutdown()
    app.extensions["chat"].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture(autouse=True)
def _no_leaked_app_context() -> Iterator[None]:
    from flask import has_app_context

    yield
    assert not has_app_context(), "a test leaked an app context"


class Api:
    """A test client bound to one user's bearer token."""

    def __init__(self, client: FlaskClient, username: str, token: str) -> None:
        self.client = client
        self.username = username
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.post(path, json=json, headers=headers, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)


@pytest.fixture
def make_user(client: FlaskClient) -> Any:
    """Register a user and return an Api bound to a fresh token of theirs."""

    def make(username: str, password: str = "password123") -> Api:
        r = client.post("/api/users", json={"username": username, "password": password})
        assert r.status_code == 201, r.get_json()
        r = client.post("/api/session", json={"username": username, "password": password})
        assert r.status_code == 200, r.get_json()
        r = client.post("/api/tokens", json={"name": "test"})
        assert r.status_code == 201, r.get_json()
        token = r.get_json()["token"]
        client.delete("/api/session")
        return Api(client, username, token)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port."""

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def redis_url(tmp_path: Any) -> Iterator[str]:
    server = RedisServer(str(tmp_path))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[RedisServer]:
    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    server.stop()


os.environ.setdefault("CHAT_PASSWORD_HASH", FAST_HASH)
