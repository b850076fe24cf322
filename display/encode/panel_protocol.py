"""The serial ``panel`` protocol: a pure codec, no I/O (``hardware/PROTOCOL.md`` is the spec).

A frame on the wire is ``00 COBS(body) 00``; the body is ``version, type, seq, payload...,
crc16`` with CRC-16/CCITT-FALSE (``binascii.crc_hqx(data, 0xFFFF)``) sent big-endian. Multi-byte
payload fields are little-endian. :class:`FrameDecoder` turns an arbitrary byte stream (garbage,
split frames, oversized frames) into messages and counts what it had to drop.

The firmware in ``hardware/firmware/panel_board.py`` has its own, MicroPython-friendly copy of
this codec; the tests check both against the vectors in PROTOCOL.md.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from display.errors import DeviceError

PROTOCOL_VERSION = 1
HEADER_LEN = 3  # version, type, seq
CRC_LEN = 2
OVERHEAD = HEADER_LEN + CRC_LEN
MIN_MAX_FRAME = 64
HOST_MAX_FRAME = 4096


class ProtocolError(DeviceError):
    """A frame or payload that does not follow PROTOCOL.md."""


class CrcError(ProtocolError):
    """A frame whose CRC-16 does not match its body (line noise, not a peer speaking wrongly)."""


class MsgType(IntEnum):
    """The ``type`` byte of a frame."""

    HELLO_REQUEST = 0x01
    HELLO = 0x02
    ACK = 0x03
    NAK = 0x04
    SET_LED = 0x10
    IMAGE_BEGIN = 0x20
    IMAGE_CHUNK = 0x21
    IMAGE_END = 0x22
    BUTTON = 0x30


class NakReason(IntEnum):
    """Why the board refused a request (payload byte of a NAK)."""

    UNKNOWN_TYPE = 1
    MALFORMED = 2
    BAD_VERSION = 3
    NO_IMAGE = 4
    BAD_OFFSET = 5
    BAD_CHECKSUM = 6
    UNSUPPORTED = 7
    NO_HARDWARE = 8
    TOO_LARGE = 9
    NO_MEMORY = 10
    BUSY = 11


class Press(IntEnum):
    """The payload byte of BUTTON: what the person at the door asked for."""

    CHECK_IN = 1  # a short press
    END = 2  # held 3 s: the meeting is over, free the room


class LedEffect(IntEnum):
    """The effect byte of SET_LED."""

    STEADY = 0
    BLINK = 1
    PULSE = 2


PALETTES = {0: "none", 1: "bw", 2: "bwr"}
PALETTE_CODES = {name: code for code, name in PALETTES.items()}
FLAG_FULL_REFRESH = 0x01
FLAG_DELTA = 0x02  # the stream is XOR of the new planes with the planes the board shows now
FEATURE_DELTA = 0x01  # HELLO features: the board keeps the planes shown and accepts deltas
FEATURE_BUTTON = 0x02  # HELLO features: a check-in button is fitted (BUTTON frames may come)
# What a firmware 1.0 HELLO (14 bytes, no capability fields) implies.
LEGACY_MAX_IMAGE = 65536


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloRequest:
    """Host → board: announce yourself (sent after every open)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Hello:
    """Board → host: capabilities. ``seq`` echoes the HELLO_REQUEST, or 0 when sent after boot."""

    seq: int
    protocol: int
    firmware: tuple[int, int, int]
    led_count: int
    width: int
    height: int
    palette: str  # "none" | "bw" | "bwr"
    max_frame: int
    # Firmware >= 1.1 appends these; ``None`` encodes the 14-byte HELLO of firmware 1.0.
    max_image: int | None = None
    features: int | None = None

    @property
    def image_limit(self) -> int:
        """Largest compressed image the board takes (IMAGE_BEGIN ``length``)."""
        return LEGACY_MAX_IMAGE if self.max_image is None else self.max_image

    @property
    def takes_delta(self) -> bool:
        """Whether the board keeps the planes shown, so a delta can go to it."""
        return self.features is None or bool(self.features & FEATURE_DELTA)

    @property
    def has_button(self) -> bool:
        """Whether the board has a check-in button (firmware 1.2 and later announce it)."""
        return bool(self.features and self.features & FEATURE_BUTTON)

    @property
    def firmware_version(self) -> str:
        return ".".join(str(p) for p in self.firmware)

    def describe(self) -> str:
        """Short human description, e.g. ``296x128 bwr, 8 LEDs, firmware 1.0.0``."""
        panel = "no panel"
        if self.palette != "none":
            panel = f"{self.width}x{self.height} {self.palette}"
        return f"{panel}, {self.led_count} LEDs, firmware {self.firmware_version}"


@dataclass(frozen=True, slots=True)
class Ack:
    """The request with this ``seq`` is done (or was a harmless duplicate): board → host for
    the host's requests, host → board for the board's BUTTON."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nak:
    """Board → host: the request with this ``seq`` was refused; ``reason`` says why."""

    seq: int
    reason: int

    @property
    def reason_name(self) -> str:
        try:
            return NakReason(self.reason).name
        except ValueError:
            return f"reason {self.reason}"


@dataclass(frozen=True, slots=True)
class SetLed:
    """Host → board: the LEDs' desired state (idempotent)."""

    seq: int
    r: int
    g: int
    b: int
    effect: int
    brightness: int


