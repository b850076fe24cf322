"""The panel protocol codec, host and firmware side, against the vectors in PROTOCOL.md."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from display.encode import panel_protocol as pp
from display.encode.deflate import inflate_raw
from display.testing.firmware import PROTOCOL_MD, panel_board


def _hex(text: str) -> bytes:
    out = bytearray()
    for token in text.split():
        byte, _, count = token.partition("*")
        out += bytes.fromhex(byte) * (int(count) if count else 1)
    return bytes(out)


def _vectors() -> dict[str, dict[str, str]]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    found: dict[str, dict[str, str]] = {}
    for name, block in re.findall(r"```vector ([\w-]+)\n(.*?)```", text, re.S):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        found[name] = fields
    return found


VECTORS = _vectors()
MESSAGE_VECTORS = sorted(n for n, v in VECTORS.items() if "message" in v)
COBS_VECTORS = sorted(n for n in VECTORS if n.startswith("cobs-"))


def _message(spec: str) -> pp.Message:
    fields: dict[str, Any] = json.loads(spec)
    cls = getattr(pp, fields.pop("type"))
    if "firmware" in fields:
        fields["firmware"] = tuple(fields["firmware"])
    if "data" in fields:
        fields["data"] = bytes.fromhex(fields["data"])
    msg: pp.Message = cls(**fields)
    return msg


def test_the_document_has_the_promised_vectors() -> None:
    for name in ("hello-request", "hello-reply", "set-led-free", "ack", "nak", "image-chunk",
                 "cobs-zeros", "cobs-254", "crc16-check"):
        assert name in VECTORS


@pytest.mark.parametrize("name", MESSAGE_VECTORS)
def test_host_encoder_produces_the_vector_and_decoder_reads_it_back(name: str) -> None:
    vec = VECTORS[name]
    msg = _message(vec["message"])
    assert pp.encode_body(msg) == _hex(vec["body"])
    assert pp.encode_frame(msg) == _hex(vec["wire"])
    decoder = pp.FrameDecoder()
    assert list(decoder.feed(_hex(vec["wire"]))) == [msg]


@pytest.mark.parametrize("name", MESSAGE_VECTORS)
def test_firmware_reads_and_writes_the_same_bytes(name: str) -> None:
    vec = VECTORS[name]
    body = _hex(vec["body"])
    reader = panel_board.FrameReader(4096)
    [(version, kind, seq, payload, _crc)] = reader.feed(_hex(vec["wire"]))
    assert (version, kind, seq, payload) == (body[0], body[1], body[2], body[3:-2])
    assert panel_board.frame(kind, seq, payload) == _hex(vec["wire"])


@pytest.mark.parametrize("name", COBS_VECTORS)
def test_cobs_vectors_on_both_sides(name: str) -> None:
    decoded, encoded = _hex(VECTORS[name]["decoded"]), _hex(VECTORS[name]["encoded"])
    assert pp.cobs_encode(decoded) == encoded
    assert pp.cobs_decode(encoded) == decoded
    assert panel_board.cobs_encode(decoded) == encoded
    assert panel_board.cobs_decode(encoded) == decoded


def test_crc_check_value_on_both_sides() -> None:
    vec = VECTORS["crc16-check"]
    expected = int.from_bytes(_hex(vec["crc"]), "big")
    assert pp.crc16(_hex(vec["data"])) == expected == 0x29B1
    assert panel_board.crc16(_hex(vec["data"])) == expected


def test_firmware_hello_is_the_capability_vectors() -> None:
    for name, caps in (
            ("hello-caps", panel_board.Capabilities(led_count=8, width=128, height=296,
                                                    palette="bwr", max_image=16384,
                                                    firmware=(1, 1, 0))),
            ("hello-caps-boot", panel_board.Capabilities(led_count=0, width=800, height=480,
                                                         palette="bwr", max_image=16384,
                                                         delta=False, firmware=(1, 1, 0))),
            ("hello-button-boot", panel_board.Capabilities(led_count=8, width=0, height=0,
                                                           palette="none", button=True))):
        seq = _message(VECTORS[name]["message"]).seq
        assert panel_board.frame(panel_board.HELLO, seq, caps.hello_payload()) == \
            _hex(VECTORS[name]["wire"]), name


def test_legacy_hello_means_65536_bytes_and_deltas() -> None:
    old = _message(VECTORS["hello-reply"]["message"])
    new = _message(VECTORS["hello-caps-boot"]["message"])
    assert isinstance(old, pp.Hello) and isinstance(new, pp.Hello)
    assert (old.image_limit, old.takes_delta) == (65536, True)
    assert (new.image_limit, new.takes_delta) == (16384, False)


def test_out_of_memory_while_verifying_is_a_nak_and_the_board_carries_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    board = panel_board.Board(panel_board.Capabilities(width=16, height=2, palette="bwr"))
    wire = b"".join(_hex(VECTORS[n]["wire"]) for n in ("image-begin", "image-chunk"))
    board.feed(wire)

    def no_ram(*_args: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(panel_board, "open_inflater", no_ram)
    [reply] = pp.FrameDecoder().feed(b"".join(board.feed(_hex(VECTORS["image-end"]["wire"]))))
    assert reply == pp.Nak(7, pp.NakReason.NO_MEMORY)
    assert board.image is None and board.out_of_memory == 1
    [hello] = pp.FrameDecoder().feed(b"".join(board.feed(pp.encode_frame(pp.HelloRequest(8)))))
    assert isinstance(hello, pp.Hello) and hello.seq == 8


def test_a_draw_that_runs_out_of_memory_makes_the_board_say_hello_again() -> None:
    class Panel:
        calls = 0

        def show(self, source: Any, full: bool) -> None:
            Panel.calls += 1
            raise MemoryError

    board = panel_board.Board(panel_board.Capabilities(width=16, height=2, palette="bwr"),
                              Panel())
    wire = b"".join(_hex(VECTORS[n]["wire"]) for n in ("image-begin", "image-chunk", "image-end"))
    replies = list(pp.FrameDecoder().feed(b"".join(board.feed(wire))))
    # The ACK went out before the draw; then a HELLO seq 0, so the host resends everything.
    assert replies[:3] == [pp.Ack(5), pp.Ack(6), pp.Ack(7)]
    assert isinstance(replies[3], pp.Hello) and replies[3].seq == 0
    assert Panel.calls == 2  # tried again after a collection first
    assert board.base_planes == 0


def test_image_vector_decompresses_to_the_planes() -> None:
    vec = VECTORS["image-planes"]
    planes = _hex(vec["planes"])
    assert inflate_raw(_hex(vec["deflate"]), len(planes)) == planes
    assert zlib.crc32(planes) == int.from_bytes(_hex(vec["crc32"]), "big")
    stream = panel_board.open_inflater(_hex(vec["deflate"]), len(_hex(vec["deflate"])))
    out = bytearray(len(planes) + 1)
    assert panel_board.read_full(stream, out) == len(planes)
    assert bytes(out[:len(planes)]) == planes


def test_image_vector_frames_are_accepted_by_the_firmware() -> None:
    shown: list[bytes] = []

    class Panel:
        def show(self, source: Any, full: bool) -> None:
            shown.append(b"".join(bytes(r) for p in range(source.planes) for r in source.rows(p)))

    board = panel_board.Board(panel_board.Capabilities(width=16, height=2, palette="bwr"),
                              Panel())
    wire = b"".join(_hex(VECTORS[n]["wire"]) for n in ("image-begin", "image-chunk", "image-end"))
    replies = b"".join(board.feed(wire))
    assert [type(m) for m in pp.FrameDecoder().feed(replies)] == [pp.Ack] * 3
    assert shown == [_hex(VECTORS["image-planes"]["planes"])]


# -- decoder robustness ---------------------------------------------------------------------------


def test_decoder_survives_garbage_split_frames_and_bad_crc() -> None:
    good = pp.encode_frame(pp.SetLed(9, 1, 2, 3, 0, 4))
    corrupt = bytearray(pp.encode_frame(pp.Ack(5)))
    corrupt[3] ^= 0x40
    stream = b"\xde\xad\xbe\xef" + bytes(corrupt) + b"noise\x00" + good
    decoder = pp.FrameDecoder()
    out: list[pp.Message] = []
    for i in range(len(stream)):  # one byte at a time: frames split anywhere
        out += decoder.feed(stream[i:i + 1])
    assert out == [pp.SetLed(9, 1, 2, 3, 0, 4)]
    assert decoder.stats.bad_crc >= 1
    assert decoder.stats.dropped >= 2


def test_oversized_frame_is_dropped_and_counted_and_the_next_one_decodes() -> None:
    decoder = pp.FrameDecoder(max_frame=64)
    big = pp.encode_frame(pp.ImageChunk(1, 1, 0, bytes(range(1, 200))))
    small = pp.encode_frame(pp.Ack(2))
    assert list(decoder.feed(big + small)) == [pp.Ack(2)]
    assert decoder.stats.oversized == 1


def test_firmware_reader_drops_oversized_frames() -> None:
    reader = panel_board.FrameReader(64)
    big = pp.encode_frame(pp.ImageChunk(1, 1, 0, bytes(range(1, 200))))
    out = reader.feed(big + pp.encode_frame(pp.Ack(2)))
    assert [(k, s) for _v, k, s, _p, _c in out] == [(pp.MsgType.ACK, 2)]
    assert reader.oversized == 1


def test_malformed_payload_with_good_crc_is_counted_not_raised() -> None:
    body = bytes((1, pp.MsgType.SET_LED, 3, 1, 2))  # SET_LED needs 5 payload bytes
    wire = b"\x00" + pp.cobs_encode(body + pp.crc16(body).to_bytes(2, "big")) + b"\x00"
    decoder = pp.FrameDecoder()
    assert list(decoder.feed(wire)) == []
    assert decoder.stats.malformed == 1


def test_board_naks_a_malformed_command_and_an_unknown_type() -> None:
    board = panel_board.Board()
    bad = panel_board.frame(pp.MsgType.SET_LED, 3, b"\x01\x02")
    unknown = panel_board.frame(0x7E, 4, b"")
    replies = list(pp.FrameDecoder().feed(b"".join(board.feed(bad + unknown))))
    assert replies == [pp.Nak(3, pp.NakReason.MALFORMED), pp.Nak(4, pp.NakReason.UNKNOWN_TYPE)]


def test_board_answers_a_duplicate_without_applying_it_twice() -> None:
    board = panel_board.Board()
    frame = pp.encode_frame(pp.SetLed(8, 255, 0, 0, 0, 100))
    first, again = board.feed(frame), board.feed(frame)
    assert first == again
    assert board.led_version == 1
    assert board.duplicates == 1


def test_codec_round_trip_over_pyserial_loop() -> None:
    port = serial.serial_for_url("loop://", timeout=0.5)
    try:
        msgs: list[pp.Message] = [pp.HelloRequest(1), pp.SetLed(2, 10, 20, 30, 1, 255),
                                  pp.ImageChunk(3, 9, 512, bytes(300))]
        for m in msgs:
            port.write(pp.encode_frame(m))
        wire = port.read(sum(len(pp.encode_frame(m)) for m in msgs))
        assert list(pp.FrameDecoder().feed(wire)) == msgs
    finally:
        port.close()


def _host_messages_are_valid(data: bytes, chunk: int) -> None:
    decoder = pp.FrameDecoder(max_frame=512)
    for i in range(0, len(data), chunk):
        for msg in decoder.feed(data[i:i + chunk]):
            # Re-encoding must give a frame whose CRC checks: nothing with a bad CRC came out.
            body = pp.encode_body(msg)
            assert pp.crc16(body[:-2]) == int.from_bytes(body[-2:], "big")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(1, 64))
def test_random_bytes_never_break_the_host_decoder(data: bytes, chunk: int) -> None:
    _host_messages_are_valid(data, chunk)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(1, 64))
def test_random_bytes_never_break_the_firmware(data: bytes, chunk: int) -> None:
    board = panel_board.Board()
    for i in range(0, len(data), chunk):
        for reply in board.feed(data[i:i + chunk]):
            assert list(pp.FrameDecoder().feed(reply))  # every reply is a valid frame


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(min_size=1, max_size=600), max_size=5),
       noise=st.binary(max_size=50))
def test_valid_frames_survive_noise_between_them(frames: list[bytes], noise: bytes) -> None:
    msgs = [pp.ImageChunk(i + 1, 1, 0, f) for i, f in enumerate(frames)]
    stream = noise + b"".join(pp.encode_frame(m) + noise.replace(b"\x00", b"") for m in msgs)
    got = list(pp.FrameDecoder().feed(stream))
    assert got[-len(msgs):] == msgs if msgs else True
    fw = panel_board.FrameReader(4096).feed(stream)
    assert [p[3][6:] for p in fw][-len(msgs):] == frames if msgs else True


# -- the check-in button (PROTOCOL.md section 4a) ---------------------------------------------


def test_a_board_with_a_button_says_so_in_hello_and_one_without_does_not() -> None:
    with_button = _message(VECTORS["hello-button-boot"]["message"])
    without = _message(VECTORS["hello-caps-boot"]["message"])
    assert isinstance(with_button, pp.Hello) and isinstance(without, pp.Hello)
    assert (with_button.has_button, without.has_button) == (True, False)
    assert not _message(VECTORS["hello-reply"]["message"]).has_button  # type: ignore[union-attr]


def test_a_button_frame_with_an_unknown_press_is_refused_by_the_host_codec() -> None:
    body = bytes((1, pp.MsgType.BUTTON, 1, 7))
    with pytest.raises(pp.ProtocolError, match="unknown press 7"):
        pp.decode_body(body + pp.crc16(body).to_bytes(2, "big"))


def test_the_board_sends_a_press_again_until_the_host_acks_it() -> None:
    board = panel_board.Board(panel_board.Capabilities(button=True))
    first = board.press(panel_board.PRESS_CHECK_IN, 1000)
    assert first == _hex(VECTORS["button-check-in"]["wire"])
    assert board.button_due(1499) is None  # not before 0.5 s
    assert board.button_due(1500) == first  # the same frame, the same seq
    # An ACK of another seq (a stale one) changes nothing; no reply goes out for any ACK.
    assert board.feed(pp.encode_frame(pp.Ack(9))) == []
    assert board.button_due(2000) == first
    assert board.feed(pp.encode_frame(pp.Ack(1))) == []
    assert board.button_acked == 1
    assert board.button_due(9000) is None


def test_the_board_gives_a_press_up_after_eight_sends_and_a_newer_press_wins() -> None:
    board = panel_board.Board(panel_board.Capabilities(button=True))
    board.press(panel_board.PRESS_CHECK_IN, 0)
    sends = 1 + sum(board.button_due(t) is not None for t in range(500, 10_000, 500))
    assert (sends, board.button_lost, board.button_acked) == (8, 1, 0)
    fresh = panel_board.Board(panel_board.Capabilities(button=True))
    fresh.press(panel_board.PRESS_CHECK_IN, 0)
    newer = fresh.press(panel_board.PRESS_END, 100)
    assert newer == _hex(VECTORS["button-end"]["wire"])  # seq 2: the board's own counter
    assert fresh.button_due(600) == newer  # the check-in waiting before it is not sent again


def _presses(reader: object, timeline: list[tuple[int, bool]], until: int) -> list[int]:
    """Feed ``(ms, pressed)`` level changes to a ButtonReader polled every 5 ms."""
    levels = dict(timeline)
    pressed, out = False, []
    for now in range(0, until, 5):
        pressed = levels.get(now, pressed)
        got = reader.update(pressed, now)  # type: ignore[attr-defined]
        if got:
            out.append((now, got))
    return out


def test_button_reader_short_long_and_bounce() -> None:
    short, end = panel_board.PRESS_CHECK_IN, panel_board.PRESS_END
    # A short press is reported when it is released (after the 30 ms debounce).
    assert _presses(panel_board.ButtonReader(), [(100, True), (400, False)], 1000) == \
        [(430, short)]
    # A long press is reported at 3 s while still held, and its release reports nothing.
    got = _presses(panel_board.ButtonReader(), [(100, True), (5000, False)], 6000)
    assert [p for _t, p in got] == [end] and 3100 <= got[0][0] <= 3135
    # Contact bounce (10 ms spikes) is not a press; a press 2.9 s long is still a short one.
    bounce = [(100, True), (110, False), (200, True), (210, False)]
    assert _presses(panel_board.ButtonReader(), bounce, 1000) == []
    got = _presses(panel_board.ButtonReader(), [(100, True), (3000, False)], 4000)
    assert [p for _t, p in got] == [short]
