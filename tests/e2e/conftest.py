"""Fixtures for the end-to-end tests: a real redis-server and real gunicorn services."""

from __future__ import annotations

import gc
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .sse_client import SSEClient

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port that was free a moment ago (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 12000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, then SIGKILL to the process group after timeout; always reaps."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(10)
    else:
        # Workers outlive a dead master for a moment; nothing of ours may linger.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


# --------------------------------------------------------------------------- failures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Attach the server logs of a failed test to its report."""
    rep = yield
    if rep.failed:
        for name, path in getattr(item, "_e2e_logs", []):
            rep.sections.append((f"{name} log ({path})", _tail(path)))
    return rep


def _register_log(request: pytest.FixtureRequest, name: str, path: Path) -> None:
    node = request.node
    logs = getattr(node, "_e2e_logs", None)
    if logs is None:
        logs = []
        node._e2e_logs = logs  # type: ignore[attr-defined]
    logs.append((name, path))


# --------------------------------------------------------------------------- redis


class RedisServer:
    """A real redis-server on 127.0.0.1 with persistence off."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(
                "redis-server is not on PATH: the e2e tests need a real Redis "
                "(apt-get install redis-server)"
            )
        self.exe = exe
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _close_log
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_ping(deadline):
                return
            # A restart can race a socket still held by the old process: try again.
            if self.proc.poll() is None:
                _stop_process(self.proc, 5)
            if time.monotonic() >= deadline:
                pytest.fail(f"redis-server did not answer PING:\n{_tail(self.log_path)}")
            time.sleep(0.2)

    def _wait_ping(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.05)
        return False

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill9(self) -> None:
        """SIGKILL the server, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def restart(self) -> None:
        """Start again on the same port (after kill9 or stop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, 10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    _register_log(request, "redis-server", server.log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- service


class Api:
    """A requests.Session bound to one service and, optionally, one token."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 15.0) -> None:
        self.base = base
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        resp = self.session.request(method, self.base + path, **kw)
        # Read the body now so the connection goes back to the pool (no leaked sockets).
        _ = resp.content
        return resp

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kw)

    def post_message(self, room: str, text: str, **extra: Any) -> dict[str, Any]:
        resp = self.post(f"/api/rooms/{room}/messages", {"text": text, **extra})
        assert resp.status_code == 201, (resp.status_code, resp.text[:500])
        return resp.json()

    def create_room(self, name: str, **extra: Any) -> dict[str, Any]:
        resp = self.post("/api/rooms", {"name": name, **extra})
        assert resp.status_code == 201, (resp.status_code, resp.text[:500])
        return resp.json()

    def history(self, room: str) -> list[dict[str, Any]]:
        """Every message of a room, oldest first, paging with after= (limit <= 200)."""
        out: list[dict[str, Any]] = []
        after = 0
        for _ in range(10000):
            resp = self.get(f"/api/rooms/{room}/messages", params={"after": after, "limit": 200})
            assert resp.status_code == 200, (resp.status_code, resp.text[:500])
            page = resp.json()["messages"]
            if not page:
                return out
            out.extend(page)
            after = page[-1]["seq"]
        raise AssertionError("history paging did not end")

    def close(self) -> None:
        self.session.close()


