"""What a new user and an attacker hit outside the demo: each case ends in one clear line (or a
node that keeps running), never a traceback or a dark panel."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import wait_for

from display.errors import EventError
from display.model import Booking

CONFIG = """
[node]
name = "hard-test"
timezone = "Asia/Shanghai"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
"""


def room_display(*args: str, timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "display", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


class Node:
    """``room-display run`` in a subprocess."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.err = config.parent / "node-stderr.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "display", "run", "-c", str(config), *extra],
            stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        self.config = config

    def log(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def status(self) -> dict[str, object]:
        proc = room_display("status", "--json", "-c", str(self.config))
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def running_status(self) -> dict[str, object]:
        def ready() -> dict[str, object] | None:
            assert self.proc.poll() is None, self.log()
            proc = room_display("status", "--json", "-c", str(self.config))
            if proc.returncode != 0:  # before the node opened (and repaired) its store
                return None
            doc: dict[str, object] = json.loads(proc.stdout)
            node = doc["node"]
            return doc if isinstance(node, dict) and node.get("running") else None
        return wait_for(ready, timeout=60, what="node status")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def node_factory() -> Iterator[type[Node]]:
    started: list[Node] = []

    class Tracked(Node):
        def __init__(self, config: Path, *extra: str) -> None:
            super().__init__(config, *extra)
            started.append(self)

    yield Tracked
    for node in started:
        node.stop()


# -- dates ---------------------------------------------------------------------------------------


def test_a_booking_outside_2000_2100_cannot_exist() -> None:
    ok = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(EventError, match="end: 9999-12-31"):
        Booking("e_0", "e", 0, ok, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    with pytest.raises(EventError, match="start: 1970"):
        Booking("e_0", "e", 0, datetime(1970, 1, 1, tzinfo=UTC), ok)


def _store_row(db: Path, start_ms: int, end_ms: int, event_id: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO bookings VALUES ('omm_a', ?, 'u', 0, ?, ?, NULL)",
                     (event_id, start_ms, end_ms))


def test_a_stored_year_9999_booking_is_skipped_logged_once_and_counted(
        config: Path, node_factory: type[Node]) -> None:
    from display.store import ScheduleStore

    db = config.parent / "state" / "schedule.db"
    ScheduleStore(db).close()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    _store_row(db, now_ms - 60_000, 253_402_300_799_999, "bad_9999")  # ...T23:59:59.999999
    _store_row(db, now_ms - 60_000, now_ms + 3_600_000, "good_0")
    node = node_factory(config)
    doc = node.running_status()
    node_doc = doc["node"]
    assert isinstance(node_doc, dict) and node_doc["store"]["unusable_rows"] == 1
    rooms = doc["rooms"]
    assert isinstance(rooms, list) and rooms[0]["state"] == "busy"
    assert rooms[0]["current"]["event_id"] == "good_0"
    text = room_display("status", "-c", str(config))
    assert "skipped 1 stored booking(s)" in text.stdout
    assert node.stop() == 0
    assert node.log().count("skipping stored booking bad_9999") == 1
    # The next start has nothing left to skip: the row is logged once, not at every start.
    again = node_factory(config)
    doc = again.running_status()
    assert isinstance(doc["node"], dict) and doc["node"]["store"]["unusable_rows"] == 0
    assert "bad_9999" not in again.log()


# -- corrupted store -----------------------------------------------------------------------------


def test_a_corrupted_store_is_moved_aside_and_the_node_starts(
        config: Path, node_factory: type[Node]) -> None:
    state = config.parent / "state"
    state.mkdir()
    garbage = b"this is not SQLite at all\n" * 200
    (state / "schedule.db").write_bytes(garbage)
    node = node_factory(config)
    doc = node.running_status()
    store = doc["node"]["store"]  # type: ignore[index]
    aside = Path(store["moved_aside"])
    assert aside.parent == state and aside.name.startswith("schedule.db.corrupt-")
    assert aside.read_bytes() == garbage, "kept for inspection, unchanged"
    assert "not a database" in store["corrupt_reason"]
    assert doc["rooms"][0]["state"] == "free"  # type: ignore[index]
    text = room_display("status", "-c", str(config)).stdout
    assert "store: was corrupt" in text and str(aside) in text
    assert node.stop() == 0
    assert "is corrupt" in node.log() and "moved it to" in node.log()
