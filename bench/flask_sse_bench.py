"""flask-sse compatibility benchmark: N EventSource-style clients on GET /stream?channel=bench.

Starts its own redis-server and one gunicorn gevent worker of this service, opens N streams
from a separate asyncio client process, publishes M messages at R/s with the real flask-sse
package (`sse.publish(..., type="tick", channel="bench")`) and reports delivery, latency,
worker RSS per idle stream and the Redis connections the service uses.
`--compare-flask-sse` repeats the run against flask-sse's own blueprint under gunicorn/gevent.

    python bench/flask_sse_bench.py [--clients 1000] [--messages 200] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST, CHANNEL = "127.0.0.1", "bench"
FLASK_SSE_APP = """\
import os
from flask import Flask
from flask_sse import sse
app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
app.add_url_rule("/ping", "ping", lambda: "ok")
"""


# ------------------------------------------------------------ client process (asyncio)
class Stream(asyncio.Protocol):
    """One SSE client: HTTP/1.1 response head, chunked body, text/event-stream frames."""

    def __init__(self, ready_on_connect: bool) -> None:
        self.ready_on_connect, self.ready = ready_on_connect, asyncio.Event()
        self.head, self.raw, self.text = b"", b"", b""
        self.in_body = self.chunked = False
        self.left = self.skip = 0
        self.data: list[bytes] = []
        self.event = b""
        self.ticks: list[tuple[float, bytes]] = []
        self.other_events = self.closed = 0
        self.error = ""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(f"GET /stream?channel={CHANNEL} HTTP/1.1\r\nHost: {HOST}\r\n"
                        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n".encode())
        if self.ready_on_connect:
            self.ready.set()

    def connection_lost(self, exc) -> None:
        self.closed = 1
        self.ready.set()

    def data_received(self, data: bytes) -> None:
        now = time.time()  # before any parsing
        if not self.in_body:
            self.head += data
            head, sep, data = self.head.partition(b"\r\n\r\n")
            if not sep:
                return
            self.in_body = True
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                self.error = head.split(b"\r\n")[0].decode(errors="replace")
                self.transport.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.feed_sse(self.dechunk(data) if self.chunked else data, now)

    def dechunk(self, data: bytes) -> bytes:
        buf, pos, out = self.raw + data, 0, []
        while True:
            if self.left:
                piece = buf[pos:pos + self.left]
                out.append(piece)
                pos += len(piece)
                self.left -= len(piece)
                if self.left:
                    break
                self.skip = 2  # the CRLF after the chunk's data
            if self.skip:
                n = min(self.skip, len(buf) - pos)
                pos, self.skip = pos + n, self.skip - n
                if self.skip:
                    break
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            size, pos = int(buf[pos:end].split(b";")[0], 16), end + 2
            if size == 0:
                break
            self.left = size
        self.raw = buf[pos:]
        return b"".join(out)

    def feed_sse(self, data: bytes, now: float) -> None:
        text = self.text + data
        hold = b"\r" if text.endswith(b"\r") else b""  # maybe the first half of a CRLF
        text = text[:-1] if hold else text
        *lines, rest = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self.text = rest + hold
        for line in lines:
            if not line:  # a blank line ends the event
                if self.data:
                    if self.event == b"tick":
                        self.ticks.append((now, b"\n".join(self.data)))
                    else:
                        self.other_events += 1
                self.data, self.event = [], b""
            elif line.startswith(b":"):
                if line == b": stream open":
                    self.ready.set()
            else:
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"data":
                    self.data.append(value)
                elif name == b"event":
                    self.event = value


async def client_main(port: int, warm: int, n: int, mode: str) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "EOF")

    threading.Thread(target=read_stdin, daemon=True).start()
    streams: list[Stream] = []
    gate, fails = asyncio.Semaphore(100), []

    async def open_one() -> None:
        async with gate:
            stream = Stream(ready_on_connect=(mode == "connect"))
            try:
                await loop.create_connection(lambda: stream, HOST, port)
                await asyncio.wait_for(stream.ready.wait(), 30)
                streams.append(stream)
            except (TimeoutError, OSError) as exc:
                fails.append(repr(exc))
                if hasattr(stream, "transport"):
                    stream.transport.close()

    cmd = ""
    for batch, count in enumerate((warm, n - warm)):
        await asyncio.gather(*(open_one() for _ in range(count)))
        bad = [s for s in streams if s.closed or s.error]
        print("READY", len(streams) - len(bad), len(fails) + len(bad), flush=True)
        cmd = await commands.get()
        if batch == 0 and cmd != "MORE":
            break
    if cmd.startswith("DONE"):
        _, m, drain = cmd.split()
        deadline = time.monotonic() + float(drain)
        while time.monotonic() < deadline and any(
                len(s.ticks) < int(m) and not s.closed for s in streams):
            await asyncio.sleep(0.1)
        print("RESULT", json.dumps(summarize(streams, fails)), flush=True)
    for stream in streams:
        stream.transport.close()


def summarize(streams: list[Stream], fails: list[str]) -> dict:
    lat, seqs_total, dups, ooo = [], 0, 0, 0
    for stream in streams:
        seen: set[int] = set()
        top = -1
        for received, data in stream.ticks:
            msg = json.loads(data)
            seq = msg["seq"]
            if seq in seen:
                dups += 1
                continue
            seen.add(seq)
            ooo += seq < top
            top = max(top, seq)
            lat.append((received - msg["t"]) * 1000)
        seqs_total += len(seen)
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1) if lat else None

    return {"streams": len(streams), "received": seqs_total, "duplicates": dups,
            "out_of_order": ooo, "closed_by_server": sum(s.closed for s in streams),
            "other_events": sum(s.other_events for s in streams),
            "errors": sorted({s.error for s in streams if s.error} | set(fails))[:5],
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)}


# --------------------------------------------------------------------------- parent
STARTED: list[subprocess.Popen] = []


def _pdeathsig() -> None:
    try:  # the child dies with the benchmark, even on SIGKILL (Linux)
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort
        pass


def spawn(argv: list[str], log: Path, cwd: Path = ROOT, **kw) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - the child's, closed with the parent
    p = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, cwd=str(cwd),
                         start_new_session=True, preexec_fn=_pdeathsig, **kw)
    STARTED.append(p)
    return p


def stop(p: subprocess.Popen, grace: float = 15.0) -> None:
    import psutil
    try:
        kids = psutil.Process(p.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    for kid in kids:
        try:
            kid.kill()
        except psutil.Error:
            pass
    if p in STARTED:
        STARTED.remove(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)


def read_line(p: subprocess.Popen, word: str, timeout: float) -> list[str]:
    """The client's next stdout line, which must start with word (bounded by SIGALRM)."""
    signal.alarm(int(timeout) + 1)
    try:
        line = p.stdout.readline().decode().split(" ", 1)
    finally:
        signal.alarm(0)
    if line[0] != word:
        raise RuntimeError(f"load client: expected {word}, got {line!r} (rc={p.poll()})")
    return line[1].split() if word == "READY" else json.loads(line[1])


