"""SSE benchmark: idle-connection memory and delivery latency of the chat service.

Starts the service (one gunicorn gevent worker, embedded in-process broker, SQLite in a
temporary directory) and drives it from separate gevent client processes over raw
sockets on 127.0.0.1. See bench/README.md for what the figures mean.

    python bench/sse_bench.py [--connections 1000,10000]
                              [--subscribers 1000 --messages 50 --rate 10]
                              [--json out.json]

The same file is also the load client: ``python sse_bench.py _client ...`` (started by
the benchmark itself, never by hand).
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PASSWORD = "bench-password-" + "".join(random.choices(string.ascii_lowercase, k=8))


# --------------------------------------------------------------------------- helpers


def raise_nofile() -> tuple[int, int]:
    """Raise the soft fd limit to the hard one; return the limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def fmt(value: object, nd: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{nd}f}"
    return str(value)


class Dechunker:
    """Incremental decoder of an HTTP/1.1 chunked body."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.buf = bytearray()
        self.state = "size"
        self.remaining = 0
        self.finished = False  # saw the terminating zero-size chunk

    def feed(self, data: bytes) -> bytes:
        if not self.chunked:
            return data
        self.buf += data
        out = bytearray()
        buf = self.buf
        while True:
            if self.state == "size":
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(bytes(buf[:i]).split(b";", 1)[0].strip() or b"0", 16)
                del buf[: i + 2]
                if size == 0:
                    self.finished = True
                    self.state = "trailer"
                    break
                self.remaining = size
                self.state = "data"
            elif self.state == "data":
                if not buf:
                    break
                n = min(self.remaining, len(buf))
                out += buf[:n]
                del buf[:n]
                self.remaining -= n
                if self.remaining == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(buf) < 2:
                    break
                del buf[:2]
                self.state = "size"
            else:  # trailer: ignore whatever follows
                buf.clear()
                break
        return bytes(out)


class SSEParser:
    """Incremental text/event-stream parser; returns (event, id, data) tuples."""

    def __init__(self) -> None:
        self.partial = b""
        self.event = None
        self.id = None
        self.data: list[bytes] = []
        self.comments = 0

    def feed(self, data: bytes) -> list[tuple[str, str | None, str]]:
        if not data:
            return []
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self.data or self.event is not None:
                    events.append(
                        (
                            self.event or "message",
                            self.id,
                            b"\n".join(self.data).decode("utf-8", "replace"),
                        )
                    )
                self.event, self.id, self.data = None, None, []
                continue
            if line[:1] == b":":
                self.comments += 1
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self.data.append(value)
            elif name == b"event":
                self.event = value.decode("utf-8", "replace")
            elif name == b"id":
                self.id = value.decode("utf-8", "replace")
        return events


# ---------------------------------------------------------------------- load client
# Runs in its own process (``_client``) with gevent; talks to the parent with one
# command per line on stdin and one report per line on stdout.


def client_main(argv: list[str]) -> int:
    import gevent
    import gevent.event
    import gevent.os
    import gevent.pool
    from gevent import socket as gsocket

    ap = argparse.ArgumentParser(prog="sse_bench.py _client")
    ap.add_argument("mode", choices=["idle", "latency"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--connect-timeout", type=float, default=60.0)
    ap.add_argument("--ramp-timeout", type=float, default=600.0)
    ap.add_argument("--messages", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--result", default="")
    ap.add_argument("--parse", choices=["deferred", "live"], default="deferred")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    a = ap.parse_args(argv)

    raise_nofile()
    # Hard stop whatever happens: the parent may have died without telling us.
    gevent.spawn_later(a.max_seconds, os._exit, 3)

    def say(*parts: object) -> None:
        sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
        sys.stdout.flush()

    request = (
        f"GET /api/rooms/{a.room}/stream?access_token={a.token} HTTP/1.1\r\n"
        f"Host: {HOST}:{a.port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()

    class Conn:
        __slots__ = ("sock", "dech", "parser", "ready_s", "idx", "raw")

    errors: Counter[str] = Counter()

    def open_stream(idx: int, on_events=None) -> Conn | None:
        """Connect, send the GET, read until `ready`; return the connection."""
        t0 = time.monotonic()
        sock = None
        try:
            sock = gsocket.create_connection((HOST, a.port), timeout=a.connect_timeout)
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(16384)
                if not chunk:
                    raise ConnectionError("closed before headers")
                head += chunk
                if len(head) > 65536:
                    raise ConnectionError("headers too long")
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)
            headers = {}
            for h in lines[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            if len(status) < 2 or status[1] != "200":
                raise ConnectionError(f"HTTP {lines[0]!r} body={rest[:120]!r}")
            if not headers.get("content-type", "").startswith("text/event-stream"):
                raise ConnectionError(f"content-type {headers.get('content-type')!r}")
            c = Conn()
            c.sock, c.idx = sock, idx
            c.dech = Dechunker("chunked" in headers.get("transfer-encoding", "").lower())
            c.parser = SSEParser()
            data = rest
            while True:
                now = time.time()
                events = c.parser.feed(c.dech.feed(data)) if data else []
                for i, (ev, _eid, _payload) in enumerate(events):
                    if ev == "ready":
                        c.ready_s = time.monotonic() - t0
                        sock.settimeout(None)
                        if on_events is not None:
                            on_events(c, events[i + 1 :], now)
                        return c
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before ready")
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            errors[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
            if sock is not None:
                sock.close()
            return None

    def ramp(n: int, start_idx: int, on_events=None) -> tuple[list[Conn], float]:
        conns: list[Conn] = []
        pool = gevent.pool.Pool(a.concurrency)
        t0 = time.monotonic()

        def one(i: int) -> None:
            c = open_stream(i, on_events)
            if c is not None:
                conns.append(c)

        for i in range(start_idx, start_idx + n):
            pool.spawn(one, i)
        pool.join(timeout=a.ramp_timeout)
        pool.kill(block=True, timeout=10)
        return conns, time.monotonic() - t0

    # stdin command reader (non-blocking pipe, so the hub keeps running)
    gevent.os.make_nonblocking(0)
    cmd_q: list[str] = []
    cmd_event = gevent.event.Event()

    def stdin_reader() -> None:
        buf = b""
        while True:
            try:
                data = gevent.os.nb_read(0, 4096)
            except OSError:
                data = b""
            if not data:
                cmd_q.append("EOF")
                cmd_event.set()
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd_q.append(line.decode().strip())
                cmd_event.set()

    gevent.spawn(stdin_reader)

    def next_cmd(timeout: float | None = None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not cmd_q:
            cmd_event.clear()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not cmd_event.wait(left) and deadline is not None:
                return ""
        return cmd_q.pop(0)

    def err_report() -> str:
        return json.dumps(dict(errors.most_common(8)))

    def ready_stats(conns: list[Conn]) -> str:
        rs = sorted(c.ready_s * 1000 for c in conns)
        return f"{fmt(percentile(rs, 50))} {fmt(percentile(rs, 99))} {fmt(rs[-1] if rs else None)}"

    if a.mode == "idle":
        warm, _ = ramp(a.warmup, 0)
        say("WARM", len(warm), a.warmup - len(warm), err_report())
        while True:
            cmd = next_cmd()
            if cmd == "GO":
                break
            if cmd in ("EOF", "CLOSE"):
                return 0
        errors.clear()
        conns, ramp_s = ramp(a.count, a.warmup)
        say(
            "READY",
            len(conns),
            a.count - len(conns),
            f"{ramp_s:.3f}",
            ready_stats(conns),
            err_report(),
        )
        allc = warm + conns
        while True:
            cmd = next_cmd()
            if cmd == "CHECK":
                # Peek without consuming: EOF means the server closed the stream.
                open_n = closed = 0
                for c in allc:
                    try:
                        d = c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                        if d:
                            open_n += 1
                        else:
                            closed += 1
                    except BlockingIOError:
                        open_n += 1
                    except OSError:
                        closed += 1
                say("CHECKED", open_n, closed)
            elif cmd == "DRAIN":
                # Read every stream to its end (the server is being stopped) and tell
                # how each one ended: "complete" = the terminating zero-size chunk
                # arrived (then we hang up, as a reconnecting client would), "eof" = the
                # server closed without it (a cut body).
                outcome: Counter[str] = Counter()
                ended_at: list[float] = []

                def drain(c: Conn, outcome=outcome, ended_at=ended_at) -> None:
                    try:
                        c.sock.settimeout(90)
                        while not c.dech.finished:
                            d = c.sock.recv(65536)
                            if not d:
                                break
                            c.dech.feed(d)
                        ended_at.append(time.time())
                        if c.dech.finished or not c.dech.chunked:
                            outcome["complete"] += 1
                        else:
                            outcome["eof_mid_body"] += 1
                        c.sock.close()
                    except TimeoutError:
                        outcome["timeout"] += 1
                    except OSError as exc:
                        outcome[f"error:{type(exc).__name__}"] += 1

                group = gevent.pool.Group()
                for c in allc:
                    group.spawn(drain, c)
                say("DRAINING")
                group.join(timeout=120)
                group.kill(timeout=5)
                ended_at.sort()
                times = {"first": ended_at[0], "p50": percentile(ended_at, 50),
                         "last": ended_at[-1]} if ended_at else {}  # fmt: skip
                say("DRAINED", json.dumps({"outcome": dict(outcome), "ended_at": times}))
            elif cmd in ("CLOSE", "EOF"):
                for c in allc:
                    try:
                        c.sock.close()
                    except OSError:
                        pass
                say("CLOSED")
                return 0

    # latency mode ------------------------------------------------------------------
    expected = a.messages
    got: list[dict[int, float]] = [dict() for _ in range(a.count)]  # sub -> i -> lat ms
    stats: Counter[str] = Counter()
    last_seq = [0] * a.count
    total_unique = [0]
    done_said = [False]
    n_ready = [0]
    tag = a.tag

    def handle(c: Conn, events, now: float) -> None:
        mine = got[c.idx]
        for ev, eid, payload in events:
            stats[f"event:{ev}"] += 1
            if ev != "message":
                continue
            try:
                msg = json.loads(payload)
                body = json.loads(msg["text"])
            except (ValueError, KeyError, TypeError):
                stats["unparsed"] += 1
                continue
            if not isinstance(body, dict) or body.get("bench") != tag:
                stats["foreign"] += 1
                continue
            seq = msg.get("seq")
            if eid is not None and str(seq) != eid:
                stats["id_seq_mismatch"] += 1
            if isinstance(seq, int):
                if seq <= last_seq[c.idx]:
                    stats["out_of_order_or_dup_seq"] += 1
                last_seq[c.idx] = max(last_seq[c.idx], seq)
            i = body["i"]
            if i in mine:
                stats["duplicates"] += 1
                continue
            mine[i] = (now - body["t"]) * 1000.0
            total_unique[0] += 1
        if not done_said[0] and n_ready[0] and total_unique[0] >= n_ready[0] * expected:
            done_said[0] = True
            say("DONE")

    # "deferred": while messages flow, a reader only timestamps and keeps what recv()
    # returned, and counts frames roughly (for DONE); the frames are parsed after STOP.
    # That keeps the client's per-frame work, and so its share of the latency, minimal.
    marker = b"event: message"
    seen = [0]

    def reader(c: Conn) -> None:
        try:
            while True:
                d = c.sock.recv(65536)
                now = time.time()
                if not d:
                    stats["closed_by_server"] += 1
                    return
                if a.parse == "live":
                    handle(c, c.parser.feed(c.dech.feed(d)), now)
                    continue
                c.raw.append((now, d))
                seen[0] += d.count(marker)
                if not done_said[0] and n_ready[0] and seen[0] >= n_ready[0] * expected:
                    done_said[0] = True
                    say("DONE")
        except OSError as exc:
            stats[f"read_error:{type(exc).__name__}"] += 1

    readers = gevent.pool.Group()

    def on_ready(c: Conn, events, now: float) -> None:
        c.raw = []
        handle(c, events, now)
        seen[0] += sum(1 for e in events if e[0] == "message")
        readers.spawn(reader, c)

    conns, ramp_s = ramp(a.count, 0, on_ready)
    n_ready[0] = len(conns)
    say(
        "READY", len(conns), a.count - len(conns), f"{ramp_s:.3f}", ready_stats(conns), err_report()
    )
    while True:
        cmd = next_cmd()
        if cmd in ("STOP", "EOF"):
            break
    readers.kill(timeout=10)
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass
    done_said[0] = True
    for c in conns:
        for now, d in c.raw:
            handle(c, c.parser.feed(c.dech.feed(d)), now)
        c.raw = []
    ready_idx = sorted(c.idx for c in conns)
    result = {
        "ready_idx": ready_idx,
        "latencies": {str(s): got[s] for s in ready_idx},
        "stats": dict(stats),
        "errors": dict(errors),
        "comments": sum(c.parser.comments for c in conns),
    }
    if a.result:
        with open(a.result, "w") as f:
            json.dump(result, f)
    say("RESULT", a.result)
    return 0


# ----------------------------------------------------------------- parent: processes


def _child_setup() -> None:
    """In a started child: die with the benchmark (Linux), signal group of its own."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


