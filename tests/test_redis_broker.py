"""RedisBroker against a real redis-server: confirmation, delivery, reconnect, unsubscribe."""

import threading
import time

import pytest

from chat.broker import RedisBroker


class Inbox:
    def __init__(self):
        self.messages = []
        self.reconnects = 0
        self.cond = threading.Condition()

    def on_message(self, channel, payload):
        with self.cond:
            self.messages.append((channel, payload))
            self.cond.notify_all()

    def on_reconnect(self):
        with self.cond:
            self.reconnects += 1
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


@pytest.fixture
def broker_and_inbox(redis_server):
    broker = RedisBroker(redis_server.url, health_seconds=0.5, max_backoff=0.5)
    inbox = Inbox()
    broker.bind(inbox.on_message, inbox.on_reconnect)
    yield broker, inbox
    broker.close()


def test_subscribe_is_confirmed_then_delivers(broker_and_inbox):
    broker, inbox = broker_and_inbox
    assert broker.subscribe(["chat:a", "chat:b"]).wait(5)
    broker.publish("chat:a", b"one")
    broker.publish("chat:c", b"not subscribed")
    broker.publish("chat:b", b"two")
    assert inbox.wait_for(lambda: len(inbox.messages) == 2)
    assert inbox.messages == [("chat:a", b"one"), ("chat:b", b"two")]


def test_unsubscribe_stops_delivery(broker_and_inbox):
    broker, inbox = broker_and_inbox
    assert broker.subscribe(["chat:a", "chat:b"]).wait(5)
    broker.unsubscribe(["chat:a"])
    broker.publish("chat:a", b"gone")
    broker.publish("chat:b", b"marker")
    assert inbox.wait_for(lambda: inbox.messages)
    assert inbox.messages == [("chat:b", b"marker")]


def test_one_subscriber_connection_per_process(broker_and_inbox, redis_server):
    import redis

    broker, _ = broker_and_inbox
    assert broker.subscribe([f"chat:room{i}" for i in range(50)]).wait(5)
    admin = redis.Redis.from_url(redis_server.url)
    clients = [c for c in admin.client_list() if int(c.get("sub", 0)) > 0]
    admin.close()
    assert len(clients) == 1 and int(clients[0]["sub"]) == 50


def test_reconnects_after_a_restart_and_resubscribes(broker_and_inbox, redis_server):
    broker, inbox = broker_and_inbox
    assert broker.subscribe(["chat:a"]).wait(5)
    assert inbox.wait_for(lambda: inbox.reconnects >= 1)  # the first connection counts
    before = inbox.reconnects
    redis_server.kill9()
    with pytest.raises(Exception):  # noqa: B017 - any redis error will do
        broker.publish("chat:a", b"lost while down")
    redis_server.start()
    assert inbox.wait_for(lambda: inbox.reconnects > before, timeout=15)
    assert broker.reconnects >= 1
    broker.publish("chat:a", b"after restart")
    assert inbox.wait_for(lambda: ("chat:a", b"after restart") in inbox.messages)
    assert ("chat:a", b"lost while down") not in inbox.messages


def test_subscribe_while_redis_is_down_times_out_then_recovers(redis_server):
    redis_server.kill9()
    broker = RedisBroker(redis_server.url, health_seconds=0.5, max_backoff=0.3)
    inbox = Inbox()
    broker.bind(inbox.on_message, inbox.on_reconnect)
    try:
        assert broker.subscribe(["chat:a"]).wait(0.5) is False
        redis_server.start()
        assert inbox.wait_for(lambda: inbox.reconnects >= 1, timeout=15)
        broker.publish("chat:a", b"hello")
        assert inbox.wait_for(lambda: inbox.messages == [("chat:a", b"hello")])
    finally:
        broker.close()


def test_health_checks_notice_a_silent_server(redis_server):
    import signal

    broker = RedisBroker(redis_server.url, health_seconds=0.3, max_backoff=0.3)
    inbox = Inbox()
    broker.bind(inbox.on_message, inbox.on_reconnect)
    try:
        assert broker.subscribe(["chat:a"]).wait(5)
        assert inbox.wait_for(lambda: inbox.reconnects >= 1)
        # A frozen server keeps the TCP connection open but answers nothing: only the
        # listener's own PINGs can tell.
        redis_server.proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        redis_server.proc.send_signal(signal.SIGCONT)
        assert inbox.wait_for(lambda: broker.reconnects >= 1, timeout=15)
        assert inbox.wait_for(lambda: inbox.reconnects >= 2, timeout=15)
        broker.publish("chat:a", b"after the freeze")
        assert inbox.wait_for(lambda: ("chat:a", b"after the freeze") in inbox.messages)
    finally:
        broker.close()
