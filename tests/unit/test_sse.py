import json

import pytest
from sse_frames import parse_frames

from chat.sse import FrameError, encode_body, encode_comment, encode_event, encode_id


def parse(stream: bytes) -> list[dict[str, str]]:
    return [{"event": f.event, "data": f.data, "id": f.id} for f in parse_frames(stream)]


def test_event_with_id_and_data():
    frame = encode_event("message", '{"a": 1}', "7")
    assert frame == b'event: message\ndata: {"a": 1}\nid: 7\n\n'


@pytest.mark.parametrize("text", ["a\nb", "a\r\nb", "a\rb", "\n\nx\n", "line\r\n\r\nend", ""])
def test_data_with_line_breaks_arrives_as_one_event_with_the_exact_text(text):
    # Raw text (not JSON) must still round-trip: every line break becomes a data: line.
    events = parse(encode_event("message", text, "1"))
    assert len(events) == 1
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert events[0]["data"] == expected


def test_json_message_with_newlines_round_trips_exactly():
    text = "evil\n\nevent: admin\ndata: forged\r\nid: 999\n\n"
    frame = encode_event("message", json.dumps({"text": text}), "3")
    events = parse(frame)
    assert len(events) == 1
    assert events[0]["event"] == "message"
    assert events[0]["id"] == "3"
    assert json.loads(events[0]["data"])["text"] == text


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", "\n"])
def test_event_name_with_line_break_or_nul_is_refused(bad):
    with pytest.raises(FrameError):
        encode_event(bad, "x")
    with pytest.raises(FrameError):
        encode_body(bad, "x")


@pytest.mark.parametrize("bad", ["1\n", "1\r2", "1\0"])
def test_id_with_line_break_or_nul_is_refused(bad):
    with pytest.raises(FrameError):
        encode_event("message", "x", bad)
    with pytest.raises(FrameError):
        encode_id(bad)


def test_comment_cannot_break_out():
    assert encode_comment("a\nevent: x") == b": a event: x\n\n"
    assert encode_comment() == b":\n\n"


def test_retry_field():
    assert encode_event(retry_ms=2000) == b"retry: 2000\n\n"
