"""flask-sse compatibility end to end: the real `flask-sse` package publishing from its own
process into a real redis-server, read at `GET /stream?channel=` from two gunicorn
processes; and the other way round, `POST /api/channels/<name>/events` read by a real
flask-sse subscriber.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_lib

from .conftest import REPO_ROOT, RedisServer, ServiceFactory
from .sse_client import SSEClient, SSEError, StreamTimeout

pytestmark = pytest.mark.e2e

WAIT = 15.0

# A minimal existing flask-sse app: it publishes each JSON line of stdin with
# sse.publish(**line), exactly as such an app does from its views or jobs.
PUBLISHER = """
import json, sys
from flask import Flask
from flask_sse import sse

app = Flask("legacy")
app.config["REDIS_URL"] = sys.argv[1]
app.register_blueprint(sse, url_prefix="/stream")
with app.app_context():
    for line in sys.stdin:
        sse.publish(**json.loads(line))
"""

# A flask-sse subscriber (its own `sse.messages()`, what its /stream serves): prints the
# first `count` messages of a channel as JSON lines.
SUBSCRIBER = """
import json, sys
from flask import Flask
from flask_sse import sse

app = Flask("legacy")
app.config["REDIS_URL"] = sys.argv[1]
count = int(sys.argv[3])
with app.app_context():
    for n, message in enumerate(sse.messages(channel=sys.argv[2]), 1):
        print(json.dumps(message.to_dict()), flush=True)
        if n == count:
            break
