"""``status`` follows the node within a second: at start, after an event, after a reload.

A real node (``python -m display run``, webhook intake) in a subprocess; each change is timed
from the moment the node says it happened (its log line, or the webhook's answer) to the moment
``state_dir/status.json`` (what ``room-display status`` reads) shows it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.testing.broker import free_port
from display.testing.envelopes import envelope
from display.testing.intake_support import HttpClient
from display.testing.waiting import wait_for

WITHIN = 1.0  # seconds: the promise

CONFIG = """\
[node]
name = "timing"
timezone = "UTC"
state_dir = "state"
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{port}"
verification_token = "vtoken"
resync = false

[web]
enabled = false

[[rooms]]
open_id = "omm_a"
name = "Room A"

[[rooms]]
open_id = "omm_b"
name = "Room B"
"""


class RunningNode:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "room-display.toml"
        self.config.write_text(CONFIG.format(port=self.port), encoding="utf-8")
        self.err = directory / "stderr.txt"
        self.status_file = directory / "state" / "status.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "display", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=self.err.open("w"))

    def log(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def status(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    running = RunningNode(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def shown_within(node: RunningNode, since: float, shows: Callable[[dict[str, Any]], bool],
                 what: str) -> float:
    """Seconds from ``since`` until status.json shows it; fails beyond :data:`WITHIN`."""
    wait_for(lambda: shows(node.status()), timeout=WITHIN + 5, what=what)
    took = time.monotonic() - since
    assert took <= WITHIN, f"{what}: {took:.2f} s after the change"
    return took


def test_status_follows_start_an_event_and_a_reload_within_a_second(node: RunningNode) -> None:
    # Start: the webhook intake comes up after the node's first status (lark-free child, ~0.3 s).
    wait_for(lambda: "link feishu up" in node.log(), timeout=60, what="the intake up")
    seen = time.monotonic()
    shown_within(node, seen, lambda d: d["node"]["links"]["feishu"]["up"] is True,
                 "the feishu link up")

    # An event: a booking next week changes no room's state, but the counts and `next` do.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    client = HttpClient(f"127.0.0.1:{node.port}")
    try:
        body = json.dumps(envelope(uid="later", start=start, end=start + timedelta(hours=1)))
        answer = client.request("POST", "/webhook/event", body.encode(),
                                {"Content-Type": "application/json"})
    finally:
        client.close()
    answered = time.monotonic()
    assert answer == (200, {"msg": "success", "verdict": "applied"})
    shown_within(node, answered, lambda d: d["node"]["intake"]["events"]["applied"] == 1,
                 "the event counted")

    # A reload: removing a room changes no other room's view.
    edit = subprocess.run([sys.executable, "-m", "display", "map", "remove-room", "omm_b",
                           "-c", str(node.config)], capture_output=True, text=True, timeout=60)
    assert edit.returncode == 0, edit.stderr
    wait_for(lambda: "configuration reloaded" in node.log(), timeout=10, what="the reload")
    reloaded = time.monotonic()
    shown_within(node, reloaded, lambda d: [r["open_id"] for r in d["rooms"]] == ["omm_a"],
                 "the removed room gone")

    # `room-display status --json` reads that document.
    cli = subprocess.run([sys.executable, "-m", "display", "status", "--json", "-c",
                          str(node.config)], capture_output=True, text=True, timeout=60)
    doc = json.loads(cli.stdout)
    assert doc["node"]["running"] is True
    assert [r["open_id"] for r in doc["rooms"]] == ["omm_a"]
    assert doc["node"]["intake"]["events"]["applied"] == 1
