"""The canvas: a sign's black (and red) mode ``"1"`` planes and the inks drawn on them.

Shapes and text plans (:mod:`display.render.typeset`) go on both planes at once, so a pixel is
never both black and red; every string drawn is recorded as a :class:`PlacedText`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from PIL import Image, ImageDraw

from display.outputs import Palette
from display.render.fonts import Fonts
from display.render.geometry import Box
from display.render.typeset import Seg, TextPlan, typesetter_for


class Ink(Enum):
    """What a drawn pixel becomes on the panel."""

    WHITE = 0
    BLACK = 1
    RED = 2  # black on a bw panel


@dataclass(frozen=True, slots=True)
class PlacedText:
    """A string as drawn: the box it had to fit, its ink bounds, the text after wrapping or
    ellipsis (lines joined by newlines) and the font size used."""

    role: str
    box: Box
    bbox: tuple[int, int, int, int]
    text: str
    size: int
    truncated: bool


class Canvas:
    """The black (and red) planes, drawn together so a pixel is never both black and red."""

    def __init__(self, size: tuple[int, int], palette: Palette, fonts: Fonts) -> None:
        self.size = size
        self.black = Image.new("1", size, 1)
        self.red = Image.new("1", size, 1) if palette is Palette.BWR else None
        self._draws = [ImageDraw.Draw(self.black)]
        if self.red is not None:
            self._draws.append(ImageDraw.Draw(self.red))
        for d in self._draws:
            d.fontmode = "1"  # crisp 1-bit glyphs, no anti-alias threshold artefacts
        self.type = typesetter_for(fonts)
        self.placed: list[PlacedText] = []

    @property
    def has_red(self) -> bool:
        """True on a ``bwr`` panel; elsewhere red ink comes out black."""
        return self.red is not None

    def _fills(self, ink: Ink) -> list[tuple[ImageDraw.ImageDraw, int]]:
        if ink is Ink.RED and self.red is None:
            ink = Ink.BLACK
        values = [0 if ink is Ink.BLACK else 1]
        if self.red is not None:
            values.append(0 if ink is Ink.RED else 1)
        return list(zip(self._draws, values, strict=True))

    def rect(self, box: Box, ink: Ink) -> None:
        """Fill ``box``; an empty box draws nothing."""
        if box.w <= 0 or box.h <= 0:
            return
        for d, v in self._fills(ink):
            d.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), fill=v)

    def frame(self, box: Box, ink: Ink, width: int) -> None:
        """An outline of ``width`` pixels just inside ``box``."""
        for d, v in self._fills(ink):
            d.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), outline=v, width=width)

    def polygon(self, points: Sequence[tuple[int, int]], ink: Ink) -> None:
        """Fill the polygon through ``points``."""
        for d, v in self._fills(ink):
            d.polygon(list(points), fill=v)

    def text(self, role: str, segs: Sequence[Seg], box: Box, max_size: int, min_size: int,
             ink: Ink, *, align: str = "left", valign: str = "center", wrap: bool = False,
             drop_below: float = 0.75) -> PlacedText | None:
        """Fit and draw ``segs`` in ``box``; returns where the ink went."""
        plan = self.type.fit(segs, box, max_size, min_size, wrap=wrap, drop_below=drop_below)
        if plan is None:
            return None
        return self.draw_plan(role, plan, box, ink, align=align, valign=valign)

    def text_first(self, role: str, candidates: Sequence[Sequence[Seg]], box: Box, max_size: int,
                   min_size: int, ink: Ink, *, align: str = "left",
                   valign: str = "center") -> PlacedText | None:
        """Draw the first candidate that fits whole at ``min_size`` or more (e.g. "as of 10:05",
        then "10:05"); the last one is ellipsised if nothing fits."""
        for segs in candidates[:-1]:
            plan = self.type.largest(segs, box, min_size, max(min_size, max_size))
            if plan is not None:
                return self.draw_plan(role, plan, box, ink, align=align, valign=valign)
        return self.text(role, candidates[-1], box, max_size, min_size, ink, align=align,
                         valign=valign)

    def draw_plan(self, role: str, plan: TextPlan, box: Box, ink: Ink, *, align: str = "left",
                  valign: str = "center") -> PlacedText:
        """Draw a fitted ``plan`` aligned in ``box`` and record where its ink went."""
        total = plan.height
        if valign == "top":
            y = box.y
        elif valign == "bottom":
            y = box.bottom - total
        else:
            y = box.y + (box.h - total) // 2
        ux0 = uy0 = 1 << 30
        ux1 = uy1 = -(1 << 30)
        for ln in plan.lines:
            x0, y0, x1, y1 = ln.ink
            if align == "center":
                left = box.x + (box.w - ln.width) // 2
            elif align == "right":
                left = box.right - ln.width
            else:
                left = box.x
            ox = left - x0
            # Baseline at the font's ascent below the line top, nudged so ink stays in the line.
            base = y + ln.ascent
            base = max(base, y - y0)
            base = min(base, y + ln.height - y1)
            for run in ln.runs:
                for d, v in self._fills(ink):
                    d.text((ox + run.dx, base), run.text, font=run.font, fill=v, anchor="ls",
                           stroke_width=run.stroke, stroke_fill=v)
            ux0, uy0 = min(ux0, ox + x0), min(uy0, base + y0)
            ux1, uy1 = max(ux1, ox + x1), max(uy1, base + y1)
            y += ln.height
        shown = "\n".join("".join(r.text for r in ln.runs) for ln in plan.lines)
        placed = PlacedText(role, box, (ux0, uy0, ux1, uy1), shown, plan.size, plan.truncated)
        self.placed.append(placed)
        return placed
