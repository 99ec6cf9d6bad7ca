"""Seq assignment: dense, unique, per channel, in commit order."""

import threading

import pytest
from sqlalchemy import select

from chat import accounts, timeline
from chat.models import Channel, Event
from chat.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'seq.db'}")
    store.create_all()
    with store.write() as s:
        user = accounts.create_user(s, "alice", None)
        s.add_all([Channel(name="room:a", kind="room"), Channel(name="room:b", kind="room")])
        s.flush()
        ids = {c.name: c.id for c in s.scalars(select(Channel))}
    store.user_id = user.id
    store.ids = ids
    yield store
    store.dispose()


def append(store, name, text="x"):
    with store.write() as s:
        channel = s.get(Channel, store.ids[name])
        return timeline.append(s, channel, "message", None, text)


def seqs(store, name):
    with store.read() as s:
        return list(s.scalars(select(Event.seq).where(Event.channel_id == store.ids[name])
                              .order_by(Event.id)))


def test_seq_is_dense_per_channel(store):
    assert [append(store, "room:a").seq for _ in range(3)] == [1, 2, 3]
    assert append(store, "room:b").seq == 1
    assert append(store, "room:a").seq == 4
    with store.read() as s:
        assert s.get(Channel, store.ids["room:a"]).last_seq == 4


def test_a_rolled_back_append_leaves_no_gap(store):
    append(store, "room:a")
    with pytest.raises(RuntimeError), store.write() as s:
        timeline.append(s, s.get(Channel, store.ids["room:a"]), "message", None, "lost")
        raise RuntimeError("fail after the seq was taken")
    assert append(store, "room:a").seq == 2
    assert seqs(store, "room:a") == [1, 2]


def test_concurrent_appends_from_threads_and_a_second_engine(store, tmp_path):
    # A second Store on the same file stands for another process: its writes meet the
    # first one's at SQLite's lock, not at the in-process lock.
    other = Store(store.url)
    other.ids = store.ids
    errors = []

    def work(target):
        try:
            for _ in range(25):
                append(target, "room:a")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(store if i % 2 else other,))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.dispose()
    assert errors == []
    got = seqs(store, "room:a")
    assert sorted(got) == list(range(1, 201))
    # Row ids grow in commit order here, so seq order is commit order.
    assert got == sorted(got)


def test_read_after_pages_in_seq_order(store):
    for i in range(10):
        append(store, "room:a", f"m{i}")
    with store.read() as s:
        page = timeline.read_after(s, store.ids["room:a"], "room:a", 3, 4)
        newest = timeline.read_after(s, store.ids["room:a"], "room:a", 0, 3, newest=True)
        heads = timeline.heads(s, [store.ids["room:a"], store.ids["room:b"]])
    assert [e.seq for e in page] == [4, 5, 6, 7]
    assert [e.to_dict()["text"] for e in page] == ["m3", "m4", "m5", "m6"]
    assert [e.seq for e in newest] == [8, 9, 10]
    assert heads == {store.ids["room:a"]: 10, store.ids["room:b"]: 0}
