"""The operator CLI against a running gunicorn: `flask --app app tail ROOM` follows what
the service stores, line by line as it arrives, and resumes with --last-event-id;
`flask --app app send` reaches the service's live streams (from the store without
Redis, through Redis with it).

The CLI runs exactly as Service.cli runs it (same interpreter, cwd and environment as
the service); tail is started with Popen because it keeps running.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from .conftest import REPO_ROOT, Api, RedisServer, Service, ServiceFactory
from .sse_client import SSEClient

pytestmark = pytest.mark.e2e

ROOM = "ops"
WAIT = 15.0  # the bound on every wait for a line or a stream event
POLL = "0.1"  # tail's --interval: a short one keeps the test quick


# --------------------------------------------------------------------------- helpers


class Tail:
    """`flask --app app tail ARGS` running in the background; its stdout is read line by
    line by a thread, so every wait has a deadline."""

    def __init__(self, svc: Service, log_dir: Path, *args: str) -> None:
        self.args = args
        self.stderr_path = log_dir / f"tail-{time.monotonic_ns()}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "tail", *args],
            cwd=REPO_ROOT,
            env=svc.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        name="tail-stdout", daemon=True)
        self._reader.start()

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            self.lines.put(line)
        self.lines.put(None)  # end of output

    def _why(self) -> str:
        return (f"tail {' '.join(self.args)} (exit {self.proc.poll()}), stderr:\n"
                f"{self.stderr_path.read_text(errors='replace')[-3000:]}")

    def next_line(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next printed line, as JSON; fails on a timeout or the end of the output."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s from {self._why()}") from None
        if line is None:
            self.lines.put(None)
            raise AssertionError(f"output ended: {self._why()}")
        data: dict[str, Any] = json.loads(line)
        return data

    def poll_line(self, timeout: float) -> dict[str, Any] | None:
        """The next line if one comes within timeout, else None."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self.lines.put(None)
            raise AssertionError(f"output ended: {self._why()}")
        data: dict[str, Any] = json.loads(line)
        return data

    def stop(self) -> tuple[int | None, list[bytes]]:
        """Ctrl-C, as an operator stops it; returns the exit code and any lines it printed
        that were not read yet."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        rest: list[bytes] = []
        while True:
            try:
                item = self.lines.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        return self.proc.returncode, rest


@pytest.fixture
def start_tail(tmp_path: Path) -> Any:
    """start_tail(svc, *args) -> Tail; every tail still running is stopped at teardown."""
    tails: list[Tail] = []

    def start(svc: Service, *args: str) -> Tail:
        tail = Tail(svc, tmp_path, *args)
        tails.append(tail)
        return tail

    yield start
    for tail in tails:
        tail.stop()


def sync(tail: Tail, api: Api) -> list[dict[str, Any]]:
    """Wait until a tail started without --last-event-id is following: post probes one by
    one until it prints one. The first line must be a probe (nothing stored before it
    started) and every probe after that one must follow, in order. Returns the probes
    it printed."""
    posted: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    first = None
    while first is None:
        assert time.monotonic() < deadline, f"tail printed nothing: {tail._why()}"
        posted.append(api.post_message(ROOM, f"probe {len(posted)}"))
        first = tail.poll_line(0.5)
    seqs = [m["seq"] for m in posted]
    assert first["seq"] in seqs, (first, seqs)
    printed = posted[seqs.index(first["seq"]):]
    assert first == printed[0], (first, printed[0])
    for message in printed[1:]:
        assert tail.next_line() == message
    return printed


def refused(svc: Service, *args: str) -> str:
    """`flask --app app ARGS` as Service.cli runs it, for a command that must fail
    cleanly: exit 1, nothing on stdout, one `Error: ...` and no traceback on stderr.
    Returns stderr."""
    res = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=REPO_ROOT, env=svc.env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert (res.returncode, res.stdout) == (1, ""), (args, res.returncode, res.stdout,
                                                     res.stderr)
    assert res.stderr.startswith("Error: ") and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def expect_ready(client: SSEClient) -> None:
    ev = client.next_event(WAIT)
    assert ev.event == "ready", ev


def setup_room(svc: Service) -> tuple[str, Api]:
    token = svc.create_user("alice")
    api = svc.api(token)
    api.create_room(ROOM)
    return token, api


def cli_send(svc: Service, text: str) -> dict[str, Any]:
    """`send ROOM TEXT --as alice`: prints the stored message as one JSON line."""
    out = svc.cli("send", ROOM, text, "--as", "alice")
    lines = out.splitlines()
    assert len(lines) == 1, out
    message: dict[str, Any] = json.loads(lines[0])
    assert (message["text"], message["sender"], message["room"], message["type"]) == (
        text, "alice", ROOM, "message"), message
    return message


# --------------------------------------------------------------------------- tests


def test_tail_follows_live_messages_and_resumes_after_last_seq(
    service_factory: ServiceFactory, start_tail: Any
) -> None:
    # The in-process broker: the CLI's own publish reaches nobody, so the streams pick
    # a `send` up from the store (CHAT_RESYNC_SECONDS, short here).
    svc = service_factory("embedded", env={"CHAT_RESYNC_SECONDS": "1"})
    token, alice = setup_room(svc)
    alice.post_message(ROOM, "before tail started")  # seq 1: never printed below

    tail = start_tail(svc, ROOM, "--interval", POLL)
    printed = sync(tail, alice)

    # One at a time: each is printed as it is stored, before the next is posted.
    for i in range(3):
        message = alice.post_message(ROOM, f"live {i}")
        assert tail.next_line() == message
        printed.append(message)
    # A burst: in order, each once.
    burst = [alice.post_message(ROOM, f"burst {i}") for i in range(4)]
    assert [tail.next_line() for _ in burst] == burst
    printed.extend(burst)

    # `send` from another shell: the tail prints it, and so does a live room stream.
    stream = svc.stream(f"/api/rooms/{ROOM}/stream", token)
    expect_ready(stream)
    # A blank message is refused as the API refuses it, and nothing is stored: the
    # next message takes the next seq and is the next line.
    assert "blank" in refused(svc, "send", ROOM, "   ", "--as", "alice")
    sent = cli_send(svc, "sent from the shell")
    assert sent["seq"] == printed[-1]["seq"] + 1, (sent, printed[-1])
    assert tail.next_line() == sent
    printed.append(sent)
    ev = stream.next_event(WAIT)
    assert ev.event == "message" and ev.json() == sent, ev

    seqs = [m["seq"] for m in printed]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    last_seq = printed[-1]["seq"]
    code, rest = tail.stop()
    assert (code, rest) == (0, []), (code, rest, tail._why())

    # While nobody tails: three messages are missed.
    missed = [alice.post_message(ROOM, f"missed {i}") for i in range(3)]
    assert missed[0]["seq"] == last_seq + 1

    refused(svc, "tail", "Not A Room", "--no-follow")  # a bad name: a clean error
    # --no-follow prints exactly what was missed and exits.
    out = svc.cli("tail", ROOM, "--last-event-id", str(last_seq), "--no-follow")
    assert [json.loads(line) for line in out.splitlines()] == missed, out

    # Following again from the last seq printed: exactly the missed ones, then live.
    again = start_tail(svc, ROOM, "--last-event-id", str(last_seq), "--interval", POLL)
    assert [again.next_line() for _ in missed] == missed
    after = alice.post_message(ROOM, "after the restart")
    assert again.next_line() == after  # nothing older and no repeat in between
    code, rest = again.stop()
    assert (code, rest) == (0, []), (code, rest, again._why())


def test_send_reaches_live_streams_through_redis(
    redis_server: RedisServer, service_factory: ServiceFactory, start_tail: Any
) -> None:
    # No store backstop: what `send` stores must reach the streams through Redis.
    svc = service_factory("redis", redis=redis_server, env={"CHAT_RESYNC_SECONDS": "0"})
    token, alice = setup_room(svc)
    room_stream = svc.stream(f"/api/rooms/{ROOM}/stream", token)
    user_stream = svc.stream("/api/stream", token)
    expect_ready(room_stream)
    expect_ready(user_stream)

    tail = start_tail(svc, ROOM, "--interval", POLL)
    probes = sync(tail, alice)
    for client in (room_stream, user_stream):
        seen = [client.next_event(WAIT) for _ in range(probes[-1]["seq"])]
        assert [ev.json()["seq"] for ev in seen] == list(range(1, probes[-1]["seq"] + 1))

    for i in range(2):
        sent = cli_send(svc, f"from the shell {i}")
        assert sent["seq"] == probes[-1]["seq"] + 1 + i, sent
        for client in (room_stream, user_stream):
            ev = client.next_event(WAIT)
            assert ev.event == "message" and ev.json() == sent, ev
        assert room_stream.last_event_id == str(sent["seq"])
        assert tail.next_line() == sent
    code, rest = tail.stop()
    assert (code, rest) == (0, []), (code, rest, tail._why())
