"""The node's one-line STATUS for systemd follows the rooms that changed (not a scan each pass)."""

from __future__ import annotations

import gc
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.app import App
from display.config import load_config
from display.intake.sink import EventSink
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
ROOMS = '[[rooms]]\nopen_id = "omm_a"\nname = "A"\n[[rooms]]\nopen_id = "omm_b"\nname = "B"\n'


def next_status(sock: socket.socket) -> str:
    while True:  # READY and WATCHDOG lines between
        message = sock.recv(4096).decode()
        if message.startswith("STATUS="):
            return message.removeprefix("STATUS=")


def test_the_status_line_counts_rooms_as_they_change(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "room-display.toml"
    path.write_text('[node]\nname = "t"\nstate_dir = "state"\ntimezone = "UTC"\n' + ROOMS)
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        clock = FakeClock(START)
        with App(load_config(path), clock) as app:
            loop = threading.Thread(target=app.run, daemon=True)
            loop.start()
            try:
                assert next_status(sock) == "2 free"
                sink = EventSink(app.store, clock, app.node.notify)
                sink.accept(envelope(start=START - timedelta(minutes=5),
                                     end=START + timedelta(hours=1), rooms=("omm_b",),
                                     event_time=1))
                assert next_status(sock) == "1 busy, 1 free"
                path.write_text('[node]\nname = "t"\nstate_dir = "state"\ntimezone = "UTC"\n'
                                + ROOMS + '[[rooms]]\nopen_id = "omm_c"\nname = "C"\n')
                assert app.reload()
                assert next_status(sock) == "1 busy, 2 free"
                sink.accept(envelope("deleted", start=START - timedelta(minutes=5),
                                     end=START + timedelta(hours=1), rooms=("omm_b",),
                                     event_time=2))
                assert next_status(sock) == "3 free"
            finally:
                app.stop()
                loop.join(15)
                gc.unfreeze()  # App.run froze what the test process had: let it go again


def test_node_details_follows_a_reload(tmp_path: Path) -> None:
    """``node.details`` says whether any room shows organizers or titles: worked out once a
    configuration (not at every status), and again after a reload."""
    path = tmp_path / "room-display.toml"
    head = '[node]\nname = "t"\nstate_dir = "state"\ntimezone = "UTC"\n'
    path.write_text(head + ROOMS)
    with App(load_config(path), FakeClock(START)) as app:
        details = app.details_status()  # node.details of a node with [feishu]
        assert (details["organizer"], details["title"]) == (False, False)
        path.write_text(head + ROOMS + '[[rooms]]\nopen_id = "omm_c"\nname = "C"\n'
                        '[rooms.details]\ntitle = true\n')
        assert app.reload()
        details = app.details_status()
        assert (details["organizer"], details["title"]) == (False, True)
