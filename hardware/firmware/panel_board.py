"""Board side of the serial ``panel`` protocol: framing, HELLO, commands, streamed images.

Plain Python that runs unchanged on MicroPython (RP2040, ESP32) and on the host. No hardware
here and no MicroPython-only import at module level: ``main.py`` feeds bytes in with a ``write``
callback for the replies, applies :attr:`Board.led` to the LEDs, and gives the board a *display*
(an e-paper driver) whose ``show(source, full)`` pulls the verified image row by row.

Memory: the compressed stream goes into one buffer allocated at boot (``max_image`` bytes); it is
inflated row by row (one row buffer, a 512-byte deflate window) to check its CRC-32 and again
to feed the panel, so the uncompressed image is never in RAM. Only a board that announces deltas
(HELLO feature bit 0) keeps a copy of the planes shown, as the base to XOR a delta onto; it is
updated in place, row by row, after the delta checked out. A ``MemoryError`` while handling a
frame becomes NAK ``NO_MEMORY``; the board stays up.

Deliberately written without dataclasses, type annotations or ``bytes.split`` so MicroPython's
subset is enough. The spec is ``hardware/PROTOCOL.md``.
"""

import struct

try:
    import binascii
except ImportError:  # pragma: no cover - very small MicroPython builds
    binascii = None

PROTOCOL_VERSION = 1
FIRMWARE_VERSION = (1, 2, 0)

HELLO_REQUEST = 0x01
HELLO = 0x02
ACK = 0x03
NAK = 0x04
SET_LED = 0x10
IMAGE_BEGIN = 0x20
IMAGE_CHUNK = 0x21
IMAGE_END = 0x22
BUTTON = 0x30

NAK_UNKNOWN_TYPE = 1
NAK_MALFORMED = 2
NAK_BAD_VERSION = 3
NAK_NO_IMAGE = 4
NAK_BAD_OFFSET = 5
NAK_BAD_CHECKSUM = 6
NAK_UNSUPPORTED = 7
NAK_NO_HARDWARE = 8
NAK_TOO_LARGE = 9
NAK_NO_MEMORY = 10
NAK_BUSY = 11

PALETTE_CODES = {"none": 0, "bw": 1, "bwr": 2}
FLAG_FULL_REFRESH = 0x01
FLAG_DELTA = 0x02
DEFLATE_WBITS = 9
FEATURE_DELTA = 0x01  # HELLO features: the board keeps a delta base
FEATURE_BUTTON = 0x02  # HELLO features: a button is fitted; the board sends BUTTON frames

PRESS_CHECK_IN = 1  # a short press: "we are here"
PRESS_END = 2  # a long press (LONG_PRESS_MS held): "we are done, free the room now"
LONG_PRESS_MS = 3000
DEBOUNCE_MS = 30  # a contact must read the same this long before it counts
BUTTON_RESEND_MS = 500  # BUTTON again until the host's ACK, as the host resends its requests
BUTTON_TRIES = 8  # then the press is dropped (the host is away; a person can press again)


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


def crc32(data, crc=0):
    """CRC-32 (zlib's) of the uncompressed planes, continued from ``crc``."""
    return binascii.crc32(data, crc) & 0xFFFFFFFF


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


class FrameReader:
    """Streaming de-framer: bytes in, valid frame bodies (CRC checked) out. Never raises."""

    def __init__(self, max_frame):
        self.max_encoded = max_frame + max_frame // 254 + 1
        # Allocated once: a board must not need fresh heap to receive a frame.
        self.buf = bytearray(self.max_encoded)
        self.used = 0
        self.overflow = False
        self.bad_frames = 0
        self.oversized = 0

    def feed(self, data):
        """Return a list of ``(type, seq, payload, crc)`` for each good frame in ``data``."""
        out = []
        buf = self.buf
        for b in data:
            if b != 0:
                if not self.overflow:
                    if self.used == self.max_encoded:
                        self.overflow = True
                        self.used = 0
                    else:
                        buf[self.used] = b
                        self.used += 1
                continue
            if self.overflow:
                self.oversized += 1
                self.overflow = False
                continue
            if not self.used:
                continue
            body = cobs_decode(memoryview(buf)[:self.used])
            self.used = 0
            if body is None or len(body) < 5:
                self.bad_frames += 1
                continue
            crc = (body[-2] << 8) | body[-1]
            if crc16(body[:-2]) != crc:
                self.bad_frames += 1
                continue
            out.append((body[0], body[1], body[2], bytes(body[3:-2]), crc))
        return out


