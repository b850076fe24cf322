"""Quiet hours with a fake clock: a closing and an opening, a booking inside quiet hours, the
sign drawn once while closed, a room's own hours (issue 18, item 6)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from display.config import Config, parse_config
from display.devices.factory import make_device
from display.devices.virtual import VirtualDevice
from display.intake.sink import EventSink
from display.node import Node
from display.status import render_text
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for

TZ = ZoneInfo("Asia/Shanghai")
FRIDAY_EVENING = datetime(2026, 11, 27, 19, 50, tzinfo=TZ)  # a Friday

CONFIG = """
[node]
name = "test-node"
timezone = "Asia/Shanghai"
state_dir = "state"
open_hours = "Mon-Fri 08:00-20:00, Sat 09:00-13:00"
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
[[rooms.devices]]
id = "a-sign"
kind = "eink"
url = "virtual:panels"
size = "400x300"
[[rooms]]
open_id = "omm_b"
name = "Room B"
open_hours = "always"
[[rooms.devices]]
id = "b-led"
kind = "led"
url = "virtual:panels"
"""


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    config = parse_config(CONFIG, tmp_path / "room-display.toml")
    clock = FakeClock(FRIDAY_EVENING)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, make_device)
    sink = EventSink(store, clock, node.notify)
    yield config, clock, node, sink
    node.close()
    store.close()


def panel(config: Config, device: str) -> dict[str, Any]:
    path = config.path.parent / "panels" / f"{device}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def sign_writes(node: Node) -> int:
    device = node.devices()["a-sign"][1]
    assert isinstance(device, VirtualDevice)
    return device.writes


def step_to(clock: FakeClock, node: Node, when: datetime) -> float:
    clock.advance(when - clock.now())  # both clocks: not a wall-clock step
    return node.tick()


def status_room(config: Config, open_id: str) -> dict[str, Any]:
    doc = json.loads((config.node.state_dir / "status.json").read_text())
    return next(r for r in doc["rooms"] if r["open_id"] == open_id)


def test_closing_and_opening_on_their_instants(setup: Any) -> None:
    config, clock, node, _sink = setup
    node.tick()
    wait_for(lambda: panel(config, "a-led").get("led", {}).get("brightness") == 128, what="lit")
    assert panel(config, "a-led")["closed"] is False
    # The loop wakes at 20:00 itself: three seconds before, it sleeps three seconds.
    assert step_to(clock, node, local(2026, 11, 27, 19, 59, 57)) == pytest.approx(3, abs=0.01)
    step_to(clock, node, local(2026, 11, 27, 20, 0))
    led = wait_for(lambda: (p := panel(config, "a-led"))["closed"] and p, what="closed")
    assert led["led"] == {"colour": "#000000", "effect": "steady", "brightness": 0}
    assert datetime.fromisoformat(led["opens_at"]) == local(2026, 11, 28, 9, 0)
    room = status_room(config, "omm_a")
    assert room["closed"] is True and room["opens_at"] == "2026-11-28T09:00:00+08:00"
    text = render_text(json.loads((config.node.state_dir / "status.json").read_text()))
    assert "  FREE  [CLOSED until Sat 09:00]" in text
    assert text.count("CLOSED") == 1  # room B keeps no quiet hours
    # Room B keeps no quiet hours: open, lit, and said so.
    assert status_room(config, "omm_b")["closed"] is False
    assert panel(config, "b-led")["led"]["brightness"] == 128
    # Saturday 08:59:58: the loop wakes at the opening; at 09:00 the lights come back.
    assert step_to(clock, node, local(2026, 11, 28, 8, 59, 58)) == pytest.approx(2, abs=0.01)
    step_to(clock, node, local(2026, 11, 28, 9, 0))
    wait_for(lambda: panel(config, "a-led")["closed"] is False, what="open again")
    assert panel(config, "a-led")["led"]["colour"] == "#00c000"
    assert status_room(config, "omm_a")["opens_at"] is None


def test_the_sign_is_drawn_once_while_closed(setup: Any) -> None:
    config, clock, node, _sink = setup
    step_to(clock, node, local(2026, 11, 27, 20, 0))  # the first tick: one drawing
    wait_for(lambda: sign_writes(node) == 1, what="closed sign drawn")
    drawn = 1
    assert panel(config, "a-sign")["closed"] is True
    png = (config.path.parent / "panels" / "a-sign.png").read_bytes()
    # A night of ticks, every 5 minutes (the loop's forced redraw is every 10): nothing redrawn.
    t = local(2026, 11, 27, 20, 0)
    while t < local(2026, 11, 28, 8, 55):
        t += timedelta(minutes=5)
        step_to(clock, node, t)
    assert sign_writes(node) == drawn
    assert (config.path.parent / "panels" / "a-sign.png").read_bytes() == png
    step_to(clock, node, local(2026, 11, 28, 9, 0))
    wait_for(lambda: sign_writes(node) == drawn + 1, what="redrawn at opening")
    assert panel(config, "a-sign")["closed"] is False


def test_a_booking_in_quiet_hours_shows_and_closes_again(setup: Any) -> None:
    config, clock, node, sink = setup
    step_to(clock, node, local(2026, 11, 28, 14, 0))  # Saturday afternoon: closed since 13:00
    wait_for(lambda: sign_writes(node) == 1, what="closed sign drawn")
    drawn = 1
    assert panel(config, "a-sign")["closed"] is True
    # A booking appears for 15:00-16:00: the sign is redrawn once, still closed until then.
    sink.accept(envelope(start=local(2026, 11, 28, 15, 0), end=local(2026, 11, 28, 16, 0),
                         event_time=1))
    node.tick()
    wait_for(lambda: sign_writes(node) == drawn + 1, what="redrawn for the booking")
    assert datetime.fromisoformat(panel(config, "a-sign")["next"][0]["start"]) == \
        local(2026, 11, 28, 15, 0)
    step_to(clock, node, local(2026, 11, 28, 14, 50))
    wait_for(lambda: panel(config, "a-led")["state"] == "soon", what="soon")
    assert panel(config, "a-led")["closed"] is False
    assert panel(config, "a-led")["led"]["effect"] == "pulse"
    step_to(clock, node, local(2026, 11, 28, 15, 0))
    wait_for(lambda: panel(config, "a-led")["state"] == "busy", what="busy in quiet hours")
    assert status_room(config, "omm_a")["closed"] is False
    step_to(clock, node, local(2026, 11, 28, 16, 0))
    wait_for(lambda: panel(config, "a-led")["closed"] is True, what="closed after it")
    assert datetime.fromisoformat(panel(config, "a-led")["opens_at"]) == local(2026, 11, 30, 8, 0)


def test_a_room_s_own_hours_override_the_node_s(tmp_path: Path) -> None:
    text = CONFIG.replace('open_hours = "always"', 'open_hours = "Sat 10:00-12:00"')
    config = parse_config(text, tmp_path / "room-display.toml")
    a, b = config.rooms
    saturday_11 = local(2026, 11, 28, 11, 0)
    tz = config.node.tz
    assert config.hours(a).is_open(saturday_11, tz) and config.hours(b).is_open(saturday_11, tz)
    friday_noon = local(2026, 11, 27, 12, 0)
    assert config.hours(a).is_open(friday_noon, tz)
    assert config.hours(b).closed_until(friday_noon, tz, in_use=False) == \
        local(2026, 11, 28, 10, 0)
    assert config.hours(b).closed_until(friday_noon, tz, in_use=True) is None