@dataclass(frozen=True, slots=True)
class ImageBegin:
    """Host → board: an image of ``length`` compressed bytes follows in chunks."""

    seq: int
    image_id: int
    width: int
    height: int
    planes: int
    full_refresh: bool
    length: int
    crc32: int
    delta: bool = False


@dataclass(frozen=True, slots=True)
class ImageChunk:
    """Host → board: ``data`` goes at ``offset`` in the compressed image ``image_id``."""

    seq: int
    image_id: int
    offset: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ImageEnd:
    """Host → board: image complete; verify, decompress and show it."""

    seq: int
    image_id: int


@dataclass(frozen=True, slots=True)
class Button:
    """Board → host: the check-in button was pressed. ``seq`` is the board's own (1-255); the
    host answers ACK with it, and a resend with the same ``seq`` is not a second press."""

    seq: int
    press: int  # a :class:`Press` value


Message = (HelloRequest | Hello | Ack | Nak | SetLed | ImageBegin | ImageChunk | ImageEnd
           | Button)

_HELLO = struct.Struct("<B3BHHHBH")
_HELLO_CAPS = struct.Struct("<IB")  # max_image, features (firmware >= 1.1)
_NAK = struct.Struct("<B")
_SET_LED = struct.Struct("<5B")
_BEGIN = struct.Struct("<HHHBBII")
_CHUNK_HEAD = struct.Struct("<HI")
_END = struct.Struct("<H")
_BUTTON = struct.Struct("<B")


# -- COBS and CRC --------------------------------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` without any zero byte (canonical form)."""
    out = bytearray()
    chunks = data.split(b"\x00")
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        full_blocks = len(chunk) // 254
        for k in range(full_blocks):
            out.append(0xFF)
            out += chunk[k * 254:(k + 1) * 254]
        rest = chunk[full_blocks * 254:]
        # A last chunk that ended exactly on a 254-byte block needs no terminating code byte.
        if i == last and chunk and not rest:
            break
        out.append(len(rest) + 1)
        out += rest
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raise :class:`ProtocolError` on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ProtocolError("COBS: block runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError("COBS: zero byte inside a frame")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0; check 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def max_encoded_len(max_frame: int) -> int:
    """Longest COBS encoding of a body of ``max_frame`` bytes (delimiters excluded)."""
    return max_frame + max_frame // 254 + 1


# -- encoding ------------------------------------------------------------------------------------


def _payload(msg: Message) -> tuple[MsgType, bytes]:
    if isinstance(msg, HelloRequest):
        return MsgType.HELLO_REQUEST, b""
    if isinstance(msg, Hello):
        payload = _HELLO.pack(
            msg.protocol, *msg.firmware, msg.led_count, msg.width, msg.height,
            PALETTE_CODES[msg.palette], msg.max_frame)
        if msg.max_image is not None:
            payload += _HELLO_CAPS.pack(msg.max_image, msg.features or 0)
        return MsgType.HELLO, payload
    if isinstance(msg, Ack):
        return MsgType.ACK, b""
    if isinstance(msg, Nak):
        return MsgType.NAK, _NAK.pack(msg.reason)
    if isinstance(msg, SetLed):
        return MsgType.SET_LED, _SET_LED.pack(msg.r, msg.g, msg.b, msg.effect, msg.brightness)
    if isinstance(msg, ImageBegin):
        return MsgType.IMAGE_BEGIN, _BEGIN.pack(
            msg.image_id, msg.width, msg.height, msg.planes,
            (FLAG_FULL_REFRESH if msg.full_refresh else 0) | (FLAG_DELTA if msg.delta else 0),
            msg.length, msg.crc32)
    if isinstance(msg, ImageChunk):
        return MsgType.IMAGE_CHUNK, _CHUNK_HEAD.pack(msg.image_id, msg.offset) + msg.data
    if isinstance(msg, Button):
        return MsgType.BUTTON, _BUTTON.pack(msg.press)
    return MsgType.IMAGE_END, _END.pack(msg.image_id)


def encode_body(msg: Message) -> bytes:
    """The unstuffed body of ``msg``: header, payload, CRC-16 (big-endian)."""
    if not 0 <= msg.seq <= 255:
        raise ValueError(f"seq must be 0-255, got {msg.seq}")
    kind, payload = _payload(msg)
    body = bytes((PROTOCOL_VERSION, kind, msg.seq)) + payload
    return body + crc16(body).to_bytes(2, "big")


def encode_frame(msg: Message) -> bytes:
    """``msg`` as it goes on the wire: ``00 COBS(body) 00``."""
    return b"\x00" + cobs_encode(encode_body(msg)) + b"\x00"


# -- decoding ------------------------------------------------------------------------------------


def _need(payload: bytes, size: int, kind: MsgType) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{kind.name}: payload is {len(payload)} bytes, expected {size}")


def decode_body(body: bytes) -> Message:
    """Parse an unstuffed body (CRC included); raise :class:`ProtocolError` if it is bad."""
    if len(body) < OVERHEAD:
        raise ProtocolError(f"frame too short ({len(body)} bytes)")
    if crc16(body[:-CRC_LEN]) != int.from_bytes(body[-CRC_LEN:], "big"):
        raise CrcError("bad CRC")
    version, kind_byte, seq = body[0], body[1], body[2]
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version}, expected {PROTOCOL_VERSION}")
    payload = body[HEADER_LEN:-CRC_LEN]
    try:
        kind = MsgType(kind_byte)
    except ValueError:
        raise ProtocolError(f"unknown message type 0x{kind_byte:02x}") from None
    if kind is MsgType.HELLO_REQUEST:
        _need(payload, 0, kind)
        return HelloRequest(seq)
    if kind is MsgType.HELLO:
        # 14 bytes from firmware 1.0; 19 or more from later ones (extra bytes: future fields).
        if len(payload) != _HELLO.size and len(payload) < _HELLO.size + _HELLO_CAPS.size:
            raise ProtocolError(f"HELLO: payload is {len(payload)} bytes, expected "
                                f"{_HELLO.size} or at least {_HELLO.size + _HELLO_CAPS.size}")
        proto, fa, fb, fc, leds, width, height, palette, max_frame = _HELLO.unpack_from(payload)
        if palette not in PALETTES:
            raise ProtocolError(f"HELLO: unknown palette code {palette}")
        max_image: int | None = None
        features: int | None = None
        if len(payload) > _HELLO.size:
            max_image, features = _HELLO_CAPS.unpack_from(payload, _HELLO.size)
        return Hello(seq, proto, (fa, fb, fc), leds, width, height, PALETTES[palette], max_frame,
                     max_image, features)
    if kind is MsgType.ACK:
        _need(payload, 0, kind)
        return Ack(seq)
    if kind is MsgType.NAK:
        _need(payload, _NAK.size, kind)
        return Nak(seq, payload[0])
    if kind is MsgType.SET_LED:
        _need(payload, _SET_LED.size, kind)
        r, g, b, effect, brightness = _SET_LED.unpack(payload)
        return SetLed(seq, r, g, b, effect, brightness)
    if kind is MsgType.IMAGE_BEGIN:
        _need(payload, _BEGIN.size, kind)
        image_id, w, h, planes, flags, length, crc = _BEGIN.unpack(payload)
        return ImageBegin(seq, image_id, w, h, planes, bool(flags & FLAG_FULL_REFRESH), length, crc,
                          bool(flags & FLAG_DELTA))
    if kind is MsgType.IMAGE_CHUNK:
        if len(payload) < _CHUNK_HEAD.size:
            raise ProtocolError("IMAGE_CHUNK: payload too short")
        image_id, offset = _CHUNK_HEAD.unpack_from(payload)
        return ImageChunk(seq, image_id, offset, bytes(payload[_CHUNK_HEAD.size:]))
    if kind is MsgType.BUTTON:
        _need(payload, _BUTTON.size, kind)
        if payload[0] not in tuple(Press):
            raise ProtocolError(f"BUTTON: unknown press {payload[0]}")
        return Button(seq, payload[0])
    _need(payload, _END.size, kind)
    return ImageEnd(seq, _END.unpack(payload)[0])


