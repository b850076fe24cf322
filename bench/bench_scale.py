"""Scale benchmark: one bridge (webhook intake, MQTT, web page) at 100 to 20,000 rooms.

Per size, a real ``room-display run`` (bridge role: ``[mqtt] url`` to a Mosquitto on loopback,
``[feishu] mode = "webhook"``, ``[web]`` on) starts on a store filled beforehand with one booking
a room and, every tenth room, a daily series (yesterday to the day after tomorrow). A paho
subscriber on ``room-display/v1/rooms/#`` in this process sees what the bridge publishes.
Measured, in this order:

1. spawn -> every retained schedule and state published (2 topics a room seen by the subscriber);
2. node RSS (VmRSS of the node, not its intake child) and idle CPU (utime + stime over a quiet
   window), no page open;
3. one webhook event -> its room's state on MQTT (POST sent -> the subscriber got the room's
   ``state`` with the new value), p50/p99 over alternating book/free events of rooms whose own
   booking is not now;
4. ``/api/status``: body size and time to fetch it (median of 3);
5. with one page open in headless Chromium: node RSS, idle CPU, and SSE change -> tile (a
   MutationObserver in the page records when the room's ``[data-id]`` element shows the new
   ``data-state``; webhook POST sent -> that instant, both epoch ms on this machine);
6. republish after a broker restart: Mosquitto (no persistence) is killed and started again;
   from the first room message the subscriber sees after that to every room's two topics;
7. the re-sync pass: a fresh process runs :class:`~display.intake.feishu.resync.Resync` against the
   local Feishu stand-in for all rooms (one daily series each): fill into an empty store, then a
   steady pass (nothing changed).

Fewer samples at 20,000 rooms (so that the whole run stays a few minutes on a 2-core machine);
each line says how many. The load average is printed before each size.

Run: ``scripts/bench scale`` or ``.venv/bin/python bench/bench_scale.py [--sizes 100,1000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, machine, median, percentile, rss_mb, wait  # noqa: E402

SIZES = (100, 1000, 5000, 20000)
PATH = "/webhook/event"
TOKEN = "vtoken"
PREFIX = "room-display/v1/rooms/"

CONFIG = """\
[node]
name = "bench-scale"
timezone = "UTC"
state_dir = {state}
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{hook}"
path = "{path}"
verification_token = "{token}"
resync = false

[mqtt]
url = "mqtt://127.0.0.1:{broker}"

[web]
listen = "127.0.0.1:{web}"
"""

OBSERVE = """
window.__updates = [];
new MutationObserver(function (records) {
  const t = Date.now();
  for (const r of records) {
    const nodes = r.type === "attributes" ? [r.target] : Array.from(r.addedNodes);
    for (const n of nodes) {
      if (!n.dataset) continue;
      const el = n.dataset.id ? n : (n.closest && n.closest("[data-id]"));
      if (el && el.dataset.state) window.__updates.push([el.dataset.id, el.dataset.state, t]);
    }
  }
}).observe(document.body, {childList: true, subtree: true, attributes: true,
                           attributeFilter: ["data-state"]});
"""


def room_id(i: int) -> str:
    return f"omm_{i:05d}"


def samples(rooms: int) -> tuple[int, int]:
    """(events, tile changes) measured at this size."""
    if rooms >= 20000:
        return 30, 15
    if rooms >= 5000:
        return 60, 30
    return 100, 40


class Broker:
    """Mosquitto on a free loopback port, without persistence (a restart loses the retained)."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise SystemExit("no mosquitto binary: apt-get install mosquitto")
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\nmax_queued_messages 200000\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(self._listening, 10, "mosquitto to listen", interval=0.005)

    def _listening(self) -> bool:
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


