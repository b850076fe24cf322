"""Board side of the serial ``panel`` protocol: framing, HELLO, commands, image assembly.

Plain Python that runs unchanged on MicroPython (RP2040, ESP32) and on the host, where the tests
run it as a board simulator behind a pty. No hardware here and no MicroPython-only import at
module level: ``main.py`` feeds bytes in, writes the replies out, and applies :attr:`Board.led`
and :attr:`Board.image` to the LEDs and the e-paper whenever their version counters move.

Deliberately written without dataclasses, type annotations or ``bytes.split`` so MicroPython's
subset is enough. The spec is ``hardware/PROTOCOL.md``.
"""

import struct

try:
    import binascii
except ImportError:  # pragma: no cover - very small MicroPython builds
    binascii = None

PROTOCOL_VERSION = 1
FIRMWARE_VERSION = (1, 0, 0)

HELLO_REQUEST = 0x01
HELLO = 0x02
ACK = 0x03
NAK = 0x04
SET_LED = 0x10
IMAGE_BEGIN = 0x20
IMAGE_CHUNK = 0x21
IMAGE_END = 0x22

NAK_UNKNOWN_TYPE = 1
NAK_MALFORMED = 2
NAK_BAD_VERSION = 3
NAK_NO_IMAGE = 4
NAK_BAD_OFFSET = 5
NAK_BAD_CHECKSUM = 6
NAK_UNSUPPORTED = 7
NAK_NO_HARDWARE = 8
NAK_TOO_LARGE = 9

PALETTE_CODES = {"none": 0, "bw": 1, "bwr": 2}
FLAG_FULL_REFRESH = 0x01
FLAG_DELTA = 0x02
DEFLATE_WBITS = 9


def _make_crc_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): table-driven, no binascii.crc_hqx here."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc


def crc32(data):
    """CRC-32 (zlib's) of the uncompressed planes."""
    return binascii.crc32(data) & 0xFFFFFFFF


def cobs_encode(data):
    """COBS, canonical form (no trailing code byte after a final 254-byte block)."""
    out = bytearray(b"\x00")
    code_at = 0
    code = 1
    n = len(data)
    for i in range(n):
        b = data[i]
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF and i + 1 < n:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of :func:`cobs_encode`; ``None`` when the frame is malformed."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            return None
        for j in range(i + 1, i + code):
            if data[j] == 0:
                return None
        out.extend(data[i + 1:i + code])
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def frame(kind, seq, payload=b""):
    """A complete wire frame: ``00 COBS(version type seq payload crc16) 00``."""
    body = bytes((PROTOCOL_VERSION, kind, seq)) + payload
    crc = crc16(body)
    return b"\x00" + cobs_encode(body + bytes((crc >> 8, crc & 0xFF))) + b"\x00"


def xor_bytes(a, b):
    """Bytewise XOR of equal-length buffers via big integers (fast on MicroPython too)."""
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


def inflate_raw(data, expected_len):
    """Raw-deflate decompress with a 512-byte window, on CPython (zlib) or MicroPython."""
    try:
        import zlib
        d = zlib.decompressobj(-DEFLATE_WBITS)
        out = d.decompress(data, expected_len + 1)
        if not d.eof:
            return None
        return out
    except ImportError:
        pass
    import io

    import deflate  # MicroPython >= 1.21

    with deflate.DeflateIO(io.BytesIO(data), deflate.RAW, DEFLATE_WBITS) as f:
        return f.read(expected_len + 1)


class FrameReader:
    """Streaming de-framer: bytes in, valid frame bodies (CRC checked) out. Never raises."""

    def __init__(self, max_frame):
        self.max_encoded = max_frame + max_frame // 254 + 1
        self.buf = bytearray()
        self.overflow = False
        self.bad_frames = 0
        self.oversized = 0

    def feed(self, data):
        """Return a list of ``(type, seq, payload, crc)`` for each good frame in ``data``."""
        out = []
        for b in data:
            if b != 0:
                if not self.overflow:
                    self.buf.append(b)
                    if len(self.buf) > self.max_encoded:
                        self.overflow = True
                        self.buf = bytearray()
                continue
            if self.overflow:
                self.oversized += 1
                self.overflow = False
                continue
            if not self.buf:
                continue
            body = cobs_decode(self.buf)
            self.buf = bytearray()
            if body is None or len(body) < 5:
                self.bad_frames += 1
                continue
            crc = (body[-2] << 8) | body[-1]
            if crc16(body[:-2]) != crc:
                self.bad_frames += 1
                continue
            out.append((body[0], body[1], body[2], bytes(body[3:-2]), crc))
        return out


class Capabilities:
    """What this board has; announced in HELLO."""

    def __init__(self, led_count=8, width=296, height=128, palette="bw", max_frame=512,
                 max_image=65536, firmware=FIRMWARE_VERSION):
        self.led_count = led_count
        self.width = width
        self.height = height
        self.palette = palette
        self.max_frame = max_frame
        self.max_image = max_image
        self.firmware = firmware

    def hello_payload(self):
        return struct.pack("<B3BHHHBH", PROTOCOL_VERSION, self.firmware[0], self.firmware[1],
                           self.firmware[2], self.led_count, self.width, self.height,
                           PALETTE_CODES[self.palette], self.max_frame)


class ShownImage:
    """An image the board has verified: ``planes`` is the black plane, then the red one."""

    def __init__(self, image_id, width, height, planes, full_refresh, crc, data):
        self.image_id = image_id
        self.width = width
        self.height = height
        self.planes = planes
        self.full_refresh = full_refresh
        self.crc = crc
        self.data = data


