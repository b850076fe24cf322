"""LED renderer: colour and effect per state, stale, per-device overrides."""

from __future__ import annotations

import dataclasses
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


@pytest.mark.parametrize(("state", "colour", "effect"), [
    (State.FREE, (0, 192, 0), Effect.STEADY),
    (State.SOON, (255, 160, 0), Effect.PULSE),
    (State.BUSY, (255, 0, 0), Effect.STEADY),
    (State.ENDING, (255, 0, 192), Effect.PULSE),
])
def test_default_colour_and_effect_per_state(state: State, colour: tuple[int, int, int],
                                             effect: Effect) -> None:
    out = led_output(sample_view(state), _devices()["led-default"])
    assert out == LedOutput(colour=colour, effect=effect, brightness=128)


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
    assert led_output(sample_view(State.BUSY), dev) == LedOutput((128, 0, 0), Effect.STEADY, 40)
    assert led_output(sample_view(State.FREE), dev).effect is Effect.PULSE
    stale = led_output(sample_view(State.FREE, stale=True), dev)
    assert stale == LedOutput((0, 0, 255), Effect.STEADY, 40)


def test_device_without_colour_tables_gets_defaults() -> None:
    dev = DeviceConfig(id="bare", kind="led", url="virtual:x", protocol="panel")
    assert led_output(sample_view(State.BUSY), dev).colour == (255, 0, 0)
    assert led_output(sample_view(State.BUSY, stale=True), dev).effect is Effect.BLINK
    dim = dataclasses.replace(dev, brightness=0)
    assert led_output(sample_view(State.FREE), dim).brightness == 0
