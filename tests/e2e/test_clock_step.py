"""A wall clock that steps (a Pi without RTC, a bad NTP answer, a wrong ``date``) loses nothing.

A whole node (``room-display run``: the node and its Feishu intake child) runs with its wall
clock stepped by the test seam of :mod:`display.clock` (both processes read the same offset
file; their monotonic clocks are untouched, as in a real step), one day and one year ahead for
a while each, and is restarted afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.clock import OFFSET_ENV
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.intake_support import HttpClient
from display.testing.waiting import wait_for

TOKEN = "vtoken"
PATH = "/webhook/event"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SteppedNode:
    """``room-display run`` whose wall clock the test steps through ``offset``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.offset = tmp / "clock-offset"
        self.offset.write_text("0")
        self.listen = f"127.0.0.1:{_free_port()}"
        self.config = tmp / "room-display.toml"
        self.config.write_text(f"""
[node]
name = "clock-test"
timezone = "UTC"
state_dir = "state"
clock = "trust"
[feishu]
mode = "webhook"
listen = "{self.listen}"
path = "{PATH}"
verification_token = "{TOKEN}"
resync = false
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
""", encoding="utf-8")
        self.db = tmp / "state" / "schedule.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        err = (self.tmp / f"node-{self.runs}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "display", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, OFFSET_ENV: str(self.offset)})
        wait_for(lambda: self._alive() and self._answers(), 60, what="webhook intake up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("node-*.log")))

    def _alive(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        return True

    def _answers(self) -> bool:
        client = HttpClient(self.listen, timeout=2)
        try:
            return client.request("GET", "/healthz")[0] == 200
        except OSError:
            return False
        finally:
            client.close()

    def post(self, env: dict[str, Any]) -> tuple[int, Any]:
        client = HttpClient(self.listen)
        try:
            return client.request("POST", PATH, json.dumps(env).encode())
        finally:
            client.close()

    def step(self, seconds: float) -> None:
        self.offset.write_text(f"{seconds:.0f}")

    def status(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.tmp / "state" / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc

    def panel(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.tmp / "panels" / "a-led.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SteppedNode]:
    stepped = SteppedNode(tmp_path)
    try:
        yield stepped
    finally:
        stepped.stop()


def _kept(node: SteppedNode, uuids: list[str]) -> tuple[list[str], list[str]]:
    """(uuids the store no longer knows, booking uids it holds in omm_a)."""
    with ScheduleStore(node.db) as store:
        return ([u for u in uuids if not store.seen(u)],
                sorted(b.uid for b in store.bookings("omm_a")))


def _node_time(node: SteppedNode) -> datetime:
    """The wall-clock time of the node's latest status document."""
    generated = node.status().get("generated_at")
    return datetime.fromisoformat(generated) if generated else datetime.min.replace(tzinfo=UTC)


@pytest.mark.slow
def test_clock_steps_of_a_day_and_a_year_lose_nothing_across_a_restart(
        node: SteppedNode) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    envs = [
        envelope(uid="now", start=now - timedelta(minutes=30), end=now + timedelta(hours=2)),
        envelope(uid="earlier", start=now - timedelta(hours=5), end=now - timedelta(hours=4)),
        envelope(uid="later", start=now + timedelta(hours=3), end=now + timedelta(hours=4)),
        envelope(uid="gone", start=now + timedelta(hours=5), end=now + timedelta(hours=6),
                 event_time=1),
    ]
    delete = envelope("deleted", uid="gone", start=now + timedelta(hours=5),
                      end=now + timedelta(hours=6), event_time=2)
    node.start()
    for env in [*envs, delete]:
        assert node.post(env)[0] == 200
    uuids = [e["uuid"] for e in [*envs, delete]]
    wait_for(lambda: node.panel().get("state") == "busy", 30, what="the meeting in progress")
    held = ["earlier", "later", "now"]
    assert _kept(node, uuids) == ([], held)

    for ahead in (86_400, 366 * 86_400):
        for offset in (ahead, 0):
            node.step(offset)
            # An event meanwhile wakes the node at once (it would notice within 10 s anyway).
            extra = envelope(uid=f"at{ahead}-{offset}", start=now + timedelta(hours=7),
                             end=now + timedelta(hours=8))
            assert node.post(extra)[0] == 200
            uuids.append(extra["uuid"])
            held = sorted([*held, extra["event"]["uid"]])
            wait_for(lambda o=offset: abs(_node_time(node) - now - timedelta(seconds=o))
                     < timedelta(minutes=10), 30, what=f"the node's clock at {offset:+} s")
            if offset > 86_400:  # and a tick of the idle loop (<= 10 s) a year ahead
                status = node.tmp / "state" / "status.json"
                beat = status.stat().st_mtime_ns  # touched by every idle tick
                wait_for(lambda s=status, b=beat: s.stat().st_mtime_ns != b, 30,
                         what="an idle tick")
        wait_for(lambda: node.panel().get("state") == "busy", 30, what="busy again")
        assert _kept(node, uuids) == ([], held)
        step = node.status()["node"]["clock_step"]
        assert step["seconds"] < -(ahead - 60) and step["pruning_held"] is True

    node.stop()
    node.start()
    wait_for(lambda: node.panel().get("state") == "busy" and node.status().get("node", {})
             .get("pid") == (node.proc.pid if node.proc else None), 30,
             what="busy after the restart")
    assert _kept(node, uuids) == ([], held)
    # Feishu's late retry of the deleted booking's "created": the same delivery, and another
    # delivery of that older version; neither brings it back.
    assert node.post(envs[3]) == (200, {"msg": "success", "verdict": "duplicate"})
    retry = envelope(uid="gone", start=now + timedelta(hours=5), end=now + timedelta(hours=6),
                     event_time=1)
    assert node.post(retry) == (200, {"msg": "success", "verdict": "superseded"})
    assert _kept(node, uuids)[1] == held
    log = node.log()
    assert log.count("wall clock stepped") == 4 and "Traceback" not in log