# -- streaming images --------------------------------------------------------------------------


class _BufferStream:
    """Read-only stream over the first ``length`` bytes of a buffer (no copy)."""

    def __init__(self, buf, length):
        self.mv = memoryview(buf)
        self.pos = 0
        self.length = length

    def readinto(self, out):
        n = min(len(out), self.length - self.pos)
        out[:n] = self.mv[self.pos:self.pos + n]
        self.pos += n
        return n


class _ZlibInflater:
    """CPython stand-in for MicroPython's ``deflate.DeflateIO`` (raw, 512-byte window)."""

    def __init__(self, buf, length):
        import zlib
        self.d = zlib.decompressobj(-DEFLATE_WBITS)
        self.tail = bytes(memoryview(buf)[:length])
        self.out = b""

    def readinto(self, out):
        want = len(out)
        while len(self.out) < want and not self.d.eof:
            got = self.d.decompress(self.tail, want - len(self.out))
            self.tail = self.d.unconsumed_tail
            if not got and not self.tail:
                break  # input used up before the end of the stream
            self.out += got
        n = min(want, len(self.out))
        out[:n] = self.out[:n]
        self.out = self.out[n:]
        return n


try:
    import deflate  # MicroPython >= 1.21
except ImportError:  # CPython (the host tests): zlib
    deflate = None
_IOBase = None
if deflate is not None:
    try:
        import io
        _IOBase = io.IOBase
    except (ImportError, AttributeError):  # pragma: no cover - builds without IOBase
        pass

if _IOBase is not None:
    class _Stream(_IOBase):
        """A real stream object (DeflateIO needs one) over a :class:`_BufferStream`."""

        def __init__(self, inner):
            self.inner = inner

        def readinto(self, out):
            return self.inner.readinto(out)


def open_inflater(buf, length):
    """A stream with ``readinto`` that inflates the raw-deflate bytes ``buf[:length]``."""
    if deflate is None:
        return _ZlibInflater(buf, length)
    if _IOBase is not None:
        return deflate.DeflateIO(_Stream(_BufferStream(buf, length)), deflate.RAW, DEFLATE_WBITS)
    import io
    return deflate.DeflateIO(io.BytesIO(bytes(memoryview(buf)[:length])), deflate.RAW,
                             DEFLATE_WBITS)


def read_full(stream, out):
    """Fill ``out`` from ``stream``; return how many bytes it got (less only at the end)."""
    got = 0
    mv = memoryview(out)
    while got < len(out):
        n = stream.readinto(mv[got:])
        if not n:
            break
        got += n
    return got


def xor_row(dst, src):
    """``dst ^= src`` for two equal-length rows, through big integers (no per-byte loop)."""
    n = len(dst)
    dst[:] = (int.from_bytes(dst, "big") ^ int.from_bytes(src, "big")).to_bytes(n, "big")


class Capabilities:
    """What this board has; announced in HELLO."""

    def __init__(self, led_count=8, width=296, height=128, palette="bw", max_frame=512,
                 max_image=16384, delta=True, firmware=FIRMWARE_VERSION, button=False):
        self.led_count = led_count
        self.width = width
        self.height = height
        self.palette = palette
        self.max_frame = max_frame
        self.max_image = max_image if palette != "none" else 0
        self.delta = bool(delta) and palette != "none"
        self.firmware = firmware
        self.button = bool(button)

    @property
    def stride(self):
        return (self.width + 7) // 8

    @property
    def max_planes(self):
        return 2 if self.palette == "bwr" else 1

    def hello_payload(self):
        return struct.pack("<B3BHHHBHIB", PROTOCOL_VERSION, self.firmware[0], self.firmware[1],
                           self.firmware[2], self.led_count, self.width, self.height,
                           PALETTE_CODES[self.palette], self.max_frame, self.max_image,
                           (FEATURE_DELTA if self.delta else 0)
                           | (FEATURE_BUTTON if self.button else 0))


