"""``room-display send-test-event`` against whole running nodes: the panel turns busy, then free
after ``--cancel``, twice in a row, in webhook mode (through the node's own signed webhook) and in
long-connection mode (connected to the Feishu stand-in; the event goes through the store and the
node is told)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from display.cli import main
from display.config import load_config
from display.status import read_status
from display.store import ScheduleStore
from display.testing.feishu_standin import FeishuStandIn
from display.testing.waiting import wait_for

ROOM, NAME = "omm_test_a", "Lobby"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ROOMS = f"""
[[rooms]]
open_id = "{ROOM}"
name = "{NAME}"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"

[[rooms]]
open_id = "omm_test_b"
name = "Other"
"""


def _config(tmp: Path, feishu: dict[str, Any]) -> Path:
    lines = ["[node]", 'name = "send-test"', 'timezone = "Asia/Shanghai"',
             'state_dir = "state"', 'clock = "trust"', "", "[feishu]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in feishu.items()]
    path = tmp / "room-display.toml"
    path.write_text("\n".join(lines) + "\n" + ROOMS, encoding="utf-8")
    return path


class RunningNode:
    """``room-display run`` in a subprocess, and what its panel for ROOM shows."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.err = config.parent / "node-stderr.txt"
        self.proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        self.panel = config.parent / "panels" / "a-led.json"

    def running(self) -> None:
        """Until ``status`` sees the node running (the Feishu side is waited for apart)."""
        def ready() -> bool:
            assert self.proc.poll() is None, self.err.read_text()
            doc = read_status(load_config(self.config, resolve_secrets=False))
            return bool(doc["node"].get("running"))
        wait_for(ready, 60, what="node running")

    def panel_state(self) -> str | None:
        try:
            return str(json.loads(self.panel.read_text(encoding="utf-8"))["state"])
        except (OSError, ValueError, KeyError):
            return None

    def room_status(self) -> str:
        doc = read_status(load_config(self.config, resolve_secrets=False))
        return str(next(r["state"] for r in doc["rooms"] if r["open_id"] == ROOM))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def _send(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, float]:
    code = main(["send-test-event", *args, "-c", str(config)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out, time.monotonic()


def _book_cancel_twice(node: RunningNode, capsys: pytest.CaptureFixture[str],
                       via: str) -> None:
    node.running()
    wait_for(lambda: node.panel_state() == "free", 20, what="the panel drawn free")
    for _ in range(2):
        out, sent = _send(node.config, NAME, capsys=capsys)
        assert f"booked {NAME} ({ROOM})" in out and via in out and ": applied" in out
        assert "room-display status" in out
        wait_for(lambda: node.panel_state() == "busy", 5, what="the panel busy")
        assert time.monotonic() - sent < 5
        wait_for(lambda: node.room_status() == "busy", 15, what="status says busy")
        out, sent = _send(node.config, ROOM, "--cancel", capsys=capsys)
        assert f"cancelled the test bookings of {NAME}" in out and ": applied" in out
        wait_for(lambda: node.panel_state() == "free", 5, what="the panel free again")
        wait_for(lambda: node.room_status() == "free", 15, what="status says free")
    with ScheduleStore(node.config.parent / "state" / "schedule.db") as store:
        assert store.bookings(ROOM) == [] and store.bookings("omm_test_b") == []


@pytest.fixture
def nodes() -> Iterator[list[RunningNode]]:
    started: list[RunningNode] = []
    yield started
    for node in started:
        node.stop()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_webhook_node_books_and_cancels_twice(tmp_path: Path, nodes: list[RunningNode],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    config = _config(tmp_path, {"mode": "webhook", "listen": f"127.0.0.1:{port}",
                                "verification_token": "vt-test", "encrypt_key": "ek-test",
                                "resync": False})
    nodes.append(node := RunningNode(config))
    wait_for(lambda: _healthy(port), 60, what="the node's webhook answering")
    _book_cancel_twice(node, capsys, f"the webhook http://127.0.0.1:{port}/webhook/event")


def test_long_connection_node_books_and_cancels_twice(
        tmp_path: Path, nodes: list[RunningNode], capsys: pytest.CaptureFixture[str]) -> None:
    with FeishuStandIn() as standin:
        config = _config(tmp_path, {"app_id": standin.app_id, "app_secret": standin.app_secret,
                                    "domain": standin.domain, "resync": False})
        nodes.append(node := RunningNode(config))
        wait_for(standin.connections, 60, what="the node's long connection")
        _book_cancel_twice(node, capsys, "the store of the running node (pid ")


def test_no_running_node_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, {"mode": "webhook", "listen": f"127.0.0.1:{_free_port()}",
                                "verification_token": "vt", "resync": False})
    assert main(["send-test-event", ROOM, "-c", str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no node is running" in err[0] and "room-display run" in err[0]
    assert not (tmp_path / "state" / "schedule.db").exists()