class Board:
    """The protocol state machine and the desired state of the hardware.

    ``led`` is ``(r, g, b, effect, brightness)``; ``image`` a :class:`ShownImage` or ``None``.
    ``led_version`` and ``image_version`` count changes so ``main.py`` knows what to redraw.
    """

    def __init__(self, caps=None):
        self.caps = caps or Capabilities()
        self.reader = FrameReader(self.caps.max_frame)
        self.led = (0, 0, 0, 0, 0)
        self.led_version = 0
        self.image = None
        self.image_version = 0
        self.pending = None
        self.last_key = None
        self.last_reply = b""
        self.duplicates = 0
        self.naks = 0

    def hello(self, seq=0):
        """The HELLO frame; ``seq`` 0 is the spontaneous one sent after boot."""
        return frame(HELLO, seq, self.caps.hello_payload())

    def feed(self, data):
        """Handle received bytes; return the list of reply frames to write, in order."""
        replies = []
        for version, kind, seq, payload, crc in self.reader.feed(data):
            key = (kind, seq, crc)
            if key == self.last_key:
                # A resend because our reply was lost: answer the same, do not apply twice.
                self.duplicates += 1
                replies.append(self.last_reply)
                continue
            if version != PROTOCOL_VERSION:
                reply = self._nak(seq, NAK_BAD_VERSION)
            else:
                reply = self._handle(kind, seq, payload)
            self.last_key = key
            self.last_reply = reply
            replies.append(reply)
        return replies

    def _nak(self, seq, reason):
        self.naks += 1
        return frame(NAK, seq, bytes((reason,)))

    def _handle(self, kind, seq, payload):
        if kind == HELLO_REQUEST:
            self.pending = None  # the host starts over: drop any half-received image
            return self.hello(seq)
        if kind == SET_LED:
            if len(payload) != 5:
                return self._nak(seq, NAK_MALFORMED)
            if self.caps.led_count == 0:
                return self._nak(seq, NAK_NO_HARDWARE)
            led = tuple(payload)
            if led[3] > 2:
                return self._nak(seq, NAK_UNSUPPORTED)
            if led != self.led:
                self.led = led
                self.led_version += 1
            return frame(ACK, seq)
        if kind == IMAGE_BEGIN:
            return self._begin(seq, payload)
        if kind == IMAGE_CHUNK:
            return self._chunk(seq, payload)
        if kind == IMAGE_END:
            return self._end(seq, payload)
        return self._nak(seq, NAK_UNKNOWN_TYPE)

    def _begin(self, seq, payload):
        if len(payload) != 16:
            return self._nak(seq, NAK_MALFORMED)
        image_id, w, h, planes, flags, length, crc = struct.unpack("<HHHBBII", payload)
        caps = self.caps
        if caps.palette == "none":
            return self._nak(seq, NAK_NO_HARDWARE)
        max_planes = 2 if caps.palette == "bwr" else 1
        if (w, h) != (caps.width, caps.height) or not 1 <= planes <= max_planes:
            return self._nak(seq, NAK_UNSUPPORTED)
        if length == 0 or length > caps.max_image:
            return self._nak(seq, NAK_TOO_LARGE)
        delta = bool(flags & FLAG_DELTA)
        shown = self.image
        if delta and (shown is None or (shown.width, shown.height, shown.planes) != (w, h, planes)):
            return self._nak(seq, NAK_NO_IMAGE)  # no base to apply the delta to
        try:
            buf = bytearray(length)
        except MemoryError:
            return self._nak(seq, NAK_TOO_LARGE)
        self.pending = {"id": image_id, "w": w, "h": h, "planes": planes,
                        "full": bool(flags & FLAG_FULL_REFRESH), "delta": delta,
                        "length": length, "crc": crc,
                        "buf": buf, "next": 0}
        return frame(ACK, seq)

    def _chunk(self, seq, payload):
        if len(payload) < 6:
            return self._nak(seq, NAK_MALFORMED)
        image_id, offset = struct.unpack("<HI", payload[:6])
        p = self.pending
        if p is None or p["id"] != image_id:
            return self._nak(seq, NAK_NO_IMAGE)
        data = payload[6:]
        end = offset + len(data)
        # In order; a repeat of an earlier chunk is fine, a gap is not.
        if offset > p["next"] or end > p["length"]:
            return self._nak(seq, NAK_BAD_OFFSET)
        p["buf"][offset:end] = data
        if end > p["next"]:
            p["next"] = end
        return frame(ACK, seq)

    def _end(self, seq, payload):
        if len(payload) != 2:
            return self._nak(seq, NAK_MALFORMED)
        image_id = struct.unpack("<H", payload)[0]
        p = self.pending
        if p is None or p["id"] != image_id:
            return self._nak(seq, NAK_NO_IMAGE)
        if p["next"] != p["length"]:
            return self._nak(seq, NAK_BAD_OFFSET)
        expected = p["planes"] * ((p["w"] + 7) // 8) * p["h"]
        self.pending = None
        try:
            data = inflate_raw(bytes(p["buf"]), expected)
        except Exception:  # zlib.error (CPython), OSError/ValueError (MicroPython): corrupt data
            data = None
        if data is not None and len(data) == expected and p["delta"]:
            if self.image is None or len(self.image.data) != expected:
                return self._nak(seq, NAK_NO_IMAGE)
            data = xor_bytes(data, self.image.data)
        if data is None or len(data) != expected or crc32(data) != p["crc"]:
            return self._nak(seq, NAK_BAD_CHECKSUM)
        self.image = ShownImage(image_id, p["w"], p["h"], p["planes"], p["full"], p["crc"], data)
        self.image_version += 1
        return frame(ACK, seq)
