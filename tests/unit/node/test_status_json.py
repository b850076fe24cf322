"""The status document the node writes and serves at many rooms: one log line for a pass that
shows many rooms, the rooms' JSON joined as is, the file rewritten only when it changed."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.clock import Clock
from display.config import DeviceConfig, parse_config
from display.devices.base import Device
from display.intake.sink import EventSink
from display.node import (
    LOG_ROOMS,
    STATUS_COALESCE,
    STATUS_SETTLE,
    Node,
    runtime_status_path,
    status_path,
)
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
ROOMS = 3 * LOG_ROOMS


def config_text(rooms: int) -> str:
    return ('[node]\nname = "many"\ntimezone = "Asia/Shanghai"\nstate_dir = "state"\n'
            + "".join(f'[[rooms]]\nopen_id = "omm_{i:03d}"\nname = "{i}F 大会议室"\n'
                      for i in range(rooms)))


def no_device(dev: DeviceConfig, clock: Clock) -> Device:
    raise AssertionError("no devices here")


@pytest.fixture
def many(tmp_path: Path) -> Any:
    config = parse_config(config_text(ROOMS), tmp_path / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, no_device)
    yield config, clock, store, node, EventSink(store, clock, node.notify)
    node.close()
    store.close()


def room_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "display.node"
            and r.getMessage().startswith(("room ", f"{ROOMS} rooms"))]


def test_a_pass_showing_many_rooms_logs_one_line_and_a_change_its_room(
        many: Any, caplog: pytest.LogCaptureFixture) -> None:
    _config, _clock, _store, node, sink = many
    with caplog.at_level(logging.INFO, logger="display.node"):
        node.tick()
    assert room_lines(caplog) == [f"{ROOMS} rooms shown anew: {ROOMS} free"]
    caplog.clear()
    sink.accept(envelope(start=START - timedelta(minutes=5), end=START + timedelta(hours=1),
                         rooms=("omm_007",), event_time=1))
    with caplog.at_level(logging.INFO, logger="display.node"):
        node.tick()
    assert room_lines(caplog) == ["room 7F 大会议室 (omm_007): busy"]


def test_the_status_file_is_the_rooms_json_and_is_rewritten_only_on_change(many: Any) -> None:
    config, clock, _store, node, sink = many
    node.tick()
    path = runtime_status_path(config)
    written = json.loads(status_path(config).read_text(encoding="utf-8"))
    assert written["rooms"] == node.status()["rooms"]
    assert [r["name"] for r in written["rooms"]][:2] == ["0F 大会议室", "1F 大会议室"]
    inode = os.stat(path).st_ino
    clock.advance(timedelta(seconds=11))  # past the heartbeat: nothing changed, mtime only
    node.tick()
    assert os.stat(path).st_ino == inode
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), rooms=("omm_003",),
                         event_time=1))
    node.tick()
    assert os.stat(path).st_ino != inode  # replaced: the room changed
    rooms = json.loads(path.read_text(encoding="utf-8"))["rooms"]
    assert rooms[3]["state"] == "busy" and rooms[3]["current"]["organizer_open_id"]
    assert rooms == node.status()["rooms"]


def test_a_failed_write_is_made_whole_at_the_next_pass(many: Any) -> None:
    config, clock, _store, node, sink = many
    node.tick()
    path = runtime_status_path(config)
    blocker = path.with_name(f".{path.name}.tmp")  # where the write goes first
    blocker.mkdir()
    (blocker / "x").write_text("a directory cannot be replaced: the write fails")
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), rooms=("omm_004",),
                         event_time=1))
    node.tick()
    assert json.loads(path.read_text())["rooms"][4]["state"] == "free"  # not written
    (blocker / "x").unlink()
    blocker.rmdir()
    clock.advance(timedelta(seconds=11))
    node.tick()  # the heartbeat, nothing new since: written whole, the last write failed
    assert json.loads(path.read_text())["rooms"][4]["state"] == "busy"


def test_a_large_document_is_written_shortly_after_a_change_and_at_most_twice_a_second(
        many: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past LARGE_STATUS a change is written STATUS_SETTLE later (its MQTT messages and devices
    go first) and a burst is one write per STATUS_COALESCE: still within a second."""
    config, clock, _store, node, sink = many
    monkeypatch.setattr("display.node.LARGE_STATUS", 1000)  # these 30 rooms count as large
    node.tick()
    path = runtime_status_path(config)

    def book(room: str, n: int) -> float:
        sink.accept(envelope(uid=f"bk{n}", start=START, end=START + timedelta(hours=1),
                             rooms=(room,), event_time=1))
        return node.tick()

    def state(i: int) -> str:
        return str(json.loads(path.read_text())["rooms"][i]["state"])

    clock.advance(timedelta(seconds=1))
    assert book("omm_001", 1) == pytest.approx(STATUS_SETTLE)  # asleep until it is due
    assert state(1) == "free"
    clock.advance(timedelta(seconds=STATUS_SETTLE))
    node.tick()
    assert state(1) == "busy"
    clock.advance(timedelta(seconds=0.2))
    assert book("omm_002", 2) == pytest.approx(STATUS_COALESCE - 0.2)
    clock.advance(timedelta(seconds=0.1))
    book("omm_003", 3)  # the same burst: one write for both
    assert (state(2), state(3)) == ("free", "free")
    clock.advance(timedelta(seconds=STATUS_COALESCE - 0.3))
    node.tick()
    assert (state(2), state(3)) == ("busy", "busy")
