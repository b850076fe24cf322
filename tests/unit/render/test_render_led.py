"""LED renderer: colour and effect per state, stale, per-device overrides."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from display.config import DeviceConfig, parse_config
from display.model import State
from display.outputs import Effect, LedOutput
from display.render.led import led_output
from display.render.samples import sample_view

CONFIG = """
[node]
name = "pi-test"
timezone = "Asia/Shanghai"

[[rooms]]
open_id = "omm_1"
name = "3F"

[[rooms.devices]]
id = "led-default"
kind = "led"
url = "virtual:out"

[[rooms.devices]]
id = "led-custom"
kind = "led"
url = "virtual:out"
brightness = 40
colours = { busy = "#800000", stale = "#0000ff" }
effects = { free = "pulse", stale = "steady" }
"""


def _devices() -> dict[str, DeviceConfig]:
    cfg = parse_config(CONFIG, Path("/tmp/room-display.toml"))
    return {d.id: d for _, d in cfg.devices()}


@pytest.mark.parametrize(("state", "colour", "effect", "brightness"), [
    (State.FREE, (0, 192, 0), Effect.STEADY, 128),
    (State.SOON, (255, 160, 0), Effect.PULSE, 128),
    (State.BUSY, (255, 0, 0), Effect.STEADY, 51),
    (State.ENDING, (255, 0, 192), Effect.PULSE, 51),
])
def test_default_colour_and_effect_per_state(state: State, colour: tuple[int, int, int],
                                             effect: Effect, brightness: int) -> None:
    # Taken rooms glow at 40 % of the brightness, free ones at full (issue 18: not hue only).
    out = led_output(sample_view(state), _devices()["led-default"])
    assert out == LedOutput(colour=colour, effect=effect, brightness=brightness)


@pytest.mark.parametrize("state", list(State))
def test_stale_blinks_the_state_colour(state: State) -> None:
    dev = _devices()["led-default"]
    fresh = led_output(sample_view(state), dev)
    stale = led_output(sample_view(state, stale=True), dev)
    assert stale.colour == fresh.colour
    assert stale.effect is Effect.BLINK


def test_defaults_tell_every_state_and_stale_apart() -> None:
    dev = _devices()["led-default"]
    looks = [(o.colour, o.effect) for o in (led_output(sample_view(s), dev) for s in State)]
    assert len(set(looks)) == 4
    # Red means taken and green free, as on every room sign.
    assert looks[list(State).index(State.FREE)][0][1] > 150
    assert looks[list(State).index(State.BUSY)][0] == (255, 0, 0)
    # No fresh state blinks, so a blinking light always means stale.
    assert all(e is not Effect.BLINK for _, e in looks)


def test_configured_overrides() -> None:
    dev = _devices()["led-custom"]
    assert led_output(sample_view(State.BUSY), dev) == LedOutput((128, 0, 0), Effect.STEADY, 16)
    assert led_output(sample_view(State.FREE), dev).effect is Effect.PULSE
    stale = led_output(sample_view(State.FREE, stale=True), dev)
    assert stale == LedOutput((0, 0, 255), Effect.STEADY, 40)


def test_device_without_colour_tables_gets_defaults() -> None:
    dev = DeviceConfig(id="bare", kind="led", url="virtual:x", protocol="panel")
    assert led_output(sample_view(State.BUSY), dev).colour == (255, 0, 0)
    assert led_output(sample_view(State.BUSY, stale=True), dev).effect is Effect.BLINK
    dim = dataclasses.replace(dev, brightness=0)
    assert led_output(sample_view(State.FREE), dim).brightness == 0


# -- readable without colour (issue 18) ------------------------------------------------------

# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB.
CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
}


def _linear(c: int) -> float:
    v = c / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """Linear sRGB -> CIELAB (D65)."""
    r, g, b = (min(1.0, max(0.0, v)) for v in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def _simulate(colour: tuple[int, int, int], brightness: int,
              matrix: str | None) -> tuple[float, float, float]:
    """The light of an LED as a viewer with ``matrix``'s colour vision gets it, in linear RGB:
    a WS2812 emits in proportion to its duty, so brightness scales linear light."""
    lin = [_linear(c) * brightness / 255 for c in colour]
    if matrix is not None:
        lin = [sum(m * v for m, v in zip(row, lin, strict=True)) for row in CVD[matrix]]
    return lin[0], lin[1], lin[2]


def seen(colour: tuple[int, int, int], brightness: int, matrix: str | None) -> tuple[float, ...]:
    """CIELAB of :func:`_simulate`."""
    return _lab(_simulate(colour, brightness, matrix))


def luminance(out: LedOutput, matrix: str | None) -> float:
    r, g, b = (min(1.0, max(0.0, v)) for v in _simulate(out.colour, out.brightness, matrix))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def hue(lab: tuple[float, ...]) -> float:
    return math.degrees(math.atan2(lab[2], lab[1]))


def delta_e(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


PALETTE_CONFIG = CONFIG.replace('name = "pi-test"', 'name = "pi-test"\nled_palette = "colourblind"')


def test_every_state_differs_by_more_than_hue() -> None:
    """Each pair of fresh states differs by effect or brightness, and stale by blinking."""
    for config in (CONFIG, PALETTE_CONFIG):
        dev = {d.id: d for _, d in parse_config(config, Path("/tmp/c.toml")).devices()}[
            "led-default"]
        outs = {s: led_output(sample_view(s), dev) for s in State}
        for a in State:
            for b in State:
                if a is not b:
                    assert (outs[a].effect, outs[a].brightness) != \
                        (outs[b].effect, outs[b].brightness), (a, b)
            assert led_output(sample_view(a, stale=True), dev).effect is Effect.BLINK


@pytest.mark.parametrize("matrix", ["protanopia", "deuteranopia"])
def test_default_colours_that_merge_for_colour_blind_eyes_still_differ(matrix: str) -> None:
    """Green and red become the same olive under red-green colour blindness: the level and the
    motion still tell them apart."""
    dev = _devices()["led-default"]
    outs = {s: led_output(sample_view(s), dev) for s in State}
    full = {s: seen(o.colour, 255, matrix) for s, o in outs.items()}
    assert abs(hue(full[State.FREE]) - hue(full[State.BUSY])) < 10  # one olive: why levels
    # The pairs that share an effect differ at least twofold in the light that reaches the eye.
    for free, taken in ((State.FREE, State.BUSY), (State.SOON, State.ENDING)):
        assert luminance(outs[free], matrix) > 2 * luminance(outs[taken], matrix), (free, taken)


@pytest.mark.parametrize("matrix", [None, "protanopia", "deuteranopia"])
def test_colourblind_palette_keeps_every_state_apart(matrix: str | None) -> None:
    dev = {d.id: d for _, d in parse_config(PALETTE_CONFIG, Path("/tmp/c.toml")).devices()}[
        "led-default"]
    colours = {s: led_output(sample_view(s), dev).colour for s in State}
    assert colours[State.FREE] == (0x00, 0x72, 0xB2) and colours[State.BUSY] == (0xD5, 0x5E, 0x00)
    looks = {s: seen(c, 255, matrix) for s, c in colours.items()}
    for a in State:
        for b in State:
            if a is not b:
                assert delta_e(looks[a], looks[b]) > 20, (matrix, a, b)
    # Free and busy keep opposite hues (blue, orange), where the default's become one olive.
    turn = abs(hue(looks[State.FREE]) - hue(looks[State.BUSY])) % 360
    assert min(turn, 360 - turn) > 90
    if matrix is not None:
        default = _devices()["led-default"]
        d = {s: seen(led_output(sample_view(s), default).colour, 255, matrix) for s in State}
        assert abs(hue(d[State.FREE]) - hue(d[State.BUSY])) < 10


def test_a_device_may_pick_its_own_palette_and_colours_still_override() -> None:
    config = CONFIG.replace('id = "led-custom"', 'id = "led-custom"\nled_palette = "colourblind"')
    devs = {d.id: d for _, d in parse_config(config, Path("/tmp/c.toml")).devices()}
    assert led_output(sample_view(State.FREE), devs["led-default"]).colour == (0, 192, 0)
    custom = devs["led-custom"]
    assert led_output(sample_view(State.FREE), custom).colour == (0x00, 0x72, 0xB2)
    assert led_output(sample_view(State.BUSY), custom).colour == (128, 0, 0)  # its own busy


def test_quiet_hours_turn_the_light_off_or_to_the_closed_colour() -> None:
    closed = dataclasses.replace(sample_view(State.FREE), closed_until=sample_view().occupancy.at)
    assert led_output(closed, _devices()["led-default"]) == LedOutput((0, 0, 0), Effect.STEADY, 0)
    config = CONFIG.replace('name = "pi-test"', 'name = "pi-test"\nclosed_led = "#100800"')
    devs = {d.id: d for _, d in parse_config(config, Path("/tmp/c.toml")).devices()}
    assert led_output(closed, devs["led-default"]) == LedOutput((16, 8, 0), Effect.STEADY, 128)
    assert led_output(dataclasses.replace(closed, stale=True), devs["led-custom"]).colour == \
        (16, 8, 0)