STARTED: list[subprocess.Popen] = []


def stop_popen(p: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop one process we started (and any children it left), by pid."""
    if p.poll() is not None:
        return
    try:
        import psutil

        kids = psutil.Process(p.pid).children(recursive=True)
    except Exception:  # noqa: BLE001
        kids = []
    try:
        p.terminate()
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    for k in kids:
        try:
            if k.is_running():
                k.kill()
        except Exception:  # noqa: BLE001
            pass


def cleanup_all() -> None:
    while STARTED:
        stop_popen(STARTED.pop())


class ClientProc:
    """A load-client process driven through stdin/stdout lines."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_client", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=str(ROOT),
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        STARTED.append(self.p)
        self.lines: list[str] = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.p.stdout:
            with self.cv:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines.append("__EOF__")
            self.cv.notify_all()

    def expect(self, word: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i, line in enumerate(self.lines):
                    if line == "__EOF__":
                        raise RuntimeError(
                            f"load client exited (rc={self.p.poll()}) while waiting for {word}"
                        )
                    if line.split(" ", 1)[0] == word:
                        del self.lines[: i + 1]
                        return line.split(" ")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"load client: no {word} within {timeout:.0f}s")
                self.cv.wait(min(left, 1.0))

    def send(self, cmd: str) -> None:
        try:
            self.p.stdin.write((cmd + "\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        """Ask the client to hang up and exit; on an error or Ctrl-C just stop it."""
        if sys.exc_info()[0] is None:
            self.send("CLOSE")
            try:
                self.p.wait(5)  # closing even 10,000 sockets takes well under a second
            except subprocess.TimeoutExpired:
                pass
        stop_popen(self.p)
        if self.p in STARTED:
            STARTED.remove(self.p)
        self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Service:
    """One gunicorn master + gevent worker in embedded mode."""

    def __init__(
        self, tmp: Path, env: dict[str, str], label: str, conf: str = "gunicorn.conf.py"
    ) -> None:
        self.tmp, self.env, self.label, self.conf = tmp, env, label, conf
        self.port = free_port()
        self.log_path = tmp / f"gunicorn-{label}.log"
        self.p: subprocess.Popen | None = None
        self.worker = None
        self.worker_pid = None

    def start(self, timeout: float = 60.0) -> None:
        import psutil
        import requests

        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                self.conf,
                "--bind",
                f"{HOST}:{self.port}",
                "wsgi:app",
            ],
            cwd=str(ROOT),
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        STARTED.append(self.p)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited rc={self.p.returncode}; log: {self.log_path}\n"
                    + self.log_tail()
                )
            try:
                requests.get(f"http://{HOST}:{self.port}/api/me", timeout=2)
                kids = psutil.Process(self.p.pid).children()
                if len(kids) == 1:
                    self.worker = kids[0]
                    self.worker_pid = kids[0].pid
                    return
            except (requests.RequestException, psutil.Error):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"service not up within {timeout}s; log: {self.log_path}\n{self.log_tail()}"
        )

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def check_worker(self) -> None:
        """Fail loudly if the worker we measure is gone or was replaced."""
        import psutil

        if self.p.poll() is not None:
            raise RuntimeError(f"gunicorn master exited rc={self.p.returncode}\n{self.log_tail()}")
        kids = [k.pid for k in psutil.Process(self.p.pid).children()]
        if kids != [self.worker_pid]:
            raise RuntimeError(
                f"worker {self.worker_pid} replaced/gone (children now {kids})\n{self.log_tail()}"
            )

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def log_findings(self) -> dict[str, object]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        lines = text.splitlines()
        bad = [
            line
            for line in lines
            if any(
                w in line
                for w in (
                    "Traceback",
                    "[ERROR]",
                    "[CRITICAL]",
                    "WORKER TIMEOUT",
                    "Error",
                    "Exception",
                )
            )
        ]
        gc2 = [float(x.split("ms=")[1].split()[0]) for x in lines
               if x.startswith("BENCH-GC ") and " gen=2 " in x]  # fmt: skip
        gc_info = {}
        if any(x.startswith("BENCH-GC ") for x in lines) or self.conf != "gunicorn.conf.py":
            gc_info = {
                "gc_gen2_pauses": len(gc2),
                "gc_gen2_max_ms": max(gc2, default=None),
                "gc_gen2_total_ms": round(sum(gc2), 1),
                "gc_gen2_ms": gc2,
            }
        return {
            **gc_info,
            "log": str(self.log_path),
            "booting_worker_lines": sum("Booting worker" in x for x in lines),
            "problem_lines": len(bad),
            "problem_sample": bad[:10],
        }

    def stop(self, grace: float = 60.0) -> dict[str, object]:
        """SIGTERM the master, time the shutdown; kill leftovers after `grace` s."""
        info: dict[str, object] = {}
        if self.p is None:
            return info
        t0 = time.monotonic()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
                info["shutdown_s"] = round(time.monotonic() - t0, 2)
            except subprocess.TimeoutExpired:
                info["shutdown_s"] = None
                info["killed_after_s"] = grace
        info["master_rc"] = self.p.returncode
        stop_popen(self.p, grace=5)
        if self.worker is not None:
            try:
                if self.worker.is_running():
                    self.worker.kill()
                    info["worker_killed"] = True
            except Exception:  # noqa: BLE001
                pass
        if self.p in STARTED:
            STARTED.remove(self.p)
        self.log.close()
        info.update(self.log_findings())
        return info


# --------------------------------------------------------------------- measurements


def proc_mem(pid: int) -> dict[str, int]:
    """Memory figures of one process in bytes (RSS, USS/PSS, anon/file split)."""
    import psutil

    out: dict[str, int] = {}
    p = psutil.Process(pid)
    try:
        full = p.memory_full_info()
        out["rss"] = full.rss
        for k in ("uss", "pss"):
            if hasattr(full, k):
                out[k] = getattr(full, k)
    except psutil.AccessDenied:
        out["rss"] = p.memory_info().rss
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmData"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def tcp_kernel_mem() -> int | None:
    """System-wide kernel TCP buffer memory in bytes (/proc/net/sockstat, both ends)."""
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                f = line.split()
                return int(f[f.index("mem") + 1]) * resource.getpagesize()
    except (OSError, ValueError):
        return None
    return None


def cpu_s(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def busy_s() -> float:
    """CPU seconds all cores spent busy so far (to spot other load on the machine)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict[str, object]:
    import importlib.metadata as md

    import psutil

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gevent": ver("gevent"),
        "greenlet": ver("greenlet"),
        "gunicorn": ver("gunicorn"),
        "flask": ver("flask"),
        "sqlalchemy": ver("sqlalchemy"),
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "ephemeral_ports": read("/proc/sys/net/ipv4/ip_local_port_range"),
        "somaxconn": read("/proc/sys/net/core/somaxconn"),
        "service_commit": commit,
        "service_tree_dirty": dirty,
        "loadavg": loadavg(),
    }


# --------------------------------------------------------------------- benchmark

GC_TRACE_CONF = """\
import gc as _gc
import sys as _sys
import time as _time

exec(compile(open({conf!r}).read(), {conf!r}, "exec"))
_project_post_worker_init = globals().get("post_worker_init")


def post_worker_init(worker):
    if _project_post_worker_init is not None:
        _project_post_worker_init(worker)
    started = [0.0]

    def _trace(phase, info):
        if phase == "start":
            started[0] = _time.perf_counter()
            return
        ms = (_time.perf_counter() - started[0]) * 1000
        if info["generation"] == 2 or ms > 3:
            _sys.stderr.write(
                "BENCH-GC %.3f gen=%d ms=%.1f collected=%d\\n"
                % (_time.time(), info["generation"], ms, info["collected"])
            )
            _sys.stderr.flush()

    _gc.callbacks.append(_trace)
"""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="sse-bench-"))
        self.env = dict(os.environ)
        self.env.pop("REDIS_URL", None)
        self.env.update(
            DATABASE_URL=f"sqlite:///{self.tmp}/chat.db",
            SECRET_KEY="bench",
            CHAT_HEARTBEAT_SECONDS="15",
            PYTHONUNBUFFERED="1",
        )
        self.token = ""
        self.observations: list[str] = []

    def gunicorn_conf(self) -> str:
        """The project's gunicorn.conf.py, or (--gc-trace) a wrapper in the temp dir that
        loads it and logs every gen-2 collection (and any slower than 3 ms) of the worker."""
        if not self.args.gc_trace:
            return "gunicorn.conf.py"
        path = self.tmp / "gunicorn_gctrace.conf.py"
        path.write_text(GC_TRACE_CONF.format(conf=str(ROOT / "gunicorn.conf.py")))
        return str(path)

    def cli(self, *argv: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *argv],
            cwd=str(ROOT),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if r.returncode != 0:
            raise RuntimeError(
                f"flask {' '.join(argv[:1])} failed rc={r.returncode}\n{r.stdout}\n{r.stderr}"
            )
        return r.stdout

    def setup(self) -> None:
        self.cli("init-db")
        self.cli("create-user", "bench", "--password", PASSWORD)
        out = self.cli("create-token", "bench").strip().splitlines()
        if not out:
            raise RuntimeError("create-token printed nothing")
        self.token = out[-1].strip()

    def api(self, svc: Service, method: str, path: str, **kw):
        import requests

        r = requests.request(
            method,
            svc.base + path,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kw,
        )
        return r

    def create_room(self, svc: Service, name: str) -> None:
        r = self.api(svc, "POST", "/api/rooms", json={"name": name, "title": f"bench {name}"})
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/rooms -> {r.status_code} {r.text[:300]}")

    def service(self, label: str, max_conns: int) -> Service:
        env = self.env
        if max_conns + 500 > 12000:  # the service's default CHAT_WORKER_CONNECTIONS
            env = dict(env, CHAT_WORKER_CONNECTIONS=str(max_conns + 500))
        svc = Service(self.tmp, env, label, self.gunicorn_conf())
        svc.start()
        return svc

    # -- idle memory --------------------------------------------------------------

    def idle_run(self, n: int) -> dict[str, object]:
        a = self.args
        room = f"idle-{n}"
        svc = self.service(f"idle-{n}", n + a.warmup)
        client = None
        res: dict[str, object] = {"connections": n, "warmup": a.warmup}
        try:
            self.create_room(svc, room)
            client = ClientProc(
                [
                    "idle",
                    "--port",
                    str(svc.port),
                    "--room",
                    room,
                    "--token",
                    self.token,
                    "--count",
                    str(n),
                    "--warmup",
                    str(a.warmup),
                    "--concurrency",
                    str(a.ramp_concurrency),
                    "--ramp-timeout",
                    str(a.ramp_timeout),
                ],
                self.tmp / f"client-idle-{n}.log",
            )
            import psutil

            cproc = psutil.Process(client.p.pid)
            w = client.expect("WARM", 120)
            res["warmup_ok"], res["warmup_failed"] = int(w[1]), int(w[2])
            if int(w[2]):
                res["warmup_errors"] = json.loads(" ".join(w[3:]))
            time.sleep(2.0)
            svc.check_worker()
            before = proc_mem(svc.worker_pid)
            kmem0 = tcp_kernel_mem()
            wcpu0, ccpu0, busy0 = cpu_s(svc.worker), cpu_s(cproc), busy_s()
            res["loadavg_before"] = loadavg()
            client_rss0 = cproc.memory_info().rss
            t0 = time.monotonic()
            client.send("GO")
            r = client.expect("READY", a.ramp_timeout + 60)
            ramp_wall = time.monotonic() - t0
            wcpu1, ccpu1, busy1 = cpu_s(svc.worker), cpu_s(cproc), busy_s()
            other = (busy1 - busy0) - (wcpu1 - wcpu0) - (ccpu1 - ccpu0)
            # CPU times tick in 10 ms steps: too short a window gives noise, not a figure.
            res["other_cpu_pct_during_ramp"] = (
                round(max(0.0, 100 * other / ramp_wall), 1) if ramp_wall >= 1.0 else None
            )
            ok, failed, ramp_s = int(r[1]), int(r[2]), float(r[3])
            res.update(
                ready=ok,
                failed=failed,
                ramp_s=round(ramp_s, 2),
                connect_rate_per_s=round(ok / ramp_s, 1) if ramp_s else None,
                ready_ms_p50=r[4],
                ready_ms_p99=r[5],
                ready_ms_max=r[6],
                worker_cpu_ms_per_conn=round((wcpu1 - wcpu0) * 1000 / max(ok, 1), 3),
                worker_cpu_pct_during_ramp=round(100 * (wcpu1 - wcpu0) / ramp_wall, 1),
                client_cpu_pct_during_ramp=round(100 * (ccpu1 - ccpu0) / ramp_wall, 1),
            )
            errs = json.loads(" ".join(r[7:]))
            if errs:
                res["errors"] = errs
            # settle: sample every second, keep the last sample as "after"
            samples = []
            for _ in range(max(1, int(a.settle))):
                time.sleep(1.0)
                svc.check_worker()
                samples.append(proc_mem(svc.worker_pid)["rss"])
            after = proc_mem(svc.worker_pid)
            kmem1 = tcp_kernel_mem()
            client.send("CHECK")
            c = client.expect("CHECKED", 120)
            res["open_at_measure"], res["closed_at_measure"] = int(c[1]), int(c[2])
            res["worker_fds"] = svc.worker.num_fds()
            res["client_rss_kib_per_conn"] = round(
                (cproc.memory_info().rss - client_rss0) / 1024 / max(ok, 1), 2
            )
            per = max(ok, 1)
            res["before"] = before
            res["after"] = after
            res["rss_settle_samples_mib"] = [round(s / 2**20, 1) for s in samples]
            for k in ("rss", "uss", "pss", "RssAnon", "RssFile", "VmData"):
                if k in before and k in after:
                    res[f"{k}_kib_per_conn"] = round((after[k] - before[k]) / 1024 / per, 2)
            if kmem0 is not None and kmem1 is not None:
                res["kernel_tcp_kib_per_conn_both_ends"] = round((kmem1 - kmem0) / 1024 / per, 2)
            # shutdown with the streams open: do they all end cleanly?
            if a.drain_on_stop:
                client.send("DRAIN")
                client.expect("DRAINING", 60)
                t_term = time.time()
                res["service_stop"] = svc.stop(grace=a.stop_grace)
                d = json.loads(" ".join(client.expect("DRAINED", 180)[1:]))
                res["streams_at_sigterm"] = d["outcome"]
                res["streams_ended_s_after_sigterm"] = {
                    k: round(v - t_term, 3) for k, v in d["ended_at"].items()
                }
        finally:
            if client is not None:
                client.close()
            stop = svc.stop(grace=a.stop_grace)
            res.setdefault("service_stop", stop)
            if stop.get("problem_lines"):
                res["service_stop"]["problem_lines"] = stop["problem_lines"]
                res["service_stop"]["problem_sample"] = stop["problem_sample"]
        return res

    # -- delivery latency -------------------------------------------------------

    def latency_run(self) -> dict[str, object]:
        import psutil
        import requests

        a = self.args
        s_n, m_n, rate = a.subscribers, a.messages, a.rate
        room = "latency"
        tag = "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
        svc = self.service("latency", s_n)
        client = None
        res: dict[str, object] = {
            "subscribers": s_n,
            "messages": m_n,
            "rate_per_s": rate,
            "parse": a.parse,
        }
        result_path = self.tmp / "latency-result.json"
        try:
            self.create_room(svc, room)
            fds0 = svc.worker.num_fds()
            res["worker_fds_before"] = fds0
            client = ClientProc(
                [
                    "latency",
                    "--port",
                    str(svc.port),
                    "--room",
                    room,
                    "--token",
                    self.token,
                    "--count",
                    str(s_n),
                    "--messages",
                    str(m_n),
                    "--tag",
                    tag,
                    "--concurrency",
                    str(a.ramp_concurrency),
                    "--ramp-timeout",
                    str(a.ramp_timeout),
                    "--result",
                    str(result_path),
                    "--parse",
                    a.parse,
                ],
                self.tmp / "client-latency.log",
            )
            cproc = psutil.Process(client.p.pid)
            r = client.expect("READY", a.ramp_timeout + 60)
            ok, failed = int(r[1]), int(r[2])
            res.update(ready=ok, failed=failed, ramp_s=float(r[3]))
            errs = json.loads(" ".join(r[7:]))
            if errs:
                res["connect_errors"] = errs
            time.sleep(1.0)
            svc.check_worker()
            rss_subs = proc_mem(svc.worker_pid)["rss"]

            sess = requests.Session()
            sess.headers["Authorization"] = f"Bearer {self.token}"
            url = f"{svc.base}/api/rooms/{room}/messages"
            post_rtt: list[float] = []
            post_fail: Counter[str] = Counter()
            seqs: list[int] = []
            max_lag = 0.0
            wcpu0, ccpu0, busy0 = cpu_s(svc.worker), cpu_s(cproc), busy_s()
            res["loadavg_before"] = loadavg()
            t_start = time.monotonic()
            resp = None
            for i in range(m_n):
                target = t_start + i / rate
                now = time.monotonic()
                if target > now:
                    time.sleep(target - now)
                else:
                    max_lag = max(max_lag, now - target)
                ts = time.time()
                text = json.dumps({"bench": tag, "i": i, "t": ts})
                try:
                    # `with`: no response may outlive the loop, since a live response
                    # keeps its keep-alive socket open even after sess.close().
                    with sess.post(
                        url, json={"text": text, "client_msg_id": f"{tag}-{i}"}, timeout=30
                    ) as resp:
                        post_rtt.append((time.time() - ts) * 1000)
                        if resp.status_code != 201:
                            post_fail[f"HTTP {resp.status_code}: {resp.text[:120]}"] += 1
                        else:
                            seqs.append(resp.json().get("seq"))
                except requests.RequestException as exc:
                    post_fail[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
            post_wall = time.monotonic() - t_start
            # An idle keep-alive connection would hold up the worker's shutdown by the
            # server's keepalive (5 s), so hang up now.
            del resp
            sess.close()
            posted_ok = m_n - sum(post_fail.values())
            # wait for delivery to finish (or the drain deadline)
            drained = True
            try:
                client.expect("DONE", a.drain)
            except TimeoutError:
                drained = False
            wall = time.monotonic() - t_start
            wcpu1, ccpu1, busy1 = cpu_s(svc.worker), cpu_s(cproc), busy_s()
            other = (busy1 - busy0) - (wcpu1 - wcpu0) - (ccpu1 - ccpu0)
            svc.check_worker()
            rss_end = proc_mem(svc.worker_pid)["rss"]
            client.send("STOP")
            client.expect("RESULT", 120)
            t_hangup = time.monotonic()
            if a.hangup_check:
                # The subscribers hung up without a word; the server can only notice on
                # a failed write (a heartbeat): how long until their sockets are freed?
                freed_s = None
                deadline = t_hangup + int(self.env["CHAT_HEARTBEAT_SECONDS"]) * 2 + 10
                while time.monotonic() < deadline:
                    svc.check_worker()
                    if svc.worker.num_fds() <= fds0 + 5:
                        freed_s = round(time.monotonic() - t_hangup, 1)
                        break
                    time.sleep(0.5)
                res["dead_streams_freed_s"] = freed_s
                res["heartbeat_s"] = int(self.env["CHAT_HEARTBEAT_SECONDS"])
                res["worker_fds_after_hangup"] = svc.worker.num_fds()
            data = json.loads(result_path.read_text())

            lats: list[float] = []
            per_msg: dict[int, list[float]] = {}
            for _sub, m in data["latencies"].items():
                for i, lat in m.items():
                    lats.append(lat)
                    per_msg.setdefault(int(i), []).append(lat)
            lats.sort()
            expected = len(data["ready_idx"]) * posted_ok
            missing_by_msg = {
                i: len(data["ready_idx"]) - len(per_msg.get(i, [])) for i in range(m_n)
            }
            first = sorted(min(v) for v in per_msg.values())
            spread = sorted(max(v) - min(v) for v in per_msg.values())
            prtt = sorted(post_rtt)
            res.update(
                posted_ok=posted_ok,
                post_failures=dict(post_fail),
                post_seq_dense=(seqs == list(range(seqs[0], seqs[0] + len(seqs))))
                if seqs
                else None,
                post_schedule_max_lag_ms=round(max_lag * 1000, 1),
                post_wall_s=round(post_wall, 2),
                delivered_all_before_deadline=drained,
                expected=expected,
                received_unique=len(lats),
                loss=expected - len(lats),
                messages_with_loss=sum(1 for v in missing_by_msg.values() if v > 0),
                duplicates=data["stats"].get("duplicates", 0),
                latency_ms={
                    "p50": percentile(lats, 50),
                    "p90": percentile(lats, 90),
                    "p99": percentile(lats, 99),
                    "max": lats[-1] if lats else None,
                    "min": lats[0] if lats else None,
                },
                first_receiver_ms={
                    "p50": percentile(first, 50),
                    "max": first[-1] if first else None,
                },
                fanout_spread_ms={
                    "p50": percentile(spread, 50),
                    "p99": percentile(spread, 99),
                    "max": spread[-1] if spread else None,
                },
                post_rtt_ms={
                    "p50": percentile(prtt, 50),
                    "p99": percentile(prtt, 99),
                    "max": prtt[-1] if prtt else None,
                },
                worker_cpu_pct=round(100 * (wcpu1 - wcpu0) / wall, 1),
                client_cpu_pct=round(100 * (ccpu1 - ccpu0) / wall, 1),
                other_cpu_pct=round(max(0.0, 100 * other / wall), 1),
                worker_cpu_us_per_frame=round((wcpu1 - wcpu0) * 1e6 / max(len(lats), 1), 1),
                worker_rss_mib_with_subscribers=round(rss_subs / 2**20, 1),
                worker_rss_mib_end=round(rss_end / 2**20, 1),
                per_message_first_ms=[
                    round(min(per_msg[i]), 2) if i in per_msg else None for i in range(m_n)
                ],  # fmt: skip
                per_message_last_ms=[
                    round(max(per_msg[i]), 2) if i in per_msg else None for i in range(m_n)
                ],  # fmt: skip
                per_message_post_rtt_ms=[round(x, 2) for x in post_rtt],
                client_stats=data["stats"],
                client_errors=data["errors"],
            )
        finally:
            if client is not None:
                client.close()
            res["service_stop"] = svc.stop(grace=a.stop_grace)
        return res

    def cleanup(self) -> None:
        cleanup_all()
        if self.args.keep_tmp:
            print(f"(kept {self.tmp})", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def print_report(rep: dict[str, object]) -> None:
    m = rep["machine"]
    out = print
    out()
    out("== machine ==")
    out(f"nproc={m['nproc']} cpu={m['cpu_model']} mem={m['mem_total_gib']}GiB kernel={m['kernel']}")
    out(
        f"python={m['python']} gevent={m['gevent']} greenlet={m['greenlet']} "
        f"gunicorn={m['gunicorn']} flask={m['flask']} sqlalchemy={m['sqlalchemy']}"
    )
    out(f"nofile={m['nofile_limit']} loadavg at start={m['loadavg']}")
    dirty = " (dirty tree)" if m["service_tree_dirty"] else ""
    out(f"service: {m['service_commit']}{dirty}")
    idle = rep.get("idle") or []
    if idle:
        out()
        out("== idle SSE connections: worker memory (1 gevent worker, embedded broker) ==")
        hdr = ("N", "ready", "fail", "ramp s", "conn/s", "RSS0 MiB", "RSS1 MiB", "RSS KiB/c",
               "USS KiB/c", "anon KiB/c", "kTCP KiB/c", "cpu ms/c", "open@meas")  # fmt: skip
        out(" ".join(f"{h:>10}" for h in hdr))
        for r in idle:
            if "error" in r:
                out(f"{r['connections']:>10} ERROR: {r['error']}")
                continue
            b, a = r["before"], r["after"]
            row = (
                r["connections"], r["ready"], r["failed"], fmt(r["ramp_s"]),
                fmt(r["connect_rate_per_s"], 0), fmt(b["rss"] / 2**20), fmt(a["rss"] / 2**20),
                fmt(r.get("rss_kib_per_conn"), 2), fmt(r.get("uss_kib_per_conn"), 2),
                fmt(r.get("RssAnon_kib_per_conn"), 2),
                fmt(r.get("kernel_tcp_kib_per_conn_both_ends"), 2),
                fmt(r.get("worker_cpu_ms_per_conn"), 2), r.get("open_at_measure"),
            )  # fmt: skip
            out(" ".join(f"{str(x):>10}" for x in row))
        for r in idle:
            if "error" in r:
                continue
            st = r.get("service_stop", {})
            out(
                f"  N={r['connections']}: ready ms p50/p99/max="
                f"{r['ready_ms_p50']}/{r['ready_ms_p99']}/{r['ready_ms_max']}; CPU during ramp "
                f"worker={r['worker_cpu_pct_during_ramp']}% "
                f"client={r['client_cpu_pct_during_ramp']}% other={r['other_cpu_pct_during_ramp']}%"
            )
            out(
                f"    worker fds={r['worker_fds']}; client KiB/conn={r['client_rss_kib_per_conn']};"
                f" settle RSS MiB={r['rss_settle_samples_mib']}"
            )
            out(
                f"    SIGTERM with streams open: master exit after {st.get('shutdown_s')} s, "
                f"streams ended {r.get('streams_at_sigterm')} "
                f"at s after SIGTERM {r.get('streams_ended_s_after_sigterm')}"
            )
            out(
                f"    server log: {st.get('problem_lines')} problem lines, "
                f"{st.get('booting_worker_lines')} 'Booting worker' lines"
            )
            if "gc_gen2_pauses" in st:
                out(
                    f"    worker gen-2 GC pauses: {st['gc_gen2_pauses']}, max "
                    f"{st['gc_gen2_max_ms']} ms, all (ms): {st['gc_gen2_ms']}"
                )
            for line in st.get("problem_sample") or []:
                out(f"      | {line[:200]}")
            if r.get("errors"):
                out(f"    connect errors: {r['errors']}")
        ok = [r for r in idle if "error" not in r and r.get("ready")]
        if len(ok) >= 2 and ok[-1]["ready"] != ok[0]["ready"]:
            lo, hi = ok[0], ok[-1]
            slope = (hi["after"]["rss"] - lo["after"]["rss"]) / 1024 / (hi["ready"] - lo["ready"])
            out(
                f"  marginal RSS between N={lo['connections']} and N={hi['connections']}: "
                f"{slope:.2f} KiB/conn"
            )
            rep["idle_marginal_rss_kib_per_conn"] = round(slope, 2)
    lat = rep.get("latency")
    if lat:
        out()
        out("== delivery latency (time.time() before POST -> SSE frame read by subscriber) ==")
        if "error" in lat:
            out(f"ERROR: {lat['error']}")
            return
        L = lat["latency_ms"]
        out(
            f"subscribers={lat['subscribers']} (ready {lat['ready']}, failed {lat['failed']}) "
            f"messages={lat['messages']} @ {lat['rate_per_s']}/s, posted ok={lat['posted_ok']}, "
            f"client parse={lat['parse']}"
        )
        out(
            f"latency ms: p50={fmt(L['p50'], 2)} p90={fmt(L['p90'], 2)} p99={fmt(L['p99'], 2)} "
            f"max={fmt(L['max'], 2)} min={fmt(L['min'], 2)}"
        )
        out(
            f"expected={lat['expected']} received={lat['received_unique']} loss={lat['loss']} "
            f"duplicates={lat['duplicates']} messages_with_loss={lat['messages_with_loss']}"
        )
        F, S, P = lat["first_receiver_ms"], lat["fanout_spread_ms"], lat["post_rtt_ms"]
        out(
            f"first receiver ms p50={fmt(F['p50'], 2)} max={fmt(F['max'], 2)}; fan-out spread "
            f"(last-first) ms p50={fmt(S['p50'], 2)} p99={fmt(S['p99'], 2)} max={fmt(S['max'], 2)}"
        )
        out(
            f"POST rtt ms p50={fmt(P['p50'], 2)} p99={fmt(P['p99'], 2)} max={fmt(P['max'], 2)}; "
            f"schedule lag max={lat['post_schedule_max_lag_ms']} ms; "
            f"seq dense={lat['post_seq_dense']}"
        )
        out(
            f"CPU (100% = one core): worker={lat['worker_cpu_pct']}% "
            f"client={lat['client_cpu_pct']}% other={lat['other_cpu_pct']}%; worker CPU per "
            f"delivered frame (incl. the POSTs) {lat['worker_cpu_us_per_frame']} us"
        )
        out(
            f"worker RSS with subscribers={lat['worker_rss_mib_with_subscribers']} MiB, "
            f"end={lat['worker_rss_mib_end']} MiB"
        )
        if "dead_streams_freed_s" in lat:
            out(
                f"after {lat['ready']} subscribers hung up: worker fds back to "
                f"{lat['worker_fds_before']}+5 after {lat['dead_streams_freed_s']} s "
                f"(heartbeat {lat['heartbeat_s']} s); "
                f"fds now {lat['worker_fds_after_hangup']}"
            )
        out(f"client stats: {lat['client_stats']}")
        if lat.get("post_failures"):
            out(f"POST failures: {lat['post_failures']}")
        if lat.get("connect_errors"):
            out(f"connect errors: {lat['connect_errors']}")
        if lat.get("client_errors"):
            out(f"client errors: {lat['client_errors']}")
        st = lat.get("service_stop", {})
        out(
            f"service stop: {st.get('shutdown_s')} s; server log: "
            f"{st.get('problem_lines')} problem lines"
        )
        for line in st.get("problem_sample") or []:
            out(f"  | {line[:200]}")
        if "gc_gen2_pauses" in st:
            out(
                f"worker gen-2 GC pauses: {st['gc_gen2_pauses']}, max {st['gc_gen2_max_ms']} ms,"
                f" all (ms): {st['gc_gen2_ms']}"
            )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--connections",
        default="1000,10000",
        help="comma-separated idle-connection counts; '' or 0 skips (default 1000,10000)",
    )
    ap.add_argument("--subscribers", type=int, default=1000, help="0 skips the latency test")
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--rate", type=float, default=10.0, help="messages per second")
    ap.add_argument("--json", help="write the full results here")
    ap.add_argument(
        "--parse",
        choices=["deferred", "live"],
        default="deferred",
        help="latency client: parse frames after the run (default) or as they arrive",
    )
    ap.add_argument("--warmup", type=int, default=10, help="streams open before the baseline")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after all are ready")
    ap.add_argument("--ramp-concurrency", type=int, default=200, help="connects in flight")
    ap.add_argument("--ramp-timeout", type=float, default=600.0)
    ap.add_argument(
        "--drain", type=float, default=30.0, help="max wait for delivery after the last POST"
    )
    ap.add_argument("--stop-grace", type=float, default=60.0)
    ap.add_argument(
        "--no-drain-on-stop",
        dest="drain_on_stop",
        action="store_false",
        help="don't SIGTERM the service with the idle streams open",
    )
    ap.add_argument(
        "--no-hangup-check",
        dest="hangup_check",
        action="store_false",
        help="don't wait for the server to free the subscribers' sockets after they hang up",
    )
    ap.add_argument(
        "--gc-trace",
        action="store_true",
        help="log the worker's gen-2 GC pauses (wraps gunicorn.conf.py; off by default)",
    )
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, db)")
    args = ap.parse_args(argv)

    ns = [int(x) for x in args.connections.split(",") if x.strip() and int(x) > 0]
    soft, hard = raise_nofile()
    need = max(ns + [args.subscribers]) + args.warmup + 200
    if need > soft:
        ap.error(f"{need} fds needed per process, limit is {soft}")

    # Ctrl-C and SIGTERM both end in the finally below.
    def on_term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    atexit.register(cleanup_all)

    bench = Bench(args)
    rep: dict[str, object] = {
        "machine": machine_facts(),
        "args": vars(args),
        "idle": [],
        "latency": None,
    }
    rc = 0
    try:
        bench.setup()
        for n in ns:
            print(f"[idle] N={n} ...", file=sys.stderr, flush=True)
            try:
                rep["idle"].append(bench.idle_run(n))
            except (RuntimeError, TimeoutError) as exc:
                rc = 1
                rep["idle"].append({"connections": n, "error": str(exc)})
                print(f"[idle] N={n} failed: {exc}", file=sys.stderr, flush=True)
        if args.subscribers > 0 and args.messages > 0:
            print(
                f"[latency] S={args.subscribers} M={args.messages} R={args.rate}/s ...",
                file=sys.stderr,
                flush=True,
            )
            try:
                rep["latency"] = bench.latency_run()
            except (RuntimeError, TimeoutError) as exc:
                rc = 1
                rep["latency"] = {"error": str(exc)}
                print(f"[latency] failed: {exc}", file=sys.stderr, flush=True)
        print_report(rep)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        rc = 130
    finally:
        bench.cleanup()
        if args.json:
            Path(args.json).write_text(json.dumps(rep, indent=2, default=str))
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
