"""Raw deflate (RFC 1951, no zlib or gzip wrapper) with a 512-byte window: the compression of
both image payloads (serial ``panel`` and MQTT e-ink), sized so a board inflates it in little RAM
(MicroPython's ``deflate``, uzlib, miniz with a small dictionary).
"""

from __future__ import annotations

import zlib

WINDOW_BITS = 9  # 512-byte window: the receiver's inflate buffer


def deflate_raw(data: bytes) -> bytes:
    """``data`` compressed at level 9 with a 512-byte window, no header or trailer."""
    packer = zlib.compressobj(level=9, method=zlib.DEFLATED, wbits=-WINDOW_BITS, memLevel=8)
    return packer.compress(data) + packer.flush()


def inflate_raw(data: bytes, expected_len: int) -> bytes:
    """Inverse of :func:`deflate_raw`; raises ValueError unless the stream is complete and
    inflates to exactly ``expected_len`` bytes (never more: a bomb stops at one byte over)."""
    unpacker = zlib.decompressobj(wbits=-WINDOW_BITS)
    try:
        out = unpacker.decompress(data, expected_len + 1)
    except zlib.error as exc:
        raise ValueError(f"does not decompress: {exc}") from exc
    if len(out) != expected_len or not unpacker.eof:
        raise ValueError(f"decompresses to {len(out)} bytes, expected {expected_len}")
    return out
