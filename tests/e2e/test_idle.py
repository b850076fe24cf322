"""An idle node writes nothing under its state directory, at 1 room and at 1,000.

Two real nodes (``python -m display run``, webhook intake, re-sync off) each get a booking that
is running now, then are watched with inotify while nothing happens. The idle period spans two of
the node's 10 s heartbeats (``MAX_SLEEP``) and four of the intake child's 5 s alive lines: the
longest periods anything in an idle node runs on (the hourly prune and the 10-minute redraw aside;
neither writes the state directory when nothing changed), so a longer wait would repeat the same
cycle. ``room-display status`` must still find the status, which now lives on a runtime path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import http.client
import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.node import MAX_SLEEP
from display.testing.broker import free_port
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for

IDLE = 2 * MAX_SLEEP + 2  # two node heartbeats, four alive lines of the child
TOKEN = "vtoken"
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x8, 0x80, 0x100


class Writes:
    """Names of files written, created, renamed into or touched in one directory (inotify)."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            pytest.skip("inotify unavailable")

    def take(self) -> list[str]:
        names = []
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                length = struct.unpack_from("iIII", data, offset)[3]
                names.append(data[offset + 16:offset + 16 + length].rstrip(b"\0").decode())
                offset += 16 + length
        return names


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` and of its children: each is a
    thread that went to sleep after waking up (a timer, a poll) or after real work."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        for task in Path(f"/proc/{each}/task").glob("*"):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


class IdleNode:
    def __init__(self, tmp: Path, rooms: int) -> None:
        tmp.mkdir()
        self.rooms = rooms
        self.port = free_port()
        self.state = tmp / "state"
        text = (f'[node]\nstate_dir = "state"\ntimezone = "UTC"\n\n[feishu]\nmode = "webhook"\n'
                f'listen = "127.0.0.1:{self.port}"\npath = "/hook"\n'
                f'verification_token = "{TOKEN}"\nresync = false\n')
        for i in range(rooms):
            text += f'\n[[rooms]]\nopen_id = "omm_{i}"\nname = "Room {i}"\n'
            if i == 0:
                text += '[[rooms.devices]]\nid = "led"\nkind = "led"\nurl = "virtual:panels"\n'
        self.config = tmp / "room-display.toml"
        self.config.write_text(text, encoding="utf-8")
        self.panel = tmp / "panels" / "led.json"
        self.proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c",
                                      str(self.config)], stderr=(tmp / "node.log").open("w"))

    def book_now(self) -> None:
        now = datetime.now(UTC)
        body = json.dumps(envelope(start=now - timedelta(minutes=5), end=now + timedelta(hours=1),
                                   rooms=("omm_0",), event_time=1, token=TOKEN))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/hook", body=body.encode())
            assert conn.getresponse().status == 200
        finally:
            conn.close()

    def shows(self, state: str) -> bool:
        try:
            return bool(json.loads(self.panel.read_bytes())["state"] == state)
        except (OSError, ValueError, KeyError):
            return False

    def webhook_up(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def status(self) -> dict[str, object]:
        out = subprocess.run([sys.executable, "-m", "display", "status", "--json", "-c",
                              str(self.config)], capture_output=True, text=True, check=True)
        doc: dict[str, object] = json.loads(out.stdout)
        return doc

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[IdleNode]]:
    started = [IdleNode(tmp_path / f"rooms{n}", n) for n in (1, 1000)]
    try:
        yield started
    finally:
        for node in started:
            node.close()


@pytest.mark.slow
def test_an_idle_node_writes_nothing_under_state_dir(nodes: list[IdleNode]) -> None:
    for node in nodes:
        wait_for(node.webhook_up, 60, "the webhook intake")
        node.book_now()
        wait_for(lambda node=node: node.shows("busy"), 30, "the booking shown")  # type: ignore[misc]
    watches = [Writes(node.state) for node in nodes]
    # The event's own writes (commit, checkpoint, status) end within a tick of the panel; the
    # first prune ran at start. Whatever trickles in now is counted below.
    time.sleep(1.0)
    for w in watches:
        w.take()
    before = [wakeups(node.proc.pid) for node in nodes]
    time.sleep(IDLE)
    woken = [(wakeups(node.proc.pid) - b) / IDLE for node, b in zip(nodes, before, strict=True)]
    written = {node.rooms: w.take() for node, w in zip(nodes, watches, strict=True)}
    assert written == {1: [], 1000: []}
    # Nothing polls: node and intake child together wake at most once a second while idle.
    assert max(woken) <= 1.0, f"wake-ups a second, node + intake child: {woken}"
    for node in nodes:
        assert node.proc.poll() is None
        doc = node.status()
        assert doc["node"]["running"] is True  # type: ignore[index]
        assert doc["rooms"][0]["state"] == "busy"  # type: ignore[index]
        # The status file is on the runtime path, state_dir/status.json only points at it.
        assert (node.state / "status.json").is_symlink()
