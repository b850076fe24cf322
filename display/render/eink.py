"""E-ink renderer: a :class:`~display.model.RoomView` as the bit planes of a sign.

Pure and deterministic: everything drawn comes from the view (``occupancy.at`` is "now") and the
device config; nothing reads the clock or touches a device. Drawing happens directly on mode
``"1"`` images with ``fontmode = "1"``, so text is crisp 1-bit with no dithering.

Layout, in the *logical* orientation (the panel's size, transposed for rotation 90/270):

* compact (height < 200 px, e.g. 250x122, 296x128): room name and update time; a state banner
  (state in large type and the current span / "until"); the next bookings on one line.
* large (e.g. 400x300, 800x480): the same with the banner half the sign high, plus the rest of
  the day's bookings in columns (rows as large as the count allows) and a day timeline
  (07:00-21:00, widened to cover the day's bookings) with a now-marker.
* closed (quiet hours): the banner says "Closed" and until when; the bookings before the opening
  are listed, and nothing that moves with the clock is drawn (no "as of" unless stale, no
  timeline), so the node need not redraw it until something changes.

Banners: free is an outlined banner (white), soon a thick outline (red on ``bwr``), busy and
ending a solid banner with white type (red on ``bwr``, black on ``bw``), so "dark or red = taken"
reads from a distance. A stale view gets a warning triangle and "as of HH:MM" in the header.

Every string is fitted to its box: shrunk down to a minimum size, then wrapped (room names), then
ellipsised; :func:`compose` reports where each string went so tests can check nothing overflows.

This module places the regions and runs the render; the rest lives beside it: :mod:`.wording`
(every string, in each language), :mod:`.facts` (the view as drawn, in local time),
:mod:`.sections` (how each region is drawn), :mod:`.canvas` (the bit planes and inks),
:mod:`.typeset` (measuring and fitting text) and :mod:`.geometry` (boxes).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from PIL import Image

from display.config import DeviceConfig, DeviceKind, RoomConfig
from display.errors import ConfigError
from display.model import RoomView
from display.outputs import SignImage
from display.render.canvas import Canvas, PlacedText
from display.render.facts import sign_facts
from display.render.fonts import Fonts, default_fonts
from display.render.geometry import Box
from display.render.sections import (
    draw_details,
    draw_header,
    draw_next_grid,
    draw_next_line,
    draw_stale_line,
    draw_state_block,
    draw_timeline,
)
from display.render.wording import text

__all__ = ["Box", "Composition", "PlacedText", "compose", "render_sign", "text"]

COMPACT_BELOW = 200  # logical heights below this get the compact layout


@dataclass(frozen=True)
class Composition:
    """A rendered sign with the layout that produced it (logical coordinates, pre-rotation)."""

    sign: SignImage
    logical_size: tuple[int, int]
    regions: dict[str, Box]
    texts: tuple[PlacedText, ...]


def _regions(w: int, h: int, *, closed: bool = False, alone: bool = False,
             details: bool = False) -> tuple[dict[str, Box], int]:
    """Where each part of a ``w`` x ``h`` sign goes, and the stroke/margin unit.

    The state banner grows with the panel (half a large sign: it is what is read from across a
    corridor); a closed sign has no timeline (its now-marker would stop at the closing time).
    ``alone``: nothing but the header and the banner (a closed sign with nothing booked).
    ``details``: a band under the banner for the meeting's title and organizer, taken from the
    banner and the "Next" part (compact: one line; large: two)."""
    unit = max(1, min(w, h) // 100 + 1)  # stroke/margin unit: 2 px at 128, 5 px at 480
    if alone:
        hh = round(h * (0.22 if h < COMPACT_BELOW else 0.12))
        return {"header": Box(0, 0, w, hh), "banner": Box(0, hh, w, h - hh - unit)}, unit
    if h < COMPACT_BELOW and details:
        hh, hb, hd = round(h * 0.19), round(h * 0.45), round(h * 0.17)
        return {
            "header": Box(0, 0, w, hh),
            "banner": Box(0, hh, w, hb),
            "details": Box(unit * 2, hh + hb + unit, w - unit * 4, hd),
            "next": Box(unit * 2, hh + hb + hd + unit, w - unit * 4, h - hh - hb - hd - 2 * unit),
        }, unit
    if h < COMPACT_BELOW:
        hh = round(h * 0.22)
        hb = round(h * 0.50)
        return {
            "header": Box(0, 0, w, hh),
            "banner": Box(0, hh, w, hb),
            "next": Box(unit * 2, hh + hb + unit, w - unit * 4, h - hh - hb - 2 * unit),
        }, unit
    hh = round(h * 0.12)
    hb = round(h * (0.38 if details else 0.46))
    hd = round(h * 0.16) if details else 0
    ht = 0 if closed else round(h * 0.13)
    gap = unit * 2
    regions = {
        "header": Box(0, 0, w, hh),
        "banner": Box(0, hh, w, hb),
        "next": Box(unit * 3, hh + hb + hd + gap, w - unit * 6,
                    h - hh - hb - hd - ht - 2 * gap),
    }
    if details:
        regions["details"] = Box(unit * 3, hh + hb + gap, w - unit * 6, hd)
    if not closed:
        regions["timeline"] = Box(unit * 2, h - ht, w - unit * 4, ht - unit)
    return regions, unit


def compose(view: RoomView, device: DeviceConfig, *, fonts: Fonts | None = None) -> Composition:
    """Render ``view`` for ``device`` and report the layout (for tests and ``preview``).

    Raises :class:`~display.render.fonts.FontMissingError` if Chinese is to be drawn and no CJK
    font is installed.
    """
    fonts = fonts or default_fonts()
    rotation = device.rotation % 360
    pw, ph = device.size
    w, h = (ph, pw) if rotation in (90, 270) else (pw, ph)
    f = sign_facts(view, device)
    if f.language != "en":
        fonts.require_cjk()  # fail with the package name even if this view happens to be ASCII
    c = Canvas((w, h), device.palette, fonts)
    compact = h < COMPACT_BELOW
    alone = f.closed and not (f.upcoming or f.later or (compact and f.stale))
    regions, unit = _regions(w, h, closed=f.closed, alone=alone,
                             details=f.title is not None and not (compact and f.stale))
    # A compact stale sign puts the warning on its own line, where it is big enough to notice.
    # A closed sign shows no clock unless stale: nothing on it moves until it opens.
    draw_header(c, f, regions["header"], unit,
                show_asof=not (compact and f.stale) and (f.stale or not f.closed))
    rest = draw_state_block(c, f, regions["banner"], unit)
    if "timeline" in regions:
        draw_timeline(c, f, regions["timeline"], unit)
    if "details" in regions:
        draw_details(c, f, regions["details"], unit, lines=1 if compact else 2)
    if "next" not in regions:
        pass  # closed with nothing booked: the banner is the sign
    elif not compact:
        draw_next_grid(c, f, regions["next"], rest, unit)
    elif f.stale:
        draw_stale_line(c, f, regions["next"], unit)
    else:
        draw_next_line(c, f, regions["next"], rest)
    black, red = c.black, c.red
    if rotation:
        # ``rotation`` is clockwise, as luma.core counts it; transposes are exact on 1-bit.
        op = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_90}[rotation]
        black = black.transpose(op)
        red = red.transpose(op) if red is not None else None
    return Composition(SignImage(black=black, red=red), (w, h), regions, tuple(c.placed))


def render_sign(view: RoomView, device: DeviceConfig, *, fonts: Fonts | None = None) -> SignImage:
    """The e-ink image of ``view`` for ``device``: bit planes in the panel's native orientation.

    Size, palette (``bw``/``bwr``), rotation (0/90/180/270, clockwise) and language (the
    device's, else the view's) come from ``device``; fonts from ``fonts`` or
    :func:`~display.render.fonts.default_fonts`.
    """
    return compose(view, device, fonts=fonts).sign


def sign_config(room: RoomConfig, size: str | None) -> DeviceConfig:
    """The room's first e-ink device, resized by ``--size``; a 296x128 default if it has none."""
    device = next((d for d in room.devices if d.kind == "eink"), None)
    if device is None:
        device = DeviceConfig(id="preview", kind=DeviceKind.EINK, url="virtual:.")
    if size:
        m = re.fullmatch(r"(\d{2,4})x(\d{2,4})", size)
        if not m:
            raise ConfigError("--size", "", f"{size!r} is not WIDTHxHEIGHT", "e.g. --size 800x480")
        device = dataclasses.replace(device, size=(int(m[1]), int(m[2])))
    return device
