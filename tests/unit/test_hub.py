"""The hub with the in-process broker (a unit test of the fan-out; Redis is tested apart)."""

import json

from chat.broker import MemoryBroker
from chat.hub import SYNC, Control, Hub, LiveEvent, Subscriber, pack


class RecordingBroker(MemoryBroker):
    def __init__(self):
        super().__init__()
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []

    def subscribe(self, channels):
        channels = [c for c in channels if c not in self._channels]
        self.subscribed.extend(channels)
        return super().subscribe(channels)

    def unsubscribe(self, channels):
        channels = list(channels)
        self.unsubscribed.extend(channels)
        super().unsubscribe(channels)


def make_hub(heads=None):
    broker = RecordingBroker()
    hub = Hub(broker, heads or (lambda ids: {}), resync_seconds=0, background=False)
    broker.subscribe(["chat:_control"])
    return broker, hub


def publish(broker, channel, seq, text="x", cid=1):
    data = json.dumps({"channel": channel, "seq": seq, "text": text})
    broker.publish("chat:" + channel, pack(channel, cid, seq, "message", data))


def test_one_broker_subscription_per_channel_and_unsubscribe_after_the_last():
    broker, hub = make_hub()
    subs = [Subscriber(max_queue=10) for _ in range(3)]
    for sub in subs:
        hub.attach(sub, {"room:a": 1})
    assert broker.subscribed.count("chat:room:a") == 1
    hub.detach(subs[0])
    hub.detach(subs[1])
    assert "chat:room:a" not in broker.unsubscribed
    hub.detach(subs[2])
    assert broker.unsubscribed == ["chat:room:a"]
    assert hub.connection_count() == 0
    hub.shutdown()


def test_each_event_is_encoded_once_for_every_subscriber():
    broker, hub = make_hub()
    subs = [Subscriber(max_queue=10) for _ in range(50)]
    for sub in subs:
        hub.attach(sub, {"room:a": 1})
    publish(broker, "room:a", 1, "hello\nthere")
    events = [sub.take(0)[0] for sub in subs]
    assert all(isinstance(e, LiveEvent) for e in events)
    assert len({id(e) for e in events}) == 1  # the very same object
    frames = {id(e.frame()) for e in events}
    assert len(frames) == 1
    assert events[0].frame().endswith(b"id: 1\n\n")
    assert b"data: " in events[0].body and b"\n\n" not in events[0].body
    hub.shutdown()


def test_only_subscribed_channels_are_delivered():
    broker, hub = make_hub()
    a, b = Subscriber(max_queue=10), Subscriber(max_queue=10)
    hub.attach(a, {"room:a": 1})
    hub.attach(b, {"room:b": 2})
    publish(broker, "room:a", 1)
    assert len(a.take(0)) == 1 and b.take(0) == []
    hub.shutdown()


def test_a_full_queue_drops_only_that_subscriber():
    broker, hub = make_hub()
    slow, fast = Subscriber(max_queue=3), Subscriber(max_queue=100)
    hub.attach(slow, {"room:a": 1})
    hub.attach(fast, {"room:a": 1})
    for seq in range(1, 11):
        publish(broker, "room:a", seq)
        fast.take(0)
    assert slow.closed and slow.close_reason == "slow_client"
    assert not fast.closed
    assert hub.slow_clients_dropped == 1
    hub.shutdown()


def test_malformed_payloads_are_dropped():
    broker, hub = make_hub()
    sub = Subscriber(max_queue=10)
    hub.attach(sub, {"room:a": 1})
    for payload in (b"", b"not json\n{}", b'{"ch": "room:a"}\n{}',
                    b'{"ch":"room:a","t":"bad\\nname"}\n'):
        broker.publish("chat:room:a", payload)
    assert sub.take(0) == []
    hub.shutdown()