def redis_usage(r, server: subprocess.Popen, redis_port: int) -> dict:
    """Redis clients whose socket belongs to the gunicorn master or its worker."""
    import psutil
    master = psutil.Process(server.pid)
    ports = {c.laddr.port for proc in [master, *master.children()]
             for c in proc.net_connections("tcp") if c.raddr and c.raddr.port == redis_port}
    clients = r.client_list()
    mine = [c for c in clients if int(c["addr"].rsplit(":", 1)[1]) in ports]
    return {"conns": len(mine), "pubsub_conns": sum(int(c.get("sub", 0)) > 0 for c in mine),
            "last_cmds": sorted({c["cmd"] for c in mine}),
            "numsub": r.pubsub_numsub(CHANNEL)[0][1], "all_clients": len(clients)}


def run(label: str, a, tmp: Path, redis_url: str, r, redis_port: int) -> dict:
    import psutil
    from flask import Flask
    from flask_sse import sse

    port, log = free_port(), tmp / f"{label}.log"
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONUNBUFFERED="1",
               DATABASE_URL=f"sqlite:///{tmp}/chat.db", SECRET_KEY="bench",
               CHAT_SSE_PUBLIC_CHANNELS=CHANNEL, PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"))
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}"]
    if label == "service":
        server = spawn([*gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], log, env=env)
        probe, mode, warm = "/healthz", "open", min(10, a.clients)
    else:
        # Plain gunicorn + gevent, run from tmp so that the project's gunicorn.conf.py
        # (found in the working directory) is not loaded.
        (tmp / "fsse_app.py").write_text(FLASK_SSE_APP)
        server = spawn([*gunicorn, "-k", "gevent", "-w", "1", "--graceful-timeout", "3",
                        "--worker-connections", str(a.clients + 100), "fsse_app:app"],
                       log, cwd=tmp, env=env)
        probe, mode, warm = "/ping", "connect", min(10, a.clients)
    res: dict = {"label": label, "log": str(log)}
    client = None
    try:
        def up() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"{label}: gunicorn exited; see {log}")
            try:
                with socket.create_connection((HOST, port), timeout=2) as s:
                    s.sendall(f"GET {probe} HTTP/1.0\r\n\r\n".encode())
                    ok = b" 200 " in s.recv(64)
                return ok and len(psutil.Process(server.pid).children()) == 1
            except OSError:
                return False

        wait_for(f"{label} up", up, 60)
        worker = psutil.Process(server.pid).children()[0]
        client = spawn([sys.executable, __file__, "_client", str(port), str(warm),
                        str(a.clients), mode], tmp / f"{label}-client.log",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = read_line(client, "READY", 60)
        want = 1 if label == "service" else int(ready[0])
        wait_for("subscribed", lambda: redis_usage(r, server, redis_port)["numsub"] == want, 30)
        time.sleep(1)
        rss0, res["redis_warm"] = worker.memory_info().rss, redis_usage(r, server, redis_port)
        client.stdin.write(b"MORE\n")
        client.stdin.flush()
        ready = read_line(client, "READY", 300)
        res["ready"], res["connect_fails"] = int(ready[0]), int(ready[1])
        want = 1 if label == "service" else res["ready"]
        wait_for("subscribed", lambda: redis_usage(r, server, redis_port)["numsub"] == want, 60)
        time.sleep(2)
        res["rss_mib"] = (round(rss0 / 2**20, 1), round(worker.memory_info().rss / 2**20, 1))
        res["kib_per_stream"] = round((worker.memory_info().rss - rss0) / 1024
                                      / max(1, res["ready"] - warm), 1)
        res["redis"] = redis_usage(r, server, redis_port)
        app = Flask("bench-publisher")
        app.config["REDIS_URL"] = redis_url
        sent, receivers, t0 = 0, [], time.monotonic()
        with app.app_context():
            for i in range(a.messages):
                time.sleep(max(0.0, t0 + i / a.rate - time.monotonic()))
                receivers.append(sse.publish({"seq": i, "t": time.time()}, type="tick",
                                             channel=CHANNEL))
                sent += 1
        res["sent"], res["publish_receivers"] = sent, sorted(set(receivers))
        client.stdin.write(f"DONE {sent} {a.drain}\n".encode())
        client.stdin.flush()
        res.update(read_line(client, "RESULT", a.drain + 60))
        res["expected"] = res["ready"] * sent
        res["worker_alive"] = worker.is_running() and server.poll() is None and \
            psutil.Process(server.pid).children() == [worker]
    finally:
        if client is not None:
            stop(client, 10)
        stop(server, 20)
    lines = log.read_text(errors="replace").splitlines()
    res["log_problems"] = [x for x in lines if any(
        w in x for w in ("Traceback", "ERROR", "CRITICAL", "WORKER TIMEOUT", "Exception",
                         "WARNING"))][:10]
    return res


def report(res: dict) -> bool:
    ok = (res["received"] == res["expected"] and not res["duplicates"]
          and not res["out_of_order"] and res["connect_fails"] == 0 and res["worker_alive"])
    rw, rn = res["redis_warm"], res["redis"]
    print(f"== {res['label']}: {res['ready']} streams ({res['connect_fails']} failed), "
          f"{res['sent']} messages\n"
          f"  delivered {res['received']}/{res['expected']}, duplicates {res['duplicates']}, "
          f"out of order {res['out_of_order']}, closed by server {res['closed_by_server']}\n"
          f"  latency ms p50 {res['p50']} p90 {res['p90']} p99 {res['p99']} max {res['max']}\n"
          f"  worker RSS {res['rss_mib'][0]} -> {res['rss_mib'][1]} MiB: "
          f"{res['kib_per_stream']} KiB per idle stream\n"
          f"  Redis connections of the service: {rw['conns']} (pubsub {rw['pubsub_conns']}) "
          f"with the warm-up streams, {rn['conns']} (pubsub {rn['pubsub_conns']}) with all; "
          f"last commands {rn['last_cmds']}; NUMSUB {CHANNEL} = {rn['numsub']}; "
          f"PUBLISH receivers {res['publish_receivers']}\n"
          f"  log: {len(res['log_problems'])} problem lines; {res['log']}"
          + ("" if res["worker_alive"] else "\n  ! the worker exited or was replaced"), flush=True)
    for line in res["log_problems"] + res["errors"]:
        print("   !", line[:200])
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="messages per second")
    ap.add_argument("--drain", type=float, default=30.0, help="max s to wait for delivery")
    ap.add_argument("--compare-flask-sse", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the logs")
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the children
    if 2 * a.clients + 500 > hard:
        ap.error(f"--clients {a.clients} needs {2 * a.clients + 500} fds; hard limit {hard}")

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    def alarm(signum, frame):  # noqa: ARG001
        raise TimeoutError("a wait on the load client timed out")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    signal.signal(signal.SIGALRM, alarm)
    tmp, rc = Path(tempfile.mkdtemp(prefix="flask-sse-bench-")), 1
    try:
        import redis
        redis_port = free_port()
        spawn(["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--maxclients", str(max(10000, a.clients + 500))],
              tmp / "redis.log")
        redis_url = f"redis://{HOST}:{redis_port}/0"
        r = redis.Redis.from_url(redis_url, client_name="bench-monitor")
        wait_for("redis-server", lambda: _ping(r), 10)
        print(f"{os.cpu_count()} cores; {a.clients} clients, {a.messages} messages at "
              f"{a.rate}/s; logs in {tmp}", flush=True)
        ok = report(run("service", a, tmp, redis_url, r, redis_port))
        if a.compare_flask_sse:
            ok = report(run("flask-sse", a, tmp, redis_url, r, redis_port)) and ok
        rc = 0 if ok else 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; stopping everything", file=sys.stderr)
        rc = 130
    finally:
        while STARTED:
            stop(STARTED[-1])
        if rc != 1 and not a.keep_tmp:  # a failed run keeps its logs
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


def _ping(r) -> bool:
    try:
        return bool(r.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


if __name__ == "__main__":
    if sys.argv[1:2] == ["_client"]:
        port, warm, n = map(int, sys.argv[2:5])
        asyncio.run(client_main(port, warm, n, sys.argv[5]))
    else:
        sys.exit(main())