class ButtonReader:
    """A push button to ground with the pin's pull-up, debounced: :meth:`update` takes the raw
    level (``pressed`` True while held) and the time, and returns ``PRESS_CHECK_IN`` when a
    short press is released, ``PRESS_END`` as soon as a press has been held ``long_ms`` (the
    person sees the answer without guessing when to let go), else 0."""

    def __init__(self, long_ms=LONG_PRESS_MS, debounce_ms=DEBOUNCE_MS):
        self.long_ms = long_ms
        self.debounce_ms = debounce_ms
        self.raw = False
        self.raw_since = 0
        self.held = False  # the debounced level
        self.held_since = 0
        self.fired_long = False

    def update(self, pressed, now_ms):
        pressed = bool(pressed)
        if pressed != self.raw:
            self.raw = pressed
            self.raw_since = now_ms
        if self.raw != self.held and now_ms - self.raw_since >= self.debounce_ms:
            self.held = self.raw
            self.held_since = self.raw_since
            if not self.held:
                short = not self.fired_long
                self.fired_long = False
                return PRESS_CHECK_IN if short else 0
        if self.held and not self.fired_long and now_ms - self.held_since >= self.long_ms:
            self.fired_long = True
            return PRESS_END
        return 0


class ShownImage:
    """What the board verified and handed to the display (no pixels: those are streamed)."""

    def __init__(self, image_id, width, height, planes, full_refresh, crc, delta):
        self.image_id = image_id
        self.width = width
        self.height = height
        self.planes = planes
        self.full_refresh = full_refresh
        self.crc = crc
        self.delta = delta


class ImageSource:
    """The verified image, row by row, for a display driver: ``rows(plane)`` yields each row
    of that plane (0 black, 1 red) as a buffer valid until the next row is asked for."""

    def __init__(self, board, planes):
        self.board = board
        self.planes = planes
        self.width = board.caps.width
        self.height = board.caps.height
        self.stride = board.caps.stride

    def rows(self, plane):
        board = self.board
        stride, height = self.stride, self.height
        if board.base is not None:
            mv = memoryview(board.base)
            start = plane * stride * height
            for y in range(height):
                yield mv[start + y * stride:start + (y + 1) * stride]
            return
        row = board.row
        stream = open_inflater(board.buf, board.buf_len)
        for _ in range(plane * height):  # skip the planes before this one
            read_full(stream, row)
        for _ in range(height):
            read_full(stream, row)
            yield row