@dataclass
class DecoderStats:
    """What a :class:`FrameDecoder` dropped, by cause."""

    frames: int = 0
    bad_cobs: int = 0
    bad_crc: int = 0
    malformed: int = 0
    oversized: int = 0

    @property
    def dropped(self) -> int:
        return self.bad_cobs + self.bad_crc + self.malformed + self.oversized


class FrameDecoder:
    """Streaming decoder: feed it any bytes, get back the valid messages among them.

    Bytes before the first delimiter, frames that fail COBS or CRC, malformed payloads and frames
    longer than ``max_frame`` are dropped and counted in :attr:`stats`; nothing here raises.
    """

    def __init__(self, max_frame: int = HOST_MAX_FRAME) -> None:
        self.max_encoded = max_encoded_len(max_frame)
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> Iterator[Message]:
        """Consume ``data``; yield each complete, valid message in order."""
        start = 0
        while True:
            end = data.find(b"\x00", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buf += piece
                if len(self._buf) > self.max_encoded:
                    # Keep no more than the limit in memory; skip to the next delimiter.
                    self._overflow = True
                    self._buf.clear()
            if end < 0:
                return
            start = end + 1
            if self._overflow:
                self.stats.oversized += 1
                self._overflow = False
                continue
            if self._buf:
                frame = bytes(self._buf)
                self._buf.clear()
                msg = self._decode(frame)
                if msg is not None:
                    yield msg

    def _decode(self, frame: bytes) -> Message | None:
        try:
            body = cobs_decode(frame)
        except ProtocolError:
            self.stats.bad_cobs += 1
            return None
        try:
            msg = decode_body(body)
        except CrcError:
            self.stats.bad_crc += 1
            return None
        except ProtocolError:
            self.stats.malformed += 1
            return None
        self.stats.frames += 1
        return msg
