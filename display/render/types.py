"""Output values of the renderers, shared with the encoders and transports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
