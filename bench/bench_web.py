"""Web page benchmark: 1,000 rooms in headless Chromium, live updates, and the node's memory.

1. Time to first render: a fresh headless Chromium loads ``/`` of a node with 1,000 rooms; the
   figure is the page's own ``performance.mark("first-render")`` (set after the first snapshot
   is drawn: every tile, the problem list, nodes, devices), in ms since navigation start. Median
   over ``--loads`` loads, each in a fresh tab (target <= 1 s). Bytes sent: what the server
   wrote for one load (HTML, CSS, JS and the SSE snapshot).
2. State change -> tile updated: the node (in this process: real Node loop, store, web server)
   gets a booking or a cancellation of one room (store, then ``Node.notify`` as intake does);
   the page records ``Date.now()`` when that room's tile shows the new state (a
   MutationObserver). p50/p99 over ``--changes`` changes, 50 ms apart (target p99 <= 200 ms).
3. Node RSS with the web page on versus off: ``room-display run`` (single box, webhook intake,
   1,000 rooms) in its own process, ``[web]`` on (with one page open in Chromium and drawn) or
   ``enabled = false``; VmRSS of the node process (not its intake child) 3 s after ready, median
   of ``--starts`` starts each (target <= +10 MB).

Run: ``scripts/bench web`` or ``.venv/bin/python bench/bench_web.py``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, median, percentile, rss_mb, wait
from display.clock import SystemClock
from display.config import Secret, WebConfig, parse_config
from display.devices.factory import make_device
from display.model import Booking
from display.node import Node
from display.store import ScheduleStore
from display.testing.browser import chromium
from display.web.server import WebServer

ROOMS = 1000

OBSERVE = """
window.__updates = [];
new MutationObserver(function (records) {
  const t = Date.now();
  for (const r of records) for (const n of r.addedNodes) {
    if (n.dataset && n.dataset.id) window.__updates.push([n.dataset.id, n.dataset.state, t]);
  }
}).observe(document.getElementById("rooms"), {childList: true});
"""


def config_text(rooms: int, hook_port: int, web: str) -> str:
    head = (f'[node]\nname = "bench"\nstate_dir = "state"\nclock = "trust"\n'
            f'[feishu]\nmode = "webhook"\nlisten = "127.0.0.1:{hook_port}"\n'
            f'verification_token = "t"\nresync = false\n{web}\n')
    return head + "".join(f'[[rooms]]\nopen_id = "omm_{i:04d}"\nname = "Room {i:04d} 会议室"\n'
                          for i in range(rooms))


class InProcess:
    """A node loop with its web server in this process (no intake: the store is fed directly)."""

    def __init__(self, directory: Path, rooms: int) -> None:
        path = directory / "room-display.toml"
        path.write_text(config_text(rooms, free_port(), ""), encoding="utf-8")
        self.config = parse_config(path.read_text(encoding="utf-8"), path)
        self.clock = SystemClock()
        self.store = ScheduleStore(directory / "schedule.db", durable=False)
        self.node = Node(self.config, self.store, self.clock, make_device)
        self.web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.node.run, args=(self._stop,), daemon=True)

    def start(self) -> None:
        self._thread.start()
        wait(lambda: len(self.node.views()) == len(self.config.rooms), 30, "every room computed")
        if not self.web.start():
            raise SystemExit("web server did not start")

    def flip(self, open_id: str, busy: bool) -> None:
        now = self.clock.now()
        bookings = [Booking(event_id=f"{open_id}_b", uid=f"{open_id}_b", original_time=0,
                            start=now - timedelta(minutes=5), end=now + timedelta(hours=1))]
        self.store.replace_room(open_id, bookings if busy else [])
        self.node.notify([open_id])

    def close(self) -> None:
        self.web.close()
        self._stop.set()
        self.node.wake()
        self._thread.join(timeout=5)
        self.store.close()


def first_render(url: str, loads: int, server: WebServer) -> tuple[list[float], list[int]]:
    renders, sent = [], []
    with chromium(1920, 1080) as driver:
        for _ in range(loads):
            before = server.bytes_sent
            driver.get("about:blank")
            driver.get(url)
            ms = wait(lambda: driver.execute_script(
                "const e = performance.getEntriesByName('first-render');"
                "return e.length ? e[0].startTime : null"), 30, "the first render")
            count = driver.execute_script("return document.querySelectorAll('#rooms > li').length")
            if count != ROOMS:
                raise SystemExit(f"the page drew {count} tiles, not {ROOMS}")
            renders.append(float(ms))
            sent.append(server.bytes_sent - before)
    return renders, sent


def update_latency(node: InProcess, changes: int) -> list[float]:
    latencies = []
    with chromium(1280, 900) as driver:
        driver.get(f"http://{node.web.address}/")
        wait(lambda: driver.execute_script(
            "return performance.getEntriesByName('first-render').length"), 30, "first render")
        driver.execute_script(OBSERVE)
        busy: dict[str, bool] = {}
        for i in range(changes):
            open_id = f"omm_{(i * 37) % ROOMS:04d}"
            state = not busy.get(open_id, False)
            busy[open_id] = state
            t0 = time.time() * 1000
            node.flip(open_id, state)
            want = "busy" if state else "free"

            def seen(open_id: str = open_id, want: str = want) -> Any:
                updates = driver.execute_script("return window.__updates")
                return next((t for i_, s, t in updates if i_ == open_id and s == want), None)

            t1 = wait(seen, 10, f"tile {open_id} {want}")
            latencies.append(t1 - t0)
            driver.execute_script("window.__updates = []")
            time.sleep(0.05)  # spacing between changes, not a wait for the update
    return latencies


def node_rss(web_on: bool, starts: int) -> list[float]:
    out = []
    for _ in range(starts):
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            port = free_port()
            web = f'[web]\nlisten = "127.0.0.1:{port}"' if web_on else "[web]\nenabled = false"
            hook = free_port()
            path = Path(tmp) / "room-display.toml"
            path.write_text(config_text(ROOMS, hook, web), encoding="utf-8")
            proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                health = f"http://127.0.0.1:{hook}/healthz"
                wait(functools.partial(_answers, health), 120, "node ready")
                if web_on:
                    with chromium(1280, 900) as driver:
                        driver.get(f"http://127.0.0.1:{port}/")
                        wait(lambda: driver.execute_script(
                            "return performance.getEntriesByName('first-render').length"), 30,
                            "first render")
                        time.sleep(3)  # settle, then measure with the page still open
                        out.append(rss_mb(proc.pid))
                else:
                    time.sleep(3)  # the same settling time as with the page
                    out.append(rss_mb(proc.pid))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return out


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("chromium") or not os.path.exists("/usr/bin/chromedriver"):
        print("skipped: chromium / chromium-driver not installed (scripts/bootstrap as root)")
        return 0
    print(f"machine: {machine()}; shared with other work while measured", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        node = InProcess(Path(tmp), ROOMS)
        node.start()
        try:
            renders, sent = first_render(f"http://{node.web.address}/", args.loads, node.web)
            print(f"first render of {ROOMS} rooms: median {median(renders):.0f} ms "
                  f"(min {min(renders):.0f}, max {max(renders):.0f}, {args.loads} loads); "
                  f"bytes sent per load: {median(sent) / 1024:.0f} KiB", flush=True)
            latencies = update_latency(node, args.changes)
            print(f"state change -> tile updated, {args.changes} changes: p50 "
                  f"{percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, "
                  f"max {max(latencies):.0f} ms", flush=True)
        finally:
            node.close()
    off = node_rss(False, args.starts)
    on = node_rss(True, args.starts)
    print(f"node RSS with {ROOMS} rooms, median of {args.starts}: web off {median(off):.1f} MB, "
          f"web on with a page open {median(on):.1f} MB, difference "
          f"{median(on) - median(off):+.1f} MB", flush=True)
    print(f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