"""


def flask_sse_publish(redis_url: str, events: list[dict[str, Any]]) -> None:
    """Publish events from a separate process with the real flask-sse package."""
    stdin = "".join(json.dumps(event) + "\n" for event in events)
    res = subprocess.run([sys.executable, "-c", PUBLISHER, redis_url], input=stdin.encode(),
                         capture_output=True, timeout=60, cwd=REPO_ROOT, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")


@pytest.fixture
def pair(redis_server: RedisServer, service_factory: ServiceFactory) -> SimpleNamespace:
    """Two gunicorn processes (one SQLite file, one redis-server); "ticker" is public."""
    env = {"CHAT_SSE_PUBLIC_CHANNELS": "ticker"}
    a = service_factory("a", redis=redis_server, env=env)
    b = service_factory("b", redis=redis_server, env=env, init_db=False)
    return SimpleNamespace(a=a, b=b, redis=redis_server,
                           alice=a.create_user("alice"), ops=a.create_user("ops", admin=True))


def numsub(url: str, channel: str) -> int:
    client = redis_lib.Redis.from_url(url)
    try:
        return int(dict(client.pubsub_numsub(channel))[channel.encode()])
    finally:
        client.close()


def test_flask_sse_publishes_reach_every_reader_in_both_processes_once_in_order(
        pair: SimpleNamespace) -> None:
    a, b, redis_url = pair.a, pair.b, pair.redis.url
    readers = [svc.stream("/stream?channel=orders", pair.alice)
               for svc in (a, b) for _ in range(3)]
    default = a.stream("/stream", pair.alice)  # flask-sse's default channel, "sse"
    ticker = b.stream("/stream?channel=ticker", None)  # public: no login
    for client in (*readers, default, ticker):
        assert client.status_code == 200
        assert client.response_headers["Content-Type"].startswith("text/event-stream")
    # One subscription per process, however many clients read the channel.
    assert numsub(redis_url, "orders") == 2
    assert numsub(redis_url, "ticker") == 1

    orders = [{"data": {"order": n, "items": ["a", "b"]}, "type": "order", "id": str(n),
               "channel": "orders"} for n in range(1, 41)]
    tricky = "up 3%\r\nevent: forged\ndata: forged\n\nid: 666"
    others = [{"data": tricky, "channel": "ticker"},
              {"data": "hello from flask-sse", "type": "greeting"}]
    flask_sse_publish(redis_url, orders + others)

    for client in readers:
        got = client.take(40, timeout=WAIT)
        assert [(e.event, e.id) for e in got] == [("order", str(n)) for n in range(1, 41)]
        assert [e.json() for e in got] == [event["data"] for event in orders]
    event = ticker.next_event(WAIT)
    assert (event.event, event.data, event.id) == ("message", tricky.replace("\r\n", "\n"),
                                                   None)
    event = default.next_event(WAIT)
    assert (event.event, event.data) == ("greeting", "hello from flask-sse")

    # Exactly once: after a last marker, nothing else came before it.
    flask_sse_publish(redis_url, [{"data": "end", "type": "end", "channel": "orders"},
                                  {"data": "end", "type": "end", "channel": "ticker"},
                                  {"data": "end", "type": "end"}])
    for client in (*readers, ticker, default):
        assert client.next_event(WAIT).event == "end"

    # Logging in is still required off the public channels.
    anonymous = SSEClient(a.base + "/stream?channel=orders")
    a.defer(anonymous.close)
    with pytest.raises(SSEError, match="-> 401"):
        anonymous.connect()


def test_http_publishes_reach_flask_sse_subscribers_and_both_processes(
        pair: SimpleNamespace) -> None:
    a, b, redis_url = pair.a, pair.b, pair.redis.url
    reader = b.stream("/stream?channel=jobs", pair.alice)
    legacy = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, redis_url, "jobs", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + WAIT
        while numsub(redis_url, "jobs") < 2:  # b's hub, then the flask-sse subscriber
            assert time.monotonic() < deadline, "the flask-sse subscriber did not subscribe"
            assert legacy.poll() is None, legacy.stderr.read() if legacy.stderr else ""
            time.sleep(0.05)
        ops = a.api(pair.ops)
        first = ops.post("/api/channels/jobs/events",
                         {"data": {"job": 7, "state": "done"}, "type": "job", "id": "7"})
        assert first.status_code == 202, first.text
        second = ops.post("/api/channels/jobs/events", data={"data": "plain\ntext"})
        assert second.status_code == 202, second.text
        out, err = legacy.communicate(timeout=WAIT)
    finally:
        if legacy.poll() is None:
            legacy.kill()
            legacy.communicate()
    assert legacy.returncode == 0, err.decode(errors="replace")
    assert [json.loads(line) for line in out.decode().splitlines()] == [
        {"data": {"job": 7, "state": "done"}, "type": "job", "id": "7"},
        {"data": "plain\ntext"}]
    got = reader.take(2, timeout=WAIT)
    assert [(e.event, e.id) for e in got] == [("job", "7"), ("message", None)]
    assert got[0].json() == {"job": 7, "state": "done"}
    assert got[1].data == "plain\ntext"
    # Only admins publish.
    r = a.api(pair.alice).post("/api/channels/jobs/events", {"data": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_streams_stay_safe_and_alive_through_bad_messages_silence_and_a_redis_restart(
        pair: SimpleNamespace) -> None:
    a, redis_server = pair.a, pair.redis
    reader = a.stream("/stream?channel=alerts", pair.alice)
    raw = redis_lib.Redis.from_url(redis_server.url)
    try:
        # What no flask-sse app sends, but anyone with Redis access could: dropped.
        raw.publish("alerts", json.dumps({"data": "x", "type": "a\ndata: forged"}))
        raw.publish("alerts", b"not json")
        raw.publish("alerts", json.dumps({"data": "x", "id": "1\r\nevent: forged"}))
        flask_sse_publish(redis_server.url, [{"data": "real", "type": "alert",
                                              "channel": "alerts"}])
        event = reader.next_event(WAIT)
        assert (event.event, event.data) == ("alert", "real")
        # Idle: heartbeats (CHAT_HEARTBEAT_SECONDS=1 in these servers) keep it open.
        comments = len(reader.comments)
        assert reader.wait_comments(comments + 2, timeout=WAIT)
    finally:
        raw.close()
    # Redis goes away and comes back: the hub resubscribes the channel, the stream stays.
    redis_server.kill9()
    redis_server.restart()
    deadline = time.monotonic() + WAIT
    while numsub(redis_server.url, "alerts") < 1:
        assert time.monotonic() < deadline, "the hub did not resubscribe after the restart"
        time.sleep(0.1)
    flask_sse_publish(redis_server.url, [{"data": "after", "channel": "alerts"}])
    assert reader.next_event(WAIT).data == "after"
    assert reader.connections == 1 and not reader.ended.is_set()
    with pytest.raises(StreamTimeout):
        reader.next_event(1.0)  # and nothing else: the dropped messages stayed dropped
