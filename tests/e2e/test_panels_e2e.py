"""End to end on simulated boards (display/testing/boardsim.py): what the real-firmware tests
(test_firmware_mpy.py) cannot do cheaply, a cable pulled and plugged back in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.config import parse_config
from display.devices.factory import make_device
from display.encode.planes import planes_bytes
from display.intake.sink import EventSink
from display.node import Node
from display.render.eink import render_sign
from display.store import ScheduleStore
from display.testing.boardsim import BoardSim
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.firmware import panel_board
from display.testing.waiting import wait_for

START = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def door(tmp_path: Path) -> Iterator[tuple[Any, ...]]:
    with BoardSim(tmp_path, name="led-board") as led_board, \
            BoardSim(tmp_path, panel_board.Capabilities(width=296, height=128, palette="bwr"),
                     name="sign-board") as sign_board:
        config = parse_config(f"""
[node]
timezone = "Asia/Shanghai"
language = "zh+en"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "3F 大会议室"
[[rooms.devices]]
id = "led"
kind = "led"
url = "{led_board.path}"
[[rooms.devices]]
id = "sign"
kind = "eink"
url = "{sign_board.path}"
size = "296x128"
palette = "bwr"
""", tmp_path / "room-display.toml")
        clock = FakeClock(START)
        with ScheduleStore(tmp_path / "state" / "s.db") as store:
            node = Node(config, store, clock, make_device)
            try:
                yield node, EventSink(store, clock, node.notify), led_board, sign_board, config
            finally:
                node.close()


def test_unplugged_sign_recovers_by_itself(door: tuple[Any, ...]) -> None:
    node, sink, _led_board, sign_board, config = door
    node.tick()
    wait_for(lambda: sign_board.image_planes, what="first image")
    sign_board.unplug()
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    node.tick()
    wait_for(lambda: not node.devices()["sign"][1].health().online, what="sign offline")
    sign_board.plug()
    view = node.views()["omm_a"]
    black, red = planes_bytes(render_sign(view, config.rooms[0].devices[1]))
    wait_for(lambda: sign_board.image_planes == black + (red or b""), 20,
             what="busy sign after replug, no restart")
    wait_for(lambda: node.devices()["sign"][1].health().online, what="online again")
