"""Idle node benchmark: wake-ups a second and writes under ``state_dir`` while nothing happens.

A real ``python -m display run -c CONFIG`` (webhook mode, re-sync off, ``--rooms`` rooms, the
first with a virtual LED) gets one booking spanning now through its webhook, then is left alone
for ``--idle`` seconds (default 35: three and a half of the node's 10 s heartbeats, the longest
period anything in an idle node runs on; a longer idle repeats the same cycle). Measured:

1. wake-ups a second: voluntary context switches of every thread of the node
   process and of its Feishu intake child, summed from ``/proc/PID/task/*/status``;
2. writes under ``state_dir``: inotify events (modify, create, rename into, attribute change) on
   the state directory and the bytes of the files written or renamed into it.

``--tree DIR`` runs the node from another checkout (e.g. an older commit, for "today's" figures).

Run: ``scripts/bench idle`` or ``.venv/bin/python bench/bench_idle.py [--rooms 1000] [--idle 35]``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import http.client
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from bench.common import children, cmdline, free_port, machine, wait
from display.testing.envelopes import envelope

TOKEN = "bench-token"
PATH = "/webhook/event"
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x8, 0x80, 0x100
WRITES = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

HEAD = """\
[node]
name = "bench-idle"
timezone = "UTC"
state_dir = {state}

[feishu]
mode = "webhook"
listen = "127.0.0.1:{port}"
path = "{path}"
verification_token = "{token}"
resync = false
"""
ROOM = """
[[rooms]]
open_id = "omm_{i}"
name = "Room {i}"
"""
DEVICE = """
[[rooms.devices]]
id = "led"
kind = "led"
url = {url}
"""


class DirWrites:
    """Counts inotify write events in one directory and the bytes of the files they name."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.directory = directory
        self.fd = int(libc.inotify_init1(os.O_NONBLOCK))
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(directory), WRITES) < 0:
            raise SystemExit("inotify unavailable")
        self.events = 0
        self.bytes = 0
        self.names: dict[str, int] = {}

    def drain(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                self.events += 1
                self.names[name] = self.names.get(name, 0) + 1
                if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                    with contextlib.suppress(OSError):
                        self.bytes += (self.directory / name).stat().st_size

    def reset(self) -> None:
        self.drain()
        self.events, self.bytes, self.names = 0, 0, {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of ``pid`` (all threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> int:
    """Voluntary context switches so far of every thread of ``pid``: each is a thread going to
    sleep (a wait, a blocking read), so each wake-up of an idle process adds one. Involuntary
    ones (preemption while computing) are not wake-ups."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def post(port: int, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        if reply.status != 200:
            raise SystemExit(f"the webhook answered {reply.status}: {reply.read()!r}")
    finally:
        conn.close()


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def run(tmp: Path, rooms: int, idle: float, tree: Path | None) -> dict[str, float]:
    port = free_port()
    state = tmp / "state"
    state.mkdir()
    text = HEAD.format(state=json.dumps(str(state)), port=port, path=PATH, token=TOKEN)
    for i in range(rooms):
        text += ROOM.format(i=i)
        if i == 0:
            text += DEVICE.format(url=json.dumps(f"virtual:{tmp / 'panels'}"))
    config = tmp / "room-display.toml"
    config.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with open(tmp / "node.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(config)],
                                cwd=tree or tmp, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
    try:
        wait(lambda: healthy(port) or proc.poll() is not None, 120, "the webhook")
        if proc.poll() is not None:
            raise SystemExit((tmp / "node.log").read_text(errors="replace")[-2000:])
        now = datetime.now(UTC)
        post(port, json.dumps(envelope("created", uid="idle", start=now - timedelta(minutes=1),
                                       end=now + timedelta(hours=2), rooms=("omm_0",),
                                       event_time=1, token=TOKEN)).encode())
        panel = tmp / "panels" / "led.json"
        wait(lambda: panel.exists() and json.loads(panel.read_bytes())["state"] == "busy",
             30, "the panel to show busy", interval=0.01)
        intake = next(p for p in children(proc.pid) if "display.intake.feishu" in cmdline(p))
        writes = DirWrites(state)
        time.sleep(2.0)  # let the event's own writes (commit, status, checkpoint) finish
        writes.reset()
        cpu0 = cpu_seconds(proc.pid) + cpu_seconds(intake)
        node0, child0, t0 = switches(proc.pid), switches(intake), time.monotonic()
        time.sleep(idle)  # the idle period being measured: nothing is sent
        node1, child1, t1 = switches(proc.pid), switches(intake), time.monotonic()
        cpu1 = cpu_seconds(proc.pid) + cpu_seconds(intake)
        writes.drain()
        seconds = t1 - t0
        return {"node": (node1 - node0) / seconds, "child": (child1 - child0) / seconds,
                "events": writes.events, "cpu": (cpu1 - cpu0) / seconds,
                "bytes": writes.bytes, "seconds": seconds,
                "names": writes.names}  # type: ignore[dict-item]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, nargs="*", default=[1, 1000])
    parser.add_argument("--idle", type=float, default=35.0, help="idle seconds measured")
    parser.add_argument("--tree", type=Path, default=None, help="run the node from this checkout")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    for rooms in args.rooms:
        with tempfile.TemporaryDirectory(prefix="bench-idle-") as raw:
            r = run(Path(raw), rooms, args.idle, args.tree)
        per_min = 60 / r["seconds"]
        print(f"idle node, {rooms} room(s), one booking running, {r['seconds']:.0f} s: wake-ups "
              f"{r['node']:.2f}/s node + {r['child']:.2f}/s intake child = "
              f"{r['node'] + r['child']:.2f}/s (target <= 1), CPU {100 * r['cpu']:.1f} %; "
              f"writes under state_dir "
              f"{r['events'] * per_min:.0f} events/min, {r['bytes'] * per_min / 1e6:.2f} MB/min "
              f"(target 0) {r['names'] or ''}", flush=True)


if __name__ == "__main__":
    main()
