"""Rectangles in a sign's logical pixels: a layout's regions and the boxes text is fitted to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in logical pixels; ``right``/``bottom`` are exclusive."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """First column to the right of the box."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """First row below the box."""
        return self.y + self.h

    def inset(self, dx: int, dy: int | None = None) -> Box:
        """The box shrunk by ``dx`` left and right and ``dy`` (default ``dx``) top and bottom."""
        dy = dx if dy is None else dy
        return Box(self.x + dx, self.y + dy, max(0, self.w - 2 * dx), max(0, self.h - 2 * dy))

    def contains(self, bbox: tuple[int, int, int, int]) -> bool:
        """True if ``(x0, y0, x1, y1)`` (exclusive ends) lies inside this box."""
        x0, y0, x1, y1 = bbox
        return self.x <= x0 and self.y <= y0 and x1 <= self.right and y1 <= self.bottom
