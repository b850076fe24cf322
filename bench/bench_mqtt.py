"""MQTT fan-out benchmarks against a real Mosquitto on loopback.

1. latency: event committed at the bridge -> device write at an agent (p50/p99; target p99
   <= 50 ms). Bridge and agent are two Nodes in this process, each with its own broker link.
2. bridge with 1,000 rooms: time to republish every retained schedule and state after the
   broker restarted (until every PUBACK; target <= 2 s), and the bridge process's peak RSS.
3. panel agent: process start to its first frame, with the schedule retained on the broker
   (target <= 1 s), and its peak RSS (target <= 50 MB).

Run: ``scripts/bench mqtt`` or ``.venv/bin/python bench/bench_mqtt.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, machine, median, peak_rss_mb, percentile, wait  # noqa: E402
from display.clock import Clock, SystemClock, to_epoch_ms  # noqa: E402
from display.config import Config, DeviceConfig, parse_config  # noqa: E402
from display.devices.base import Device  # noqa: E402
from display.devices.virtual import VirtualDevice  # noqa: E402
from display.intake.sink import EventSink  # noqa: E402
from display.model import Booking, RoomView  # noqa: E402
from display.mqtt_roles import MqttServices  # noqa: E402
from display.node import Node  # noqa: E402
from display.store import ScheduleStore  # noqa: E402

LATENCY_EVENTS = 200
ROOMS = 1000
AGENT_STARTS = 5

BRIDGE_TOML = """
[node]
name = "bench-bridge"
timezone = "Asia/Shanghai"
state_dir = "state"
[feishu]
mode = "webhook"
verification_token = "vtoken"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
"""
AGENT_TOML = """
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[[rooms]]
open_id = "omm_0"
name = "Room 0"
[[rooms.devices]]
id = "{name}-led"
kind = "led"
url = "virtual:panels"
"""


class Mosquitto:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise SystemExit("no mosquitto binary: apt-get install mosquitto")
        self.binary = binary
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\nmax_queued_messages 100000\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(self.listening, 10, "mosquitto to listen", interval=0.01)

    def listening(self) -> bool:
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


class TimedDevice(VirtualDevice):
    """A virtual panel that records when each write finished."""

    def __init__(self, config: DeviceConfig, clock: Clock, sink: Callable[[RoomView], None]
                 ) -> None:
        super().__init__(config, clock)
        self._record = sink

    def apply(self, view: RoomView) -> None:
        super().apply(view)
        self._record(view)


def envelope(kind: str, seq: int, start: datetime, end: datetime) -> dict[str, Any]:
    return {"uuid": f"bench-{seq}", "token": "vtoken", "type": "event_callback", "ts": "1",
            "event": {"type": f"third_party_meeting_room_event_{kind}", "event_id": "bk_0",
                      "uid": "bk", "original_time": 0, "event_time": str(1_764_000_000_000 + seq),
                      "start": {"time_stamp": str(to_epoch_ms(start))},
                      "end": {"time_stamp": str(to_epoch_ms(end))},
                      "meeting_rooms": [{"open_id": "omm_0"}],
                      "organizer": {"open_id": "ou_bench"}}}


def run_node(config: Config, make: Callable[[DeviceConfig, Clock], Device],
             clock: Clock) -> tuple[Node, ScheduleStore, MqttServices, threading.Event]:
    store = ScheduleStore(config.node.state_dir / "schedule.db", durable=False)
    node = Node(config, store, clock, make)
    services = MqttServices(config, node, store, clock)
    services.start()
    stop = threading.Event()
    threading.Thread(target=node.run, args=(stop,), daemon=True).start()
    return node, store, services, stop


def bench_latency(tmp: Path, port: int) -> None:
    clock = SystemClock()
    bridge_cfg = parse_config(BRIDGE_TOML.format(port=port) + '[[rooms]]\nopen_id = "omm_0"\n',
                              tmp / "bridge" / "c.toml")
    agent_cfg = parse_config(AGENT_TOML.format(port=port, name="lat-agent"),
                             tmp / "agent" / "c.toml")
    shown: list[tuple[float, str]] = []
    lock = threading.Condition()

    def record(view: RoomView) -> None:
        with lock:
            shown.append((time.perf_counter(), view.occupancy.state.value))
            lock.notify_all()

    def make_timed(dev: DeviceConfig, clk: Clock) -> Device:
        device = TimedDevice(dev, clk, record)
        device.start()
        return device

    def no_devices(dev: DeviceConfig, clk: Clock) -> Device:
        raise AssertionError("the bridge has no devices")

    b_node, b_store, b_mqtt, b_stop = run_node(bridge_cfg, no_devices, clock)
    a_node, a_store, a_mqtt, a_stop = run_node(agent_cfg, make_timed, clock)
    sink = EventSink(b_store, clock, b_node.notify)
    wait(lambda: a_mqtt.link.connected and b_mqtt.link.connected, 10, "links")
    wait(lambda: shown, 10, "first frame")
    latencies: list[float] = []
    now = clock.now()
    for seq in range(1, LATENCY_EVENTS + 1):
        want = "busy" if seq % 2 else "free"
        kind = "created" if seq % 2 else "deleted"
        with lock:
            before = len(shown)
        t0 = time.perf_counter()
        sink.accept(envelope(kind, seq, now - timedelta(minutes=1), now + timedelta(hours=1)))
        with lock:
            ok = lock.wait_for(lambda b=before, w=want: (  # type: ignore[misc]
                len(shown) > b and shown[-1][1] == w), 5)
            if not ok:
                raise SystemExit(f"event {seq} did not reach the agent")
            latencies.append((shown[-1][0] - t0) * 1000)
    print(f"event at bridge -> device write at agent ({LATENCY_EVENTS} events): "
          f"p50 {median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
          f"max {max(latencies):.1f} ms (target p99 <= 50 ms)")
    for stop, node, services, store in ((a_stop, a_node, a_mqtt, a_store),
                                        (b_stop, b_node, b_mqtt, b_store)):
        stop.set()
        node.wake()
        services.close()
        node.close()
        store.close()


def bench_bridge_1000(tmp: Path, broker: Mosquitto) -> None:
    """Runs in its own process (``--bridge``) so the RSS is the bridge's alone."""
    rooms = "".join(f'[[rooms]]\nopen_id = "omm_{i}"\nname = "Room {i}"\n' for i in range(ROOMS))
    config = parse_config(BRIDGE_TOML.format(port=broker.port) + rooms, tmp / "b1000" / "c.toml")
    clock = SystemClock()
    store = ScheduleStore(config.node.state_dir / "schedule.db", durable=False)
    now = datetime.now(UTC)
    for i in range(ROOMS):
        store.replace_room(f"omm_{i}", [
            Booking(f"bk{i}_{j}", f"bk{i}", 0, now + timedelta(hours=j),
                    now + timedelta(hours=j, minutes=30), "ou_x") for j in range(5)])
    node = Node(config, store, clock, lambda *a: (_ for _ in ()).throw(AssertionError()))
    services = MqttServices(config, node, store, clock)
    connected_at: list[float] = []
    services.link.add_connect_hook(lambda: connected_at.append(time.perf_counter()))
    services.start()
    stop = threading.Event()
    threading.Thread(target=node.run, args=(stop,), daemon=True).start()
    publisher = services.bridge
    assert publisher is not None
    wait(lambda: len(publisher._states) == ROOMS and services.link.connected, 30, "first publish")
    services.link.flush(30)
    times = []
    for _ in range(3):
        broker.stop()
        wait(lambda: not services.link.connected, 10, "disconnect")
        before = len(connected_at)
        broker.start()
        wait(lambda b=before: len(connected_at) > b, 30, "reconnect")  # type: ignore[misc]
        # The connect hooks (republish) run on the worker; wait for them, then every PUBACK.
        done = threading.Event()
        services.link.call_soon(done.set)
        done.wait(30)
        if not services.link.flush(30):
            raise SystemExit("republish not acknowledged")
        times.append(time.perf_counter() - connected_at[-1])
    print(f"bridge, {ROOMS} rooms: republish {2 * ROOMS} retained messages after a broker "
          f"restart, until every PUBACK: median {median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms (target <= 2 s); bridge peak RSS {peak_rss_mb():.0f} MB")
    stop.set()
    node.wake()
    services.close()
    node.close()
    store.close()


