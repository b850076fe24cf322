"""Encoder: a rendered :class:`~display.outputs.SignImage` → bytes for the panel protocol.

Bit planes are packed by :func:`display.encode.planes.plane_bytes` (1 bit per pixel, MSB first,
rows padded to whole bytes, **1 = ink**); this module adds the checksum and the compression.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

from display.encode.deflate import deflate_raw
from display.encode.planes import plane_bytes, plane_len
from display.outputs import SignImage


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image ready to send: ``planes`` (black then red) and their compressed form."""

    width: int
    height: int
    plane_count: int
    planes: bytes = field(repr=False)
    compressed: bytes = field(repr=False)
    crc32: int
    digest: str  # identifies the content, to skip resending an unchanged image


def ink_plane(plane: Any) -> bytes:
    """Pack one Pillow image as a 1 = ink bit plane (converted to mode ``"1"`` if needed)."""
    from PIL import Image

    if plane.mode != "1":
        plane = plane.convert("1", dither=Image.Dither.NONE)
    return plane_bytes(plane)


def encode_sign(image: SignImage) -> EncodedImage:
    """Bit planes, CRC-32 and raw-deflate stream of ``image``."""
    width, height = image.size
    planes = ink_plane(image.black)
    count = 1
    if image.red is not None:
        if tuple(image.red.size) != (width, height):
            raise ValueError(f"red plane is {image.red.size}, black plane is {image.size}")
        planes += ink_plane(image.red)
        count = 2
    if len(planes) != count * plane_len(width, height):  # pragma: no cover - Pillow invariant
        raise ValueError("unexpected plane size")
    return EncodedImage(
        width=width, height=height, plane_count=count, planes=planes,
        compressed=deflate_raw(planes),
        crc32=binascii.crc32(planes) & 0xFFFFFFFF,
        digest=hashlib.blake2b(planes, digest_size=16).hexdigest(),
    )
