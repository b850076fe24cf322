"""A running node follows its config file: map edits, SIGHUP, a broken edit, the clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.cli import main
from display.config import parse_config
from display.devices.factory import make_device
from display.freshness import Freshness
from display.intake.sink import EventSink
from display.node import Node
from display.store import ScheduleStore
from display.systemd import ClockSync
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for

CONFIG = """\
# a node on the 3rd floor
[node]
name = "reload-test"
state_dir = "state"

[[rooms]]
open_id = "omm_a"
name = "Room A"

[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str], Path]]:
    config = tmp_path / "room-display.toml"
    config.write_text(CONFIG, encoding="utf-8")
    log = tmp_path / "node.log"
    proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(config)],
                            stderr=log.open("w"), text=True)
    wait_for(lambda: (tmp_path / "panels" / "a-led.json").exists(), 30, "first panel write")
    yield config, proc, log
    proc.terminate()
    proc.wait(timeout=15)


def panel(config: Path, device: str) -> dict[str, object]:
    path = config.parent / "panels" / f"{device}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_map_edit_reaches_the_running_node(node: tuple[Path, subprocess.Popen[str], Path]) -> None:
    config, proc, _log = node
    led = config.parent / "panels" / "a-led.json"
    first_write = led.stat().st_mtime_ns
    assert main(["map", "add-room", "omm_b", "Room B", "-c", str(config)]) == 0
    assert main(["map", "add-device", "omm_b", "b-sign", "--kind", "eink", "--url",
                 "virtual:panels", "--size", "250x122", "-c", str(config)]) == 0
    wait_for(lambda: panel(config, "b-sign").get("name") == "Room B", 10, "new device drawn")
    assert led.stat().st_mtime_ns == first_write, "the unchanged device was not redrawn"
    assert main(["map", "rename-room", "omm_a", "Room A2", "-c", str(config)]) == 0
    wait_for(lambda: panel(config, "a-led").get("name") == "Room A2", 10, "rename shown")
    assert proc.poll() is None


def test_broken_edit_is_rejected_and_the_old_config_keeps_running(
        node: tuple[Path, subprocess.Popen[str], Path]) -> None:
    config, proc, log = node
    config.write_text(CONFIG + "[[rooms]]\nopen_id = \n", encoding="utf-8")  # invalid TOML
    wait_for(lambda: "config change rejected" in log.read_text(), 10, "rejection logged")
    assert proc.poll() is None
    fixed = CONFIG.replace('name = "Room A"', 'name = "Room A fixed"')
    config.write_text(fixed, encoding="utf-8")
    wait_for(lambda: panel(config, "a-led").get("name") == "Room A fixed", 10, "fix applied")


def test_sighup_reloads(node: tuple[Path, subprocess.Popen[str], Path]) -> None:
    config, proc, log = node
    # Same size, same inode, old mtime: the file watcher cannot see this edit, only SIGHUP
    # (what `systemctl reload` sends) makes the node read it.
    before = config.stat()
    config.write_text(CONFIG.replace("Room A", "Room Z"), encoding="utf-8")
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(1.5)  # longer than the watcher's 0.25 s settle: proving an absence needs a wait
    assert panel(config, "a-led").get("name") == "Room A"
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: panel(config, "a-led").get("name") == "Room Z", 10, "reload on HUP")
    assert "Traceback" not in log.read_text()


def test_clock_not_synchronised_means_stale_and_a_step_is_noticed(tmp_path: Path) -> None:
    timesync = tmp_path / "timesync"
    timesync.mkdir()  # timesyncd runs here but has not synchronised yet
    config = parse_config(CONFIG, tmp_path / "c.toml")
    start = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    clock = FakeClock(start)
    freshness = Freshness(timedelta(minutes=10), ClockSync("auto", timesync))
    with ScheduleStore(config.node.state_dir / "s.db") as store:
        node = Node(config, store, clock, make_device, freshness)
        try:
            EventSink(store, clock, node.notify).accept(
                envelope(start=start, end=start + timedelta(hours=1), event_time=1))
            node.tick()
            assert node.views()["omm_a"].stale is True, "no free/busy claim on an unsynced clock"
            (timesync / "synchronized").touch()
            node.tick()
            view = node.views()["omm_a"]
            assert (view.stale, view.occupancy.state.value) == (False, "busy")
            clock.set(start + timedelta(hours=2))  # NTP steps the clock forward
            node.tick()
            assert node.clock_steps == 1
            assert node.views()["omm_a"].occupancy.state.value == "free"
        finally:
            node.close()