AGENT_SCRIPT = """
import sys, threading, time
from bench.common import peak_rss_mb
from display.clock import SystemClock
from display.config import load_config
from display.devices.factory import make_device
from display.mqtt_roles import MqttServices
from display.node import Node
from display.store import ScheduleStore
config = load_config(sys.argv[1])
clock = SystemClock()
store = ScheduleStore(config.node.state_dir / "schedule.db")
node = Node(config, store, clock, make_device)
services = MqttServices(config, node, store, clock)
services.start()
stop = threading.Event()
threading.Thread(target=node.run, args=(stop,), daemon=True).start()
sys.stdin.read()  # the benchmark closes stdin once it saw the first frame
stop.set(); node.wake(); services.close(); node.close(); store.close()
print(peak_rss_mb())
"""


def bench_agent_start(tmp: Path, port: int) -> None:
    # A bridge publishes room omm_0's schedule (busy now), retained, before the agents start.
    clock = SystemClock()
    cfg = parse_config(BRIDGE_TOML.format(port=port) + '[[rooms]]\nopen_id = "omm_0"\n',
                       tmp / "sbridge" / "c.toml")
    node, store, services, stop = run_node(cfg, lambda *a: (_ for _ in ()).throw(
        AssertionError()), clock)
    now = clock.now()
    EventSink(store, clock, node.notify).accept(
        envelope("created", 1, now - timedelta(minutes=5), now + timedelta(hours=1)))
    wait(lambda: services.link.connected and services.bridge is not None
         and services.bridge.published >= 2, 10, "bridge published")
    starts, rss = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i in range(AGENT_STARTS):
        directory = tmp / f"agent{i}"
        directory.mkdir()
        config = directory / "c.toml"
        config.write_text(AGENT_TOML.format(port=port, name=f"agent-{i}"))
        frame = directory / "panels" / f"agent-{i}-led.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, str(config)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def busy(path: Path = frame) -> bool:
            try:
                return bool(json.loads(path.read_text())["state"] == "busy")
            except (OSError, ValueError, KeyError):
                return False

        wait(busy, 10, "agent's first frame")
        starts.append(time.perf_counter() - t0)
        out, _ = proc.communicate("", timeout=10)
        rss.append(float(out.strip().splitlines()[-1]))
    print(f"panel agent start-up to first frame ({AGENT_STARTS} runs, schedule retained): "
          f"median {median(starts) * 1000:.0f} ms, max {max(starts) * 1000:.0f} ms "
          f"(target <= 1 s); peak RSS median {median(rss):.1f} MB, "
          f"max {max(rss):.1f} MB (target <= 50 MB)")
    stop.set()
    node.wake()
    services.close()
    node.close()
    store.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        broker = Mosquitto(tmp)
        broker.start()
        try:
            if argv[:1] == ["--bridge"]:
                bench_bridge_1000(tmp, broker)
                return 0
            print(f"machine: {machine()}")
            bench_latency(tmp, broker.port)
            bench_agent_start(tmp, broker.port)
        finally:
            broker.stop()
    # The 1,000-room bridge in a fresh process, so its RSS is not this one's.
    return subprocess.call([sys.executable, __file__, "--bridge"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