class Service:
    """One gunicorn master serving the app from the repository root."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        db_path: Path,
        redis_url: str | None,
        extra_env: dict[str, str],
        request: pytest.FixtureRequest,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.db_path = db_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gunicorn-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._closers: list[Callable[[], None]] = []
        self._request = request
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("CHAT_") or key in {
                "REDIS_URL", "DATABASE_URL", "FLASK_APP", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS"
            }:
                del env[key]
        env.update(
            {
                "DATABASE_URL": f"sqlite:///{db_path}",
                "SECRET_KEY": "e2e-secret-key-not-for-production",
                "CHAT_HEARTBEAT_SECONDS": "1",
                "CHAT_PASSWORD_HASH": "pbkdf2:sha256:1000",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if redis_url:
            env["REDIS_URL"] = redis_url
        env.update(extra_env)
        self.env = env
        _register_log(request, f"gunicorn {name}", self.log_path)

    # -- CLI ---------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run `flask --app app ARGS` in the repo root with this service's env."""
        cmd = [sys.executable, "-m", "flask", "--app", "app", *args]
        res = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {res.returncode}\nstdout:\n"
                f"{res.stdout.decode(errors='replace')}\nstderr:\n"
                f"{res.stderr.decode(errors='replace')}"
            )
        return res.stdout.decode()

    def init_db(self) -> None:
        self.cli("init-db")

    def create_user(self, name: str, password: str = "secret-pass-123", admin: bool = False) -> str:
        """Create a user and an API token for it through the CLI; returns the token."""
        args = ["create-user", name, "--password", password]
        if admin:
            args.append("--admin")
        self.cli(*args)
        return self.create_token(name)

    def create_token(self, name: str) -> str:
        out = self.cli("create-token", name).strip()
        assert out and "\n" not in out and " " not in out, f"create-token printed {out!r}"
        return out

    def register(self, name: str, password: str = "secret-pass-123") -> str:
        """A new user through the public API (register, log in, make a token, log out);
        returns the API token. Much faster than two `flask` CLI runs per user."""
        anon = self.api()
        r = anon.post("/api/users", {"username": name, "password": password})
        assert r.status_code == 201, (r.status_code, r.text[:500])
        r = anon.post("/api/session", {"username": name, "password": password})
        assert r.status_code == 200, (r.status_code, r.text[:500])
        r = anon.post("/api/tokens", {"name": "e2e"})
        assert r.status_code == 201, (r.status_code, r.text[:500])
        token = r.json()["token"]
        assert anon.request("DELETE", "/api/session").status_code == 200
        anon.close()
        return str(token)

    # -- process -----------------------------------------------------------------

    def command(self, *extra_args: str) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "-c", "gunicorn.conf.py",
            "--bind", f"127.0.0.1:{self.port}",
            *extra_args,
            "wsgi:app",
        ]

    def start(self, *extra_args: str) -> None:
        """Start gunicorn; again after stop() too, on the same port and database."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(*extra_args),
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"gunicorn {self.name} exited {self.proc.returncode} at startup:\n"
                    f"{_tail(self.log_path)}"
                )
            if self._answers():
                return
            time.sleep(0.1)
        pytest.fail(
            f"gunicorn {self.name} did not answer in {STARTUP_TIMEOUT}s:\n{_tail(self.log_path)}"
        )

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/api/me", headers={"Connection": "close"})
            with conn.getresponse() as resp:
                resp.read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Close our clients, then SIGTERM the master (SIGKILL after timeout)."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        # Responses caught in reference cycles keep idle keep-alive sockets open, and
        # gunicorn waits for those before it exits: release them first.
        gc.collect()
        code = None
        if self.proc is not None:
            code = _stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_text(self) -> str:
        return _tail(self.log_path, 100000)

    # -- clients -----------------------------------------------------------------

    def api(self, token: str | None = None, timeout: float = 15.0) -> Api:
        client = Api(self.base, token, timeout)
        self._closers.append(client.close)
        return client

    def stream(
        self,
        path: str,
        token: str | None,
        last_event_id: str | None = None,
        connect: bool = True,
        **kw: Any,
    ) -> SSEClient:
        """An SSE client on this service (closed at teardown at the latest)."""
        client = SSEClient(self.base + path, token=token, last_event_id=last_event_id, **kw)
        self._closers.append(client.close)
        if connect:
            client.connect()
        return client

    def defer(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)


ServiceFactory = Callable[..., Service]


@pytest.fixture
def service_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServiceFactory]:
    """make(name, db_path=None, redis=None, env=None, args=(), init_db=True, start=True).

    Services made later are stopped first; every client opened through a service is
    closed before its gunicorn is stopped.
    """
    services: list[Service] = []

    def make(
        name: str = "svc",
        db_path: Path | None = None,
        redis: Any = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] | list[str] = (),
        init_db: bool = True,
        start: bool = True,
    ) -> Service:
        workdir = tmp_path / f"svc-{name}"
        workdir.mkdir()
        if db_path is None:
            db_path = tmp_path / "chat.db"
        redis_url = redis.url if redis is not None else None
        svc = Service(name, workdir, db_path, redis_url, env or {}, request)
        services.append(svc)
        if init_db:
            svc.init_db()
        if start:
            svc.start(*args)
        return svc

    try:
        yield make
    finally:
        for svc in services:  # close every client before any server goes away
            for closer in reversed(svc._closers):
                closer()
            svc._closers.clear()
        for svc in reversed(services):
            svc.stop()
