import pytest

from chat.cursor import (
    CursorError,
    decode_positions,
    decode_seq,
    encode_positions,
    encode_seq,
)


@pytest.mark.parametrize(
    "positions",
    [{1: 0}, {1: 5, 2: 0, 35: 36, 36: 1295}, {10**9: 10**12, 3: 7}],
)
def test_positions_round_trip(positions):
    cursor = encode_positions(positions)
    assert decode_positions(cursor) == positions
    assert "\n" not in cursor and " " not in cursor


def test_positions_are_compact_and_sorted():
    assert encode_positions({2: 35, 1: 36}) == "1.10_2.z"


@pytest.mark.parametrize(
    "bad", ["", "x", "1", "1.", ".1", "1.2_", "1.2__3.4", "1.2_1.3", "A.1", "1.-1", "1.2 3.4",
            "1" * 13 + ".1", "é.1", "1.2_" * 3000]
)
def test_malformed_positions_raise(bad):
    with pytest.raises(CursorError):
        decode_positions(bad)


def test_seq_round_trip():
    assert decode_seq(encode_seq(0)) == 0
    assert decode_seq(encode_seq(12345)) == 12345


@pytest.mark.parametrize("bad", ["", "-1", "1.0", "abc", "1_0", "٣", "9" * 19, " 1"])
def test_malformed_seq_raises(bad):
    with pytest.raises(CursorError):
        decode_seq(bad)


def test_positions_keep_their_cursor_in_step():
    from chat.cursor import Positions

    positions = Positions({5: 1, 2: 0})
    assert positions.encode() == encode_positions({5: 1, 2: 0}) == "2.0_5.1"
    positions[5] = 40
    positions[1] = 7
    assert positions.encode() == encode_positions(dict(positions)) == "1.7_2.0_5.14"
    assert positions.pop(2) == 0
    assert positions.pop(99, None) is None
    assert positions.encode() == "1.7_5.14"
    assert decode_positions(positions.encode()) == {1: 7, 5: 40}
