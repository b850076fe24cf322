"""The node's loop with a fake clock: events in, virtual panels and status.json out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.config import Config, parse_config
from display.devices.factory import make_device
from display.intake.sink import EventSink, Verdict
from display.node import MAX_SLEEP, Node
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai

CONFIG = """
[node]
name = "test-node"
timezone = "Asia/Shanghai"
state_dir = "state"
[occupancy]
stale_after_minutes = 10
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
[[rooms]]
open_id = "omm_b"
name = "Room B"
"""


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    config = parse_config(CONFIG, tmp_path / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, make_device)
    sink = EventSink(store, clock, node.notify)
    yield config, clock, store, node, sink
    node.close()
    store.close()


def panel(config: Config, device: str) -> dict[str, Any] | None:
    path = config.path.parent / "panels" / f"{device}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_event_turns_the_panel_busy_then_free(setup: Any) -> None:
    config, clock, _store, node, sink = setup
    node.tick()
    wait_for(lambda: (panel(config, "a-led") or {}).get("state") == "free", what="free")
    result = sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    assert result.verdict is Verdict.APPLIED and result.changed == {"omm_a"}
    node.tick()
    wait_for(lambda: (panel(config, "a-led") or {}).get("state") == "busy", what="busy")
    clock.advance(timedelta(minutes=50))
    node.tick()
    wait_for(lambda: (panel(config, "a-led") or {}).get("state") == "ending", what="ending")
    clock.advance(timedelta(minutes=10))
    node.tick()
    wait_for(lambda: (panel(config, "a-led") or {}).get("state") == "free", what="free again")


def test_loop_sleeps_until_the_next_change_capped(setup: Any) -> None:
    _config, _clock, _store, node, sink = setup
    assert node.tick() == MAX_SLEEP  # nothing booked: only the cap
    sink.accept(envelope(start=START + timedelta(seconds=604), end=START + timedelta(hours=1),
                         event_time=1))
    # soon starts 10 minutes before: in 4 s
    assert node.tick() == pytest.approx(4, abs=0.01)


def test_status_json_follows_the_contract(setup: Any) -> None:
    config, _clock, _store, node, sink = setup
    sink.accept(envelope(start=START - timedelta(minutes=5), end=START + timedelta(minutes=55),
                         event_time=1, organizer="ou_bob"))
    sink.accept(envelope(uid="later", start=START + timedelta(hours=2),
                         end=START + timedelta(hours=3), event_time=1))
    node.tick()
    doc = json.loads((config.node.state_dir / "status.json").read_text())
    assert doc["generated_at"].endswith("+08:00")
    room = doc["rooms"][0]
    assert {k: room[k] for k in ("open_id", "name", "state", "stale")} == {
        "open_id": "omm_a", "name": "Room A", "state": "busy", "stale": False}
    assert room["since"] == "2026-11-25T08:55:00+08:00"
    # "until" is what a person reads (the meeting's end); the next state change is changes_at.
    assert room["until"] == "2026-11-25T09:55:00+08:00"
    assert room["changes_at"] == "2026-11-25T09:45:00+08:00"
    assert room["until_text"] == "until 09:55"
    assert room["current"] == {"event_id": "bk1_0", "uid": "bk1", "original_time": 0,
                               "start": "2026-11-25T08:55:00+08:00",
                               "end": "2026-11-25T09:55:00+08:00",
                               "organizer_open_id": "ou_bob"}
    assert [b["uid"] for b in room["next"]] == ["later"]
    device = room["devices"][0]
    assert set(device) == {"id", "kind", "url", "online", "last_update", "error"}
    assert doc["rooms"][1]["state"] == "free" and doc["rooms"][1]["devices"] == []


def test_link_down_turns_stale_after_the_threshold_and_back(setup: Any) -> None:
    config, clock, _store, node, _sink = setup
    node.set_link("feishu", True)
    node.tick()
    node.set_link("feishu", False, "connection lost")
    node.tick()
    assert node.views()["omm_a"].stale is False
    assert node.freshness.next_change(clock.now()) == START + timedelta(minutes=10)
    clock.advance(timedelta(minutes=10))
    node.tick()
    view = node.views()["omm_a"]
    assert view.stale is True
    assert view.as_of == START  # "as of" the moment the link went down
    wait_for(lambda: (panel(config, "a-led") or {}).get("stale") is True, what="stale panel")
    node.set_link("feishu", True)
    node.tick()
    assert node.views()["omm_a"].stale is False


def test_unchanged_state_is_not_reshown(setup: Any) -> None:
    _config, clock, _store, node, _sink = setup
    node.tick()
    device = node.devices()["a-led"][1]
    wait_for(lambda: device.writes == 1, what="first write")
    for _ in range(5):
        clock.advance(timedelta(seconds=30))
        node.tick()
    assert device.writes == 1
    clock.advance(timedelta(minutes=10))
    node.tick()
    wait_for(lambda: device.writes == 2, what="periodic redraw")


def test_events_for_unconfigured_rooms_change_no_panel(setup: Any) -> None:
    _config, _clock, _store, node, sink = setup
    node.tick()
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), rooms=("omm_zzz",),
                         event_time=1))
    node.tick()
    assert {r: v.occupancy.state.value for r, v in node.views().items()} == {
        "omm_a": "free", "omm_b": "free"}


def test_reconfigure_touches_only_what_changed(setup: Any) -> None:
    config, _clock, _store, node, _sink = setup
    node.tick()
    led = node.devices()["a-led"][1]
    wait_for(lambda: led.writes == 1, what="first write")
    text = CONFIG.replace('name = "Room B"', 'name = "Room B"\n[[rooms.devices]]\nid = "b-sign"\n'
                          'kind = "eink"\nurl = "virtual:panels"\n')
    node.reconfigure(parse_config(text, config.path))
    node.tick()
    sign = node.devices()["b-sign"][1]
    wait_for(lambda: sign.writes == 1, what="new device drawn")
    assert node.devices()["a-led"][1] is led and led.writes == 1, "unchanged device not redrawn"
    renamed = text.replace('name = "Room A"', 'name = "Room A (renamed)"')
    node.reconfigure(parse_config(renamed.replace('id = "b-sign"', 'id = "b-sign2"'),
                                  config.path))
    node.tick()
    wait_for(lambda: led.writes == 2, what="renamed room redrawn")
    assert "b-sign" not in node.devices() and "b-sign2" in node.devices()
    assert (panel(config, "a-led") or {}).get("name") == "Room A (renamed)"


def test_status_lives_on_the_runtime_path_and_is_rewritten_only_on_change(
        setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, clock, _store, node, sink = setup
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))  # as systemd sets it
    node.tick()
    device = node.devices()["a-led"][1]
    wait_for(lambda: device.health().last_update is not None, what="the first device update")
    node.tick()  # the device's health (its first update) is in the document now
    link = config.node.state_dir / "status.json"
    target = link.resolve()
    assert link.is_symlink() and target.parent == tmp_path / "run"
    first = target.stat()
    clock.advance(timedelta(seconds=MAX_SLEEP))
    node.tick()  # nothing changed: the heartbeat only touches the file
    again = target.stat()
    assert (again.st_ino, again.st_size) == (first.st_ino, first.st_size)
    assert again.st_mtime_ns >= first.st_mtime_ns
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    node.tick()  # the room turned busy: a new document replaces the old one
    assert target.stat().st_ino != first.st_ino
    assert json.loads(link.read_text())["rooms"][0]["state"] == "busy"


def test_every_time_in_the_status_document_is_in_the_node_zone(setup: Any) -> None:
    """Links, devices and anything a status provider adds carry +08:00, as the rooms do."""
    _config, _clock, _store, node, sink = setup
    node.set_link("feishu", True)
    node.add_status_source("fleet", lambda: {
        "agent-1": {"last_seen": "2026-11-25T01:00:00+00:00", "devices": [{"last_update": None}]}})
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    node.tick()
    wait_for(lambda: node.status()["rooms"][0]["devices"][0]["last_update"] is not None,
             what="the device's first update")
    doc = node.status()
    assert doc["node"]["links"]["feishu"]["since"] == "2026-11-25T09:00:00+08:00"
    assert doc["rooms"][0]["devices"][0]["last_update"] == "2026-11-25T09:00:00+08:00"
    assert doc["node"]["fleet"]["agent-1"]["last_seen"] == "2026-11-25T09:00:00+08:00"
    assert doc["node"]["fleet"]["agent-1"]["devices"] == [{"last_update": None}]
