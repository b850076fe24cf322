"""Bridge and agent nodes for the MQTT tests: real Node loops, real store, real broker link."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from display.clock import Clock
from display.config import Config, parse_config
from display.devices.factory import make_device
from display.intake.sink import EventSink
from display.mqtt_roles import MqttServices
from display.node import Node
from display.outbox import install as install_outbox
from display.store import ScheduleStore, store_path
from display.testing.clock import FakeClock

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai

BRIDGE = """
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
[feishu]
mode = "webhook"
verification_token = "vtoken"
[mqtt]
url = {url}
{mqtt_extra}
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms]]
open_id = "omm_b"
name = "Room B"
"""

AGENT = """
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
[mqtt]
url = {url}
{mqtt_extra}
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "{name}-led"
kind = "led"
url = "virtual:panels"
"""


class RunningNode:
    """A node with its MQTT services, its loop on a thread; ``close`` stops all of it."""

    def __init__(self, directory: Path, template: str, *, name: str, url: str | list[str],
                 clock: Clock, mqtt_extra: str = "") -> None:
        """``url`` is one broker URL or a list of them (``[mqtt] url`` takes both)."""
        directory.mkdir(parents=True, exist_ok=True)
        # JSON strings and arrays of ASCII strings are valid TOML values.
        text = template.format(name=name, url=json.dumps(url), mqtt_extra=mqtt_extra)
        self.path = directory / "room-display.toml"
        self.path.write_text(text)
        self.config: Config = parse_config(text, self.path)
        self.clock = clock
        self.store = ScheduleStore(store_path(self.config), durable=False)
        self.node = Node(self.config, self.store, clock, make_device)
        self.mqtt = MqttServices(self.config, self.node, self.store, clock)
        # A bridge's Feishu intake commits through its own connection with the replication
        # outbox (as the intake child does); the node and its peers read through another.
        self.intake_store = self.store
        if self.config.role == "bridge":
            self.intake_store = ScheduleStore(store_path(self.config), durable=False)
            install_outbox(self.intake_store, clock.now)
        self.sink = EventSink(self.intake_store, clock, self.node.notify)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.node.run, args=(self._stop,), daemon=True)

    def start(self) -> RunningNode:
        self.mqtt.start()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.node.wake()
        self._thread.join(timeout=5)
        self.mqtt.close()
        self.node.close()
        self.store.close()
        if self.intake_store is not self.store:
            self.intake_store.close()

    def kill(self) -> None:
        """End like a SIGKILL: the connection drops without the clean ``offline`` (the broker
        sends the last will), and nothing else of the node runs on."""
        self._stop.set()
        self.node.wake()
        self._thread.join(timeout=5)
        link = self.mqtt.link
        link._stopping.set()  # no reconnect, no clean offline
        client = link._client
        if client is not None:
            client.loop_stop()
            sock = client.socket()
            if sock is not None:
                sock.close()
        link._tasks.put(None)
        self.node.close()
        self.store.close()
        if self.intake_store is not self.store:
            self.intake_store.close()

    def panel(self, device: str | None = None) -> dict[str, Any] | None:
        """What the agent's virtual panel shows (its JSON file), or None before the first."""
        device = device or f"{self.config.node.name}-led"
        path = self.path.parent / "panels" / f"{device}.json"
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return doc

    def state(self) -> str | None:
        return (self.panel() or {}).get("state")

    def link(self, name: str) -> dict[str, Any]:
        links: dict[str, dict[str, Any]] = self.node.freshness.links()
        return links.get(name, {})


def fake_clock() -> FakeClock:
    return FakeClock(START)
