"""Raw deflate, 512-byte window: one compressor for the serial and the MQTT image payloads."""

from __future__ import annotations

import zlib

import pytest

from display.encode.deflate import deflate_raw, inflate_raw
from display.outputs import hex_colour, parse_hex


def test_round_trip_and_the_window_the_boards_can_hold() -> None:
    data = b"\x00\x0f\xf0" * 3000 + bytes(range(256))  # a plane: runs, then detail
    packed = deflate_raw(data)
    assert len(packed) < len(data)
    assert inflate_raw(packed, len(data)) == data
    # A board inflates with a 512-byte window: the stream must decode with wbits=-9.
    assert zlib.decompressobj(-9).decompress(packed) == data


@pytest.mark.parametrize(("stream", "expected", "message"), [
    (b"\xff\xff\xff", 100, "does not decompress"),
    (deflate_raw(b"x" * 100), 10, "decompresses to 11 bytes, expected 10"),  # a bomb stops early
    (deflate_raw(b"x" * 100)[:-2], 100, "expected 100"),  # truncated: no end of stream
])
def test_bad_streams_are_refused_with_a_reason(stream: bytes, expected: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inflate_raw(stream, expected)


def test_hex_colours_round_trip() -> None:
    assert parse_hex("#00c0ff") == (0, 192, 255)
    assert parse_hex("00C0FF") == (0, 192, 255)
    assert hex_colour((0, 192, 255)) == "#00c0ff"
