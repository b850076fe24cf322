"""Bit-plane packing: 1 = ink, MSB first, rows padded to whole bytes with 0."""

from __future__ import annotations

import pytest
from PIL import Image

from display.config import DeviceConfig
from display.encode.planes import plane_bytes, planes_bytes, row_bytes
from display.model import State
from display.outputs import Palette, SignImage
from display.render.eink import render_sign
from display.render.samples import sample_view


def test_known_pattern() -> None:
    plane = Image.new("1", (10, 2), 1)  # white
    plane.putpixel((0, 0), 0)  # ink at the top-left corner
    plane.putpixel((9, 0), 0)  # and at the end of the first row
    plane.putpixel((8, 1), 0)
    # Row 0: 1000 0000 | 01 + 6 padding bits; row 1: 0000 0000 | 10 + padding.
    assert plane_bytes(plane) == bytes([0x80, 0x40, 0x00, 0x80])


def test_all_white_is_all_zero_including_padding() -> None:
    plane = Image.new("1", (250, 3), 1)
    data = plane_bytes(plane)
    assert len(data) == row_bytes(250) * 3 == 32 * 3
    assert data == bytes(len(data))
    black = plane_bytes(Image.new("1", (250, 1), 0))
    assert black == b"\xff" * 31 + b"\xc0"  # 250 = 31 * 8 + 2: padding stays 0


def test_planes_of_a_rendered_sign() -> None:
    view = sample_view(State.BUSY)
    bwr = render_sign(view, DeviceConfig(id="s", kind="eink", url="virtual:x", protocol="panel",
                                         size=(800, 480), palette=Palette.BWR))
    black, red = planes_bytes(bwr)
    assert red is not None and len(black) == len(red) == 100 * 480
    assert any(black) and any(red)
    assert not any(b & r for b, r in zip(black, red, strict=True))  # never both inks
    # As many 1 bits as ink pixels, and unpacking gives the plane back inverted.
    assert sum(b.bit_count() for b in black) == bwr.black.histogram()[0]
    back = Image.frombytes("1", (800, 480), black)
    assert plane_bytes(back) == bwr.black.tobytes()
    bw = render_sign(view, DeviceConfig(id="s", kind="eink", url="virtual:x", protocol="panel"))
    assert planes_bytes(bw)[1] is None


def test_rejects_non_bilevel_planes() -> None:
    with pytest.raises(ValueError, match="mode '1'"):
        planes_bytes(SignImage(black=Image.new("L", (8, 8), 255)))