def test_control_messages_reach_streams_and_revocation_ends_them():
    broker, hub = make_hub()
    a = Subscriber(max_queue=10, credential_key="k1")
    b = Subscriber(max_queue=10, credential_key="k2")
    hub.attach(a, {"user:alice": 1})
    hub.attach(b, {"user:alice": 1})
    broker.publish("chat:user:alice", pack("user:alice", None, None, "_control",
                                           json.dumps({"op": "join", "channel": "room:x"})))
    item = a.take(0)[0]
    assert isinstance(item, Control) and item.op == "join" and item.args["channel"] == "room:x"
    broker.publish("chat:_control", pack("_control", None, None, "_control",
                                         json.dumps({"op": "end_credential", "key_id": "k1"})))
    assert a.closed and a.close_reason == "revoked"
    assert not b.closed
    hub.shutdown()


def test_reconnect_asks_every_stream_to_catch_up():
    broker, hub = make_hub()
    subs = [Subscriber(max_queue=10) for _ in range(3)]
    for sub in subs:
        hub.attach(sub, {"room:a": 1})
    broker.on_reconnect()
    assert all(sub.take(0) == [SYNC] for sub in subs)
    hub.shutdown()


def test_sweep_catches_up_channels_the_broker_fell_behind_on():
    heads = {1: 5, 2: 0}
    broker, hub = make_hub(lambda ids: {i: heads[i] for i in ids})
    hub.resync_seconds = 0.001
    a, b = Subscriber(max_queue=10), Subscriber(max_queue=10)
    hub.attach(a, {"room:a": 1})
    hub.attach(b, {"room:b": 2})
    hub.sweep()
    assert a.take(0) == [SYNC] and b.take(0) == []
    hub._last_resync = 0
    hub.sweep()  # nothing new since: no second catch-up
    assert a.take(0) == []
    hub.shutdown()


def test_sweep_cuts_a_stream_whose_write_is_stuck():
    broker, hub = make_hub()
    hub.write_timeout = 0.01
    sub = Subscriber(max_queue=10)
    hub.attach(sub, {"room:a": 1})
    sub.write_started = 1.0  # long ago on the monotonic clock
    hub.sweep()
    assert sub.closed and sub.close_reason == "write_timeout"
    hub.shutdown()


def test_shutdown_ends_every_stream():
    broker, hub = make_hub()
    subs = [Subscriber(max_queue=10) for _ in range(3)]
    for sub in subs:
        hub.attach(sub, {"room:a": 1})
    hub.shutdown()
    assert all(s.closed and s.close_reason == "shutdown" for s in subs)
    assert hub.closing


def test_sweep_wakes_streams_that_owe_a_heartbeat():
    broker, hub = make_hub()
    hub.heartbeat = 10.0
    due, fresh = Subscriber(max_queue=10), Subscriber(max_queue=10)
    hub.attach(due, {"room:a": 1})
    hub.attach(fresh, {"room:a": 1})
    due.last_write -= 11.0
    hub.sweep()
    assert due.wakeup.is_set() and not fresh.wakeup.is_set()
    assert due.take(0) == []  # woken with nothing queued: the stream writes a heartbeat
    hub.shutdown()


def test_a_second_stream_also_waits_for_the_first_ones_confirmation():
    import threading

    from chat.broker import Confirmation

    confirmed = threading.Event()

    class SlowBroker(MemoryBroker):
        def subscribe(self, channels):
            super().subscribe(channels)
            return Confirmation([confirmed])

    hub = Hub(SlowBroker(), lambda ids: {}, resync_seconds=0, background=False)
    done = []

    def attach(sub):
        hub.attach(sub, {"room:a": 1})
        done.append(sub)

    first, second = Subscriber(max_queue=10), Subscriber(max_queue=10)
    threads = [threading.Thread(target=attach, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    threads[0].join(0.3)
    assert done == []  # neither may catch up before the broker delivers the channel
    confirmed.set()
    for t in threads:
        t.join(5)
    assert set(done) == {first, second}
    hub.shutdown()
