"""``identify DEVICE``: make one panel show a test pattern for a few seconds.

Identifying works through the renderers: while a device is being identified its renderer returns
the pattern instead of the room (:func:`pattern_led`, :func:`pattern_sign`), so every transport
(serial, WLED, MQTT, virtual) shows it with no special command, and a resend afterwards restores
the room's state.
"""

from __future__ import annotations

import threading

from display.clock import Clock
from display.config import DeviceConfig
from display.outputs import Effect, LedOutput, SignImage

DEFAULT_SECONDS = 10.0


class Identify:
    """Which devices show their pattern, until when (monotonic seconds). Thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, device_id: str, seconds: float = DEFAULT_SECONDS) -> None:
        with self._lock:
            self._until[device_id] = self._clock.monotonic() + seconds

    def active(self, device_id: str) -> bool:
        with self._lock:
            until = self._until.get(device_id)
            return until is not None and self._clock.monotonic() < until


def pattern_led() -> LedOutput:
    """Full-brightness white, blinking: unlike any state colour."""
    return LedOutput((255, 255, 255), Effect.BLINK, 255)


def pattern_sign(device: DeviceConfig) -> SignImage:
    """A checkerboard frame with the device id and panel size in the middle (both planes)."""
    from PIL import Image, ImageDraw

    from display.render.fonts import default_fonts

    w, h = device.size
    if device.rotation in (90, 270):
        w, h = h, w
    black = Image.new("1", (w, h), 1)
    draw = ImageDraw.Draw(black)
    draw.fontmode = "1"
    cell = max(4, min(w, h) // 16)
    for y in range(0, h, cell):
        for x in range(0, w, cell):
            inner = cell <= x < w - 2 * cell and cell <= y < h - 2 * cell
            if not inner and (x // cell + y // cell) % 2 == 0:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=0)
    label = f"{device.id}\n{device.size[0]}x{device.size[1]} {device.palette.value}"
    font = default_fonts().font(label, max(10, min(w, h) // 8))
    draw.multiline_text((w // 2, h // 2), label, font=font, fill=0, anchor="mm", align="center")
    red = None
    if device.palette.value == "bwr":
        red = Image.new("1", (w, h), 1)
        ImageDraw.Draw(red).rectangle([cell * 2, cell * 2, w - cell * 2 - 1, h - cell * 2 - 1],
                                      outline=0, width=max(2, cell // 2))
    if device.rotation:
        # Pillow rotates counter-clockwise; our rotation is clockwise, as in the renderer.
        black = black.rotate(-device.rotation, expand=True)
        red = red.rotate(-device.rotation, expand=True) if red is not None else None
    return SignImage(black, red)