class Subscriber:
    """Everything published under the rooms' topics: the newest payload and arrival per topic."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.port = port
        self.cond = threading.Condition()
        self.latest: dict[str, tuple[bytes, float]] = {}
        self.first_at: float | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-scale-{os.getpid()}-{time.time_ns()}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        client.subscribe(PREFIX + "#", qos=0)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = time.perf_counter()
        with self.cond:
            if self.first_at is None:
                self.first_at = t
            if msg.payload:
                self.latest[msg.topic] = (msg.payload, t)
            else:
                self.latest.pop(msg.topic, None)
            self.cond.notify_all()

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()

    def reset(self) -> None:
        with self.cond:
            self.latest.clear()
            self.first_at = None

    def count(self) -> int:
        with self.cond:
            return len(self.latest)

    def all_at(self) -> float:
        with self.cond:
            return max(t for _, t in self.latest.values())

    def state(self, open_id: str) -> tuple[str | None, float]:
        with self.cond:
            got = self.latest.get(f"{PREFIX}{open_id}/state")
        if got is None:
            return None, 0.0
        return json.loads(got[0]).get("state"), got[1]


def fill_store(db: Path, rooms: int) -> None:
    """One booking a room (at now + i % 8 hours), and a daily series in every tenth room."""
    from display.model import Booking
    from display.store import ScheduleStore

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with ScheduleStore(db, durable=False) as store:
        for i in range(rooms):
            start = now + timedelta(hours=i % 8, minutes=10)
            bookings = [Booking(f"b{i}_0", f"b{i}", 0, start, start + timedelta(minutes=30),
                                "ou_x")]
            if i % 10 == 0:
                base = now.replace(hour=(i // 10) % 24, minute=0) - timedelta(days=1)
                for d in range(4):
                    s = base + timedelta(days=d)
                    bookings.append(Booking(f"s{i}_{int(s.timestamp())}", f"s{i}",
                                            int(s.timestamp()), s, s + timedelta(minutes=45),
                                            "ou_y"))
            store.replace_room(room_id(i), bookings)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float) -> float:
    """Per cent of one core the process used over ``seconds`` of quiet."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the measuring window itself, not a wait for an event
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100


