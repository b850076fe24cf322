"""Bit planes of a :class:`~display.outputs.SignImage` as bytes for the panel encoders.

Layout: 1 bit per pixel, most significant bit first, rows top to bottom, each row padded to a
whole byte with 0 bits (so a 250-pixel row takes 32 bytes), and **1 = ink** on that plane (black,
or red for the red plane). That is what Waveshare-style controllers take, and what the serial and
MQTT encoders compress.

Pillow's mode ``"1"`` :meth:`~PIL.Image.Image.tobytes` already packs bits this way, but with
1 = white. ``ImageChops.invert`` and ``Image.point`` mishandle mode ``"1"`` (Pillow 13 maps both
0 and 255 to white), and flipping the bytes would set the padding bits too; an XOR with an
all-white image inverts exactly the pixels, in C, leaving the padding 0.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageChops

from display.outputs import SignImage


def row_bytes(width: int) -> int:
    """Bytes per packed row of a plane ``width`` pixels wide."""
    return (width + 7) // 8


def plane_len(width: int, height: int) -> int:
    """Bytes of one bit plane: rows padded to whole bytes."""
    return row_bytes(width) * height


def xor_planes(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length plane buffers (big-int XOR: no per-byte Python loop)."""
    if len(a) != len(b):
        raise ValueError(f"planes differ in length: {len(a)} and {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def plane_bytes(plane: Any) -> bytes:
    """One mode ``"1"`` plane (0 = ink) packed with 1 = ink, MSB first, rows byte-padded."""
    if plane.mode != "1":
        raise ValueError(f"a bit plane must be a mode '1' image, got mode {plane.mode!r}")
    ink = ImageChops.logical_xor(plane, Image.new("1", plane.size, 1))
    data: bytes = ink.tobytes()
    return data


def planes_bytes(sign: SignImage) -> tuple[bytes, bytes | None]:
    """The black plane and the red plane (``None`` on a black/white panel), packed by
    :func:`plane_bytes`."""
    red = plane_bytes(sign.red) if sign.red is not None else None
    return plane_bytes(sign.black), red
