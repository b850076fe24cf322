"""Output values of the renderers, shared with the encoders and transports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Effect(StrEnum):
    """How an LED shows its colour."""

    STEADY = "steady"
    BLINK = "blink"  # slow on/off, about 1 Hz
    PULSE = "pulse"  # smooth breathing


class Palette(StrEnum):
    """Colours an e-ink panel can show."""

    BW = "bw"
    BWR = "bwr"


RGB = tuple[int, int, int]


def parse_hex(text: str) -> RGB:
    """``"#rrggbb"`` (or ``"rrggbb"``) as an RGB triple; the caller checks the form first."""
    h = text.removeprefix("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def hex_colour(colour: RGB) -> str:
    """An RGB triple as ``"#rrggbb"`` (what the config takes and the JSON payloads carry)."""
    return "#{:02x}{:02x}{:02x}".format(*colour)


@dataclass(frozen=True, slots=True)
class LedOutput:
    """What an LED light should do: colour (0-255 each), effect and brightness (0-255)."""

    colour: RGB
    effect: Effect = Effect.STEADY
    brightness: int = 128

    def __post_init__(self) -> None:
        if len(self.colour) != 3 or not all(0 <= c <= 255 for c in self.colour):
            raise ValueError(f"colour must be three values 0-255, got {self.colour!r}")
        if not 0 <= self.brightness <= 255:
            raise ValueError(f"brightness must be 0-255, got {self.brightness}")


@dataclass(frozen=True, slots=True, eq=False)
class SignImage:
    """A rendered e-ink sign as the panel's bit planes, already rotated to the panel's frame.

    ``black`` and ``red`` are Pillow images of mode ``"1"`` and the panel's native size, where a
    *black* pixel (value 0) means ink on that plane. ``red`` is ``None`` for black/white panels.
    """

    black: Any  # PIL.Image.Image; typed loosely so importing this module never imports Pillow
    red: Any | None = None

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.black.size
        return int(w), int(h)

    def to_rgb(self) -> Any:
        """An RGB image of what the panel shows (for ``preview`` and virtual panels)."""
        from PIL import Image, ImageChops

        rgb = Image.new("RGB", self.size, (255, 255, 255))
        # A mask selects where it is non-zero, so invert: ink (0) becomes 255.
        rgb.paste((0, 0, 0), mask=ImageChops.invert(self.black.convert("L")))
        if self.red is not None:
            rgb.paste((200, 0, 0), mask=ImageChops.invert(self.red.convert("L")))
        return rgb
