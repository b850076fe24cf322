"""The e-ink image payload for Wi-Fi panels (``hardware/PROTOCOL.md``, "E-ink over MQTT").

A 20-byte header, then the bit planes compressed with raw deflate (RFC 1951, no zlib or gzip
wrapper) and a 512-byte window, so an ESP32 can inflate it with a few KiB of RAM (uzlib, miniz
with a small dictionary). All integers big-endian::

    0   4  magic  b"RDEI"
    4   1  format version (1)
    5   1  flags: bit 0 stale, bit 1 full refresh requested; others 0
    6   2  width in pixels
    8   2  height in pixels
    10  1  planes: 1 (black) or 2 (black, then red)
    11  1  reserved (0)
    12  4  length of the uncompressed planes in bytes
    16  4  CRC-32 (zlib/IEEE) of the uncompressed planes
    20  .. raw deflate stream

Each plane is ``height`` rows of ``ceil(width / 8)`` bytes, most significant bit first, 1 = ink;
padding bits at the end of a row are 0. This is the same packing as the serial ``panel`` protocol.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from display.encode.deflate import deflate_raw, inflate_raw
from display.encode.planes import row_bytes

MAGIC = b"RDEI"
VERSION = 1
FLAG_STALE = 0x01
FLAG_FULL_REFRESH = 0x02
HEADER = struct.Struct(">4sBBHHBBII")
MAX_PIXELS = 2000 * 2000


@dataclass(frozen=True, slots=True)
class ImageFrame:
    """A decoded payload (the receiving panel's view; used by tests and the reference code)."""

    width: int
    height: int
    flags: int
    black: bytes
    red: bytes | None


def encode_image(width: int, height: int, black: bytes, red: bytes | None = None, *,
                 flags: int = 0) -> bytes:
    """The payload for one frame; raises ValueError when a plane has the wrong length."""
    plane = row_bytes(width) * height
    if len(black) != plane or (red is not None and len(red) != plane):
        raise ValueError(f"planes must be {plane} bytes each for {width}x{height}")
    raw = black + (red or b"")
    body = deflate_raw(raw)
    header = HEADER.pack(MAGIC, VERSION, flags, width, height, 2 if red is not None else 1, 0,
                         len(raw), zlib.crc32(raw))
    return header + body


def decode_image(payload: bytes) -> ImageFrame:
    """Check and unpack a payload; raises ValueError naming what is wrong."""
    if len(payload) < HEADER.size:
        raise ValueError("shorter than the header")
    magic, version, flags, width, height, planes, _reserved, length, crc = HEADER.unpack_from(
        payload)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a version {VERSION} image payload")
    if planes not in (1, 2) or not 0 < width * height <= MAX_PIXELS:
        raise ValueError("bad size or plane count")
    plane = row_bytes(width) * height
    if length != plane * planes:
        raise ValueError("length does not match size and planes")
    try:
        raw = inflate_raw(payload[HEADER.size:], length)
    except ValueError:
        raise ValueError("corrupt image data (length or CRC-32)") from None
    if zlib.crc32(raw) != crc:
        raise ValueError("corrupt image data (length or CRC-32)")
    return ImageFrame(width, height, flags, raw[:plane], raw[plane:] if planes == 2 else None)