class Bridge:
    """``room-display run`` with ``rooms`` rooms, as a user starts it."""

    def __init__(self, directory: Path, rooms: int, broker: int) -> None:
        self.directory = directory
        self.rooms = rooms
        self.hook, self.web = free_port(), free_port()
        state = directory / "state"
        state.mkdir(parents=True)
        fill_store(state / "schedule.db", rooms)
        text = CONFIG.format(state=json.dumps(str(state)), hook=self.hook, path=PATH,
                             token=TOKEN, broker=broker, web=self.web)
        text += "".join(f'[[rooms]]\nopen_id = "{room_id(i)}"\nname = "Room {i} 会议室"\n'
                        for i in range(rooms))
        self.config = directory / "room-display.toml"
        self.config.write_text(text, encoding="utf-8")
        self.log = directory / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0.0
        self.conn: http.client.HTTPConnection | None = None
        self.seq = 0

    def spawn(self) -> None:
        with open(self.log, "wb") as log:
            self.spawned = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "display", "run", "-c", str(self.config)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """False while the node runs (so ``wait`` goes on); stops the benchmark when it exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit(f"the node exited with {self.proc.returncode}:\n" + "\n".join(tail))
        return False

    def post(self, open_id: str, busy: bool) -> None:
        from display.testing.envelopes import envelope

        self.seq += 1
        now = datetime.now(UTC)
        body = json.dumps(envelope(
            "created" if busy else "deleted", uid=f"ev-{open_id}", rooms=(open_id,),
            start=now - timedelta(minutes=30), end=now + timedelta(minutes=20), token=TOKEN,
            uuid=f"scale-{self.pid}-{self.seq}")).encode()
        for attempt in range(2):  # the intake closes a keep-alive connection left idle
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.hook, timeout=30)
            try:
                self.conn.request("POST", PATH, body=body,
                                  headers={"Content-Type": "application/json"})
                reply = self.conn.getresponse()
                text = reply.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if reply.status != 200:
            raise SystemExit(f"the webhook answered {reply.status}: {text!r}")

    def status(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/api/status",
                                    timeout=60) as answer:
            body = answer.read()
        return len(body), time.perf_counter() - t0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def event_rooms(rooms: int, count: int) -> list[str]:
    """Rooms whose own booking is hours away (i % 8 == 3) and with no series (i % 10 != 0)."""
    pool = [room_id(i) for i in range(rooms) if i % 8 == 3 and i % 10 != 0]
    step = max(1, len(pool) // count)
    return pool[::step][:count]


def mqtt_latency(bridge: Bridge, sub: Subscriber, events: int) -> list[float]:
    out = []
    busy: dict[str, bool] = {}
    targets = event_rooms(bridge.rooms, max(1, events // 2))
    for k in range(events):
        open_id = targets[k % len(targets)]
        want = not busy.get(open_id, False)
        busy[open_id] = want
        state = "busy" if want else "free"
        t0 = time.perf_counter()
        bridge.post(open_id, want)

        def seen(open_id: str = open_id, state: str = state, t0: float = t0) -> float | None:
            got, at = sub.state(open_id)
            return at if got == state and at > t0 else None

        with sub.cond:
            ok = sub.cond.wait_for(lambda: seen() is not None, 30)
        if not ok:
            bridge.alive()
            raise SystemExit(f"{open_id} did not turn {state} on MQTT")
        out.append(((seen() or t0) - t0) * 1000)
    return out


def tile_latency(bridge: Bridge, driver: Any, changes: int) -> list[float]:
    """Webhook POST -> the room's tile shows the new state, in ms (rooms near the top)."""
    driver.execute_script(OBSERVE)
    pool = [room_id(i) for i in range(min(bridge.rooms, 64)) if i % 8 == 3 and i % 10 != 0]
    out = []
    busy: dict[str, bool] = {}
    for k in range(changes):
        open_id = pool[k % len(pool)]
        want = not busy.get(open_id, False)
        busy[open_id] = want
        state = "busy" if want else "free"
        driver.execute_script("window.__updates = []")
        t0 = time.time() * 1000
        bridge.post(open_id, want)

        def seen(open_id: str = open_id, state: str = state) -> Any:
            updates = driver.execute_script("return window.__updates")
            return next((t for i_, s, t in updates if i_ == open_id and s == state), None)

        t1 = wait(seen, 30, f"tile {open_id} {state}", interval=0.005)
        out.append(t1 - t0)
        time.sleep(0.05)  # spacing between changes, not a wait for the update
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def one_size(tmp: Path, rooms: int, idle: float, resync: bool) -> dict[str, Any]:
    from display.testing.browser import chromium

    events, changes = samples(rooms)
    print(f"\n-- {rooms} rooms (load average {loadavg()}) --", flush=True)
    broker = Broker(tmp)
    broker.start()
    sub = Subscriber(broker.port)
    sub.start()
    if not sub.subscribed.wait(10):
        raise SystemExit("the subscriber did not subscribe")
    bridge = Bridge(tmp / "bridge", rooms, broker.port)
    r: dict[str, Any] = {"rooms": rooms}
    try:
        bridge.spawn()
        wait(lambda: bridge.alive() or sub.count() >= 2 * rooms, 300,
             "every retained topic", interval=0.01)
        r["spawn_all"] = sub.all_at() - bridge.spawned
        print(f"spawn -> every retained schedule and state ({2 * rooms} topics): "
              f"{r['spawn_all']:.2f} s", flush=True)
        time.sleep(2)  # settle (first status write, web start), then measure idle
        r["rss_nopage"] = rss_mb(bridge.pid)
        r["cpu_nopage"] = idle_cpu(bridge.pid, idle)
        print(f"no page: node RSS {r['rss_nopage']:.1f} MB, idle CPU {r['cpu_nopage']:.2f} % "
              f"({idle:g} s window)", flush=True)
        lat = mqtt_latency(bridge, sub, events)
        r["ev_p50"], r["ev_p99"] = median(lat), percentile(lat, 99)
        print(f"webhook event -> state on MQTT ({events} events): p50 {r['ev_p50']:.1f} ms, "
              f"p99 {r['ev_p99']:.1f} ms, max {max(lat):.1f} ms", flush=True)
        got = [bridge.status() for _ in range(3)]
        r["status_kb"] = got[0][0] / 1024
        r["status_ms"] = median([t for _, t in got]) * 1000
        print(f"/api/status: {r['status_kb']:.0f} KiB, {r['status_ms']:.0f} ms (median of 3)",
              flush=True)
        with chromium(1280, 900) as driver:
            driver.get(f"http://127.0.0.1:{bridge.web}/")
            wait(lambda: driver.execute_script(
                "return performance.getEntriesByName('first-render').length"), 120,
                "first render")
            time.sleep(2)  # settle with the page open
            r["rss_page"] = rss_mb(bridge.pid)
            r["cpu_page"] = idle_cpu(bridge.pid, idle)
            print(f"one page open: node RSS {r['rss_page']:.1f} MB, idle CPU "
                  f"{r['cpu_page']:.2f} %", flush=True)
            tiles = tile_latency(bridge, driver, changes)
            r["tile_p50"], r["tile_p99"] = median(tiles), percentile(tiles, 99)
            print(f"SSE change -> tile in Chromium ({changes} changes): p50 "
                  f"{r['tile_p50']:.0f} ms, p99 {r['tile_p99']:.0f} ms", flush=True)
        times = []
        for _ in range(2):
            sub.stop()
            broker.stop()
            broker.start()
            # Subscribed again before the bridge's first reconnect (paho's 1 s delay), so the
            # first message seen is the bridge's first republished one.
            sub = Subscriber(broker.port)
            sub.start()
            if not sub.subscribed.wait(10):
                raise SystemExit("the subscriber did not subscribe again")
            wait(lambda s=sub: bridge.alive() or s.count() >= 2 * rooms, 120,  # type: ignore[misc]
                 "every topic republished", interval=0.01)
            assert sub.first_at is not None
            times.append(sub.all_at() - sub.first_at)
        r["republish"] = median(times)
        print(f"republish after a broker restart (first to last room message, 2 restarts): "
              f"{', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    finally:
        sub.stop()
        bridge.close()
        broker.stop()
    if resync:
        r.update(resync_pass(tmp, rooms))
    return r


def resync_pass(tmp: Path, rooms: int) -> dict[str, Any]:
    """Fill and steady re-sync passes over ``rooms`` rooms, one daily series each."""
    import bench.bench_resync as br
    from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi, Series

    now = datetime.now(UTC)
    window = (now - timedelta(hours=1), now + timedelta(days=2, minutes=10))
    with FeishuStandIn() as standin:
        api = FreeBusyApi(standin)
        for i in range(rooms):
            room = f"omm_{i:04d}"
            first = (now.replace(hour=1, minute=0, second=0, microsecond=0)
                     - timedelta(days=30) + timedelta(minutes=i % 8 * 60))
            api.calendar.series[f"{room}_s"] = Series(f"{room}_s", (room,), first,
                                                      timedelta(minutes=45))
            api.slots[room] = api.calendar.slots(room, *window)
        api.calendar.series.clear()
        out = subprocess.run(
            [sys.executable, br.__file__, "--worker", standin.domain, standin.app_id,
             standin.app_secret, str(tmp / "resync.db")],
            check=True, capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_RESYNC_ROOMS": str(rooms)}
        ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"re-sync pass ({rooms} rooms, one daily series each): fill {r['fill']:.2f} s, "
          f"steady {r['steady']:.2f} s, re-sync added {r['added_mb']:.1f} MB", flush=True)
    return {"resync_fill": r["fill"], "resync_steady": r["steady"]}


def exponent(results: list[dict[str, Any]], key: str) -> str:
    """Growth exponent of ``key`` between the two largest sizes (log-log slope)."""
    import math

    pts = [(r["rooms"], r[key]) for r in results if r.get(key)]
    if len(pts) < 2:
        return "-"
    (n1, v1), (n2, v2) = pts[-2], pts[-1]
    if v1 <= 0 or v2 <= 0:
        return "-"
    return f"{math.log(v2 / v1) / math.log(n2 / n1):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--idle", type=float, default=8.0, help="idle CPU window, seconds")
    parser.add_argument("--no-resync", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}; shared with other work while measured", flush=True)
    results = []
    for rooms in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            results.append(one_size(Path(tmp), rooms, args.idle, not args.no_resync))
    keys = [("ev_p50", "event->MQTT p50 ms"), ("ev_p99", "event->MQTT p99 ms"),
            ("spawn_all", "spawn->all retained s"), ("republish", "republish s"),
            ("rss_nopage", "RSS no page MB"), ("rss_page", "RSS page MB"),
            ("cpu_nopage", "idle CPU no page %"), ("cpu_page", "idle CPU page %"),
            ("tile_p99", "SSE->tile p99 ms"), ("status_kb", "/api/status KiB"),
            ("status_ms", "/api/status ms"), ("resync_fill", "re-sync fill s"),
            ("resync_steady", "re-sync steady s")]
    print("\nsummary (exponent: log-log slope between the two largest sizes)")
    print(f"{'measure':24}" + "".join(f"{r['rooms']:>10}" for r in results) + "  exponent")
    for key, label in keys:
        row = "".join(f"{r[key]:>10.2f}" if key in r else f"{'-':>10}" for r in results)
        print(f"{label:24}{row}  {exponent(results, key)}")
    print(f"(load average at the end {loadavg()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