class Board:
    """The protocol state machine and the desired state of the hardware.

    ``led`` is ``(r, g, b, effect, brightness)``; ``image`` the last :class:`ShownImage` or
    ``None``; ``led_version`` and ``image_version`` count changes. ``display`` (optional) gets
    ``show(ImageSource, full_refresh)`` after each verified image, once its ACK is written.
    """

    def __init__(self, caps=None, display=None):
        self.caps = caps or Capabilities()
        self.display = display
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
        self.out_of_memory = 0
        caps = self.caps
        # Every big buffer is allocated here, at boot, while the heap is in one piece.
        self.buf = bytearray(caps.max_image) if caps.max_image else None
        self.buf_len = 0
        self.row = bytearray(caps.stride) if caps.palette != "none" else None
        self.base = bytearray(caps.max_planes * caps.stride * caps.height) if caps.delta else None
        self.probe = bytearray(1)
        self.drawing = False  # inside display.show(); replies still go out meanwhile
        self.base_planes = 0  # planes in ``base`` that match what the panel shows; 0 = none
        self._show = None
        # The one button press the host has not acknowledged yet: (seq, frame), or None.
        self.button_seq = 0
        self.button_out = None
        self.button_sent_at = 0
        self.button_tries = 0
        self.button_acked = 0  # presses the host acknowledged (main.py flashes the LEDs)
        self.button_lost = 0  # presses given up after BUTTON_TRIES sends

    def hello(self, seq=0):
        """The HELLO frame; ``seq`` 0 is the spontaneous one sent after boot."""
        return frame(HELLO, seq, self.caps.hello_payload())

    def feed(self, data, write=None):
        """Handle received bytes. With ``write``, each reply is written as soon as it is known
        (before a slow panel refresh) and ``[]`` is returned; without, the replies are returned
        in order. Never raises ``MemoryError``: it becomes NAK ``NO_MEMORY``."""
        replies = []
        try:
            frames = self.reader.feed(data)
        except MemoryError:
            self.out_of_memory += 1
            self.reader.used = 0
            return replies  # the frame is lost; the host's retry brings it again
        for version, kind, seq, payload, crc in frames:
            if kind == ACK:
                # The host's answer to our BUTTON; never replied to, never a request.
                self._button_acked(seq)
                continue
            key = (kind, seq, crc)
            if key == self.last_key:
                # A resend because our reply was lost: answer the same, do not apply twice.
                self.duplicates += 1
                reply = self.last_reply
            else:
                try:
                    if version != PROTOCOL_VERSION:
                        reply = self._nak(seq, NAK_BAD_VERSION)
                    else:
                        reply = self._handle(kind, seq, payload)
                except MemoryError:
                    self.out_of_memory += 1
                    self.pending = None
                    self._show = None
                    self.base_planes = 0  # a half-applied delta: the base is not trusted now
                    reply = self._nak(seq, NAK_NO_MEMORY)
                self.last_key = key
                self.last_reply = reply
            if write is None:
                replies.append(reply)
            else:
                write(reply)
            if not self._run_show():
                # The image was ACKed but could not be drawn: say HELLO as after a reset, so
                # the host sends its whole state again rather than trust a panel that missed it.
                self.base_planes = 0
                if write is None:
                    replies.append(self.hello(0))
                else:
                    write(self.hello(0))
        return replies

    # -- the button: the one request that goes from the board to the host --------------------

    def press(self, kind, now_ms):
        """A debounced press (``PRESS_CHECK_IN`` or ``PRESS_END``): the BUTTON frame to write
        now. It is sent again every ``BUTTON_RESEND_MS`` until the host acknowledges it; a newer
        press replaces one still waiting (the newest wish of the person at the door wins)."""
        self.button_seq = self.button_seq % 255 + 1  # 1..255: seq 0 is the boot HELLO's
        out = frame(BUTTON, self.button_seq, bytes((kind,)))
        self.button_out = (self.button_seq, out)
        self.button_sent_at = now_ms
        self.button_tries = 1
        return out

    def button_due(self, now_ms):
        """The BUTTON frame to send again now, or ``None``."""
        if self.button_out is None or now_ms - self.button_sent_at < BUTTON_RESEND_MS:
            return None
        if self.button_tries >= BUTTON_TRIES:
            self.button_out = None
            self.button_lost += 1
            return None
        self.button_tries += 1
        self.button_sent_at = now_ms
        return self.button_out[1]

    def _button_acked(self, seq):
        if self.button_out is not None and self.button_out[0] == seq:
            self.button_out = None
            self.button_acked += 1

    def _draw(self, show):
        self.drawing = True
        try:
            self.display.show(ImageSource(self, show.planes), show.full_refresh)
        finally:
            self.drawing = False

    def _run_show(self):
        """Draw what waits for the panel; False if it failed for want of memory."""
        # Not re-entered: main.py feeds the board while the panel refreshes, and an image
        # verified then is drawn when the current refresh is over (the loop below).
        if self.display is None:
            self._show = None
            return True
        if self.drawing:
            return True
        while self._show is not None:
            show, self._show = self._show, None
            try:
                self._draw(show)
            except MemoryError:
                import gc
                gc.collect()
                try:
                    self._draw(show)  # once more, with the garbage gone
                except MemoryError:
                    self.out_of_memory += 1
                    return False
        return True

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
        self.pending = None  # a new IMAGE_BEGIN abandons any unfinished image
        if self._show is not None:
            # An image waits for the panel: its rows still come from the buffers.
            return self._nak(seq, NAK_BUSY)
        if caps.palette == "none":
            return self._nak(seq, NAK_NO_HARDWARE)
        if (w, h) != (caps.width, caps.height) or not 1 <= planes <= caps.max_planes:
            return self._nak(seq, NAK_UNSUPPORTED)
        if length == 0 or length > caps.max_image:
            return self._nak(seq, NAK_TOO_LARGE)
        delta = bool(flags & FLAG_DELTA)
        if delta and (self.base is None or self.base_planes != planes):
            return self._nak(seq, NAK_NO_IMAGE)  # no base to apply the delta to
        self.pending = [image_id, planes, bool(flags & FLAG_FULL_REFRESH), delta, length, crc, 0]
        self.buf_len = 0
        return frame(ACK, seq)

    def _chunk(self, seq, payload):
        if len(payload) < 6:
            return self._nak(seq, NAK_MALFORMED)
        image_id, offset = struct.unpack("<HI", payload[:6])
        p = self.pending
        if p is None or p[0] != image_id:
            return self._nak(seq, NAK_NO_IMAGE)
        n = len(payload) - 6
        end = offset + n
        # In order; a repeat of an earlier chunk is fine, a gap is not.
        if offset > p[6] or end > p[4]:
            return self._nak(seq, NAK_BAD_OFFSET)
        self.buf[offset:end] = memoryview(payload)[6:]
        if end > p[6]:
            p[6] = end
        return frame(ACK, seq)

    def _end(self, seq, payload):
        if len(payload) != 2:
            return self._nak(seq, NAK_MALFORMED)
        image_id = struct.unpack("<H", payload)[0]
        p = self.pending
        if p is None or p[0] != image_id:
            return self._nak(seq, NAK_NO_IMAGE)
        image_id, planes, full, delta, length, crc, received = p
        if received != length:
            return self._nak(seq, NAK_BAD_OFFSET)
        self.pending = None
        self.buf_len = length
        if delta and (self.base is None or self.base_planes != planes):
            return self._nak(seq, NAK_NO_IMAGE)
        try:
            ok = self._verify(planes, delta) == crc
        except MemoryError:
            raise  # feed() turns it into NAK NO_MEMORY
        except Exception:  # a corrupt stream: OSError (DeflateIO), zlib.error (CPython)
            ok = False
        if not ok:
            return self._nak(seq, NAK_BAD_CHECKSUM)
        if self.base is not None:
            self._commit(planes, delta)
        self.image = ShownImage(image_id, self.caps.width, self.caps.height, planes, full, crc,
                                delta)
        self.image_version += 1
        self._show = self.image
        return frame(ACK, seq)

    def _verify(self, planes, delta):
        """CRC-32 of the planes the stream describes, or ``None`` if it is not exactly
        ``planes`` planes long. Nothing is changed: the base stays as it was."""
        caps = self.caps
        rows = planes * caps.height
        stream = open_inflater(self.buf, self.buf_len)
        row = self.row
        base = memoryview(self.base) if delta else None
        stride = caps.stride
        crc = 0
        for y in range(rows):
            if read_full(stream, row) != stride:
                return None
            if base is not None:
                xor_row(row, base[y * stride:(y + 1) * stride])
            crc = crc32(row, crc)
        if stream.readinto(self.probe):
            return None  # longer than announced
        return crc

    def _commit(self, planes, delta):
        """Bring the delta base to the verified image, row by row."""
        caps = self.caps
        stride = caps.stride
        stream = open_inflater(self.buf, self.buf_len)
        base = memoryview(self.base)
        row = self.row
        for y in range(planes * caps.height):
            read_full(stream, row)
            dst = base[y * stride:(y + 1) * stride]
            if delta:
                xor_row(row, dst)
            dst[:] = row
        self.base_planes = planes
