"""The test client's own event-stream parser, checked against the HTML standard's rules."""

from __future__ import annotations

import pytest

from .sse_client import Comment, Event, EventStreamParser

pytestmark = pytest.mark.e2e


def feed_all(chunks: list[bytes], parser: EventStreamParser | None = None) -> list[Event | Comment]:
    p = parser or EventStreamParser()
    out: list[Event | Comment] = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def events(items: list[Event | Comment]) -> list[Event]:
    return [i for i in items if isinstance(i, Event)]


def test_fields_multiline_data_and_comments() -> None:
    items = feed_all([b": hello\nretry: 3000\n\nevent: ready\nid: 7\ndata: {\"a\":\ndata: 1}\n\n"])
    assert isinstance(items[0], Comment) and items[0].text == " hello"
    (ev,) = events(items)
    assert (ev.event, ev.id, ev.last_event_id, ev.data) == ("ready", "7", "7", '{"a":\n1}')


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    raw = b"data: x" + eol + b"data: y" + eol + eol + b"data: z" + eol + eol
    # byte at a time, so a CR and its LF always land in different reads
    got = events(feed_all([raw[i : i + 1] for i in range(len(raw))]))
    assert [e.data for e in got] == ["x\ny", "z"]
    assert [e.event for e in got] == ["message", "message"]


def test_crlf_split_across_reads_is_one_line_end() -> None:
    got = events(feed_all([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]))
    assert [e.data for e in got] == ["a\nb"]


def test_id_persists_and_space_stripping() -> None:
    got = events(feed_all([b"id:5\ndata:x\n\ndata:  y\n\nid\ndata\n\n"]))
    assert [(e.id, e.last_event_id, e.data) for e in got] == [
        ("5", "5", "x"),
        (None, "5", " y"),
        ("", "", ""),
    ]


def test_no_dispatch_without_data_and_unknown_fields_ignored() -> None:
    items = feed_all([b"event: x\nid: 3\n\nfoo: bar\nevent: y\ndata: 1\n\n"])
    (ev,) = events(items)
    assert (ev.event, ev.id, ev.last_event_id, ev.data) == ("y", None, "3", "1")


def test_retry_only_digits_and_nul_in_id_ignored() -> None:
    p = EventStreamParser()
    feed_all([b"retry: 12a\nretry: 250\nid: a\x00b\ndata: q\n\n"], p)
    assert p.retry == 250
    assert p.last_event_id == ""


def test_bom_and_utf8_split_across_reads() -> None:
    raw = "\ufeffdata: ünï 😀\n\n".encode()
    got = events(feed_all([raw[i : i + 1] for i in range(len(raw))]))
    assert [e.data for e in got] == ["ünï 😀"]


def test_incomplete_event_is_not_dispatched() -> None:
    assert events(feed_all([b"data: partial\n"])) == []
