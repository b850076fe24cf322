"""WLED's JSON API state for an LED output: the payload, whatever carries it (serial, MQTT).

Pure: no I/O. The effect speeds are computed from WLED's own effect code (wled00/FX.cpp) so a
WLED light blinks and breathes at the periods the panel protocol gives its effects.
"""

from __future__ import annotations

import json
from typing import Any

from display.outputs import Effect, LedOutput

# WLED effect ids (FX_MODE_* in WLED's FX.h): 0 Solid, 1 Blink, 2 Breathe.
WLED_EFFECTS = {Effect.STEADY: 0, Effect.BLINK: 1, Effect.PULSE: 2}
# The periods the panel protocol gives its effects (hardware/PROTOCOL.md, SET_LED).
BLINK_PERIOD_MS = 1000
PULSE_PERIOD_MS = 2000
FRAME_MS = 1000 // 42  # WLED's FRAMETIME_FIXED: 1000 / WLED_FPS (42) in wled00/FX.h
SOLID_SPEED = 128  # Solid ignores the speed; WLED's default
BLINK_DUTY = 128  # "ix", Blink's duty cycle: 128/256 of the cycle on


def blink_speed(period_ms: int) -> int:
    """``sx`` for a Blink cycle of ``period_ms``.

    wled00/FX.cpp ``blink()``: ``cycleTime = (255 - speed) * 20`` then ``cycleTime +=
    FRAMETIME * 2``, i.e. period = (255 - sx) * 20 ms + two frames (sx 128 is 2.59 s).
    """
    return max(0, min(255, 255 - round((period_ms - 2 * FRAME_MS) / 20)))


def breathe_speed(period_ms: int) -> int:
    """``sx`` for a Breathe period of ``period_ms``.

    wled00/FX.cpp ``mode_breath()``: ``counter = (now * ((speed >> 3) + 10)) & 0xFFFF``, so one
    breath lasts 65536 / ((sx >> 3) + 10) ms (sx 128 is 2.5 s).
    """
    step = max(0, min(31, round(65536 / period_ms) - 10))
    return step << 3


def blink_period_ms(sx: int) -> int:
    """The Blink cycle WLED runs at speed ``sx`` (the inverse of :func:`blink_speed`)."""
    return (255 - sx) * 20 + 2 * FRAME_MS


def breathe_period_ms(sx: int) -> float:
    """The Breathe period WLED runs at speed ``sx``."""
    return 65536 / ((sx >> 3) + 10)


WLED_SPEEDS = {Effect.STEADY: SOLID_SPEED, Effect.BLINK: blink_speed(BLINK_PERIOD_MS),
               Effect.PULSE: breathe_speed(PULSE_PERIOD_MS)}


def wled_state(output: LedOutput) -> dict[str, Any]:
    """WLED JSON API state for ``output``: on, brightness, first segment's colours and effect.

    ``pal`` 0 ("Default") makes Blink and Breathe draw the segment's own colour rather than a
    palette the board may have been left with (``Segment::color_from_palette``: palette 0 returns
    the segment colour); ``col[1]``, black, is what Blink shows between flashes and what Breathe
    fades towards.
    """
    r, g, b = output.colour
    seg: dict[str, Any] = {"col": [[r, g, b], [0, 0, 0]], "fx": WLED_EFFECTS[output.effect],
                           "sx": WLED_SPEEDS[output.effect], "pal": 0}
    if output.effect is Effect.BLINK:
        seg["ix"] = BLINK_DUTY
    return {"on": output.brightness > 0, "bri": output.brightness, "seg": [seg]}


def wled_line(output: LedOutput) -> bytes:
    """:func:`wled_state` as one compact JSON line, as written to the port."""
    return json.dumps(wled_state(output), separators=(",", ":")).encode() + b"\n"
