"""Every node's own health on the broker, and the bridge's view of the whole fleet.

- :class:`NodeStatusPublisher` (every node with ``[mqtt]``): ``{p}/v1/nodes/{name}/status``,
  retained JSON (:func:`node_status_payload`): version, role, clock, links and each device's
  health. Published after every connect, whenever it changes (checked every
  :data:`CHECK_SECONDS`) and every :data:`HEARTBEAT_SECONDS` so "last seen" moves.
- :class:`FleetGatherer` (the bridge): follows every node's ``status`` and ``availability``;
  :meth:`FleetGatherer.fleet` is ``node.fleet`` in the bridge's status document (and so
  on its web page; wired by :mod:`display.mqtt_roles`).

The payload is documented in ``docs/MQTT.md``; a malformed one is one log line and ignored.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from datetime import datetime
from typing import Any

from display import __version__
from display.clock import Clock
from display.node import Node
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import ONLINE, valid_topic_level

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0  # how late a device's or link's change reaches the bridge
HEARTBEAT_SECONDS = 60.0  # republished this often even unchanged: "last seen" stays current
MAX_STATUS_BYTES = 64 * 1024


def status_topic(link: MqttLink, name: str) -> str:
    return f"{link.topics.prefix}/v1/nodes/{name}/status"


def node_status_payload(node: Node, now: datetime) -> dict[str, Any]:
    """This node's health as it publishes it (no secrets, no bookings)."""
    devices = []
    for device_id, (room, device) in sorted(node.devices().items()):
        health = device.health()
        devices.append({"id": device_id, "kind": health.kind, "room": room,
                        "online": health.online,
                        "last_update": health.last_update.isoformat() if health.last_update
                        else None, "error": health.error})
    links = {name: {"up": link["up"], "since": link["since"], "error": link["error"]}
             for name, link in node.freshness.links().items()}
    return {"name": node.config.node.name, "role": node.config.role, "version": __version__,
            "at": now.isoformat(), "clock_synced": node.freshness.clock_ok(), "links": links,
            "rooms": [r.open_id for r in node.config.rooms], "devices": devices}


class NodeStatusPublisher:
    """Publishes this node's status under its node topic; :meth:`attach` starts it."""

    def __init__(self, link: MqttLink, node: Node, clock: Clock) -> None:
        self.link = link
        self.node = node
        self.clock = clock
        self._last: tuple[str, float] | None = None  # (content without "at", monotonic time)
        self._thread = threading.Thread(target=self._run, name="node-status", daemon=True)
        self.published = 0

    def attach(self) -> None:
        # Queued behind the other connect hooks: rooms' schedules and states go out first.
        self.link.add_connect_hook(
            lambda: self.link.call_soon(functools.partial(self.publish, force=True)))
        self._thread.start()

    def _run(self) -> None:
        pause = threading.Event()  # never set: a sleep that is not a bare time.sleep
        while not pause.wait(CHECK_SECONDS):
            if self.link.worker.ident is not None and not self.link.worker.is_alive():
                return  # the link was closed
            self.link.call_soon(self.publish)

    def publish(self, force: bool = False) -> None:
        """Publish if forced, changed or due (on the link's worker thread)."""
        payload = node_status_payload(self.node, self.clock.now())
        content = json.dumps({k: v for k, v in payload.items() if k != "at"}, sort_keys=True)
        mono = self.clock.monotonic()
        last = self._last
        if (not force and last is not None and last[0] == content
                and mono - last[1] < HEARTBEAT_SECONDS):
            return
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if self.link.publish(status_topic(self.link, self.node.config.node.name), data,
                             retain=True) is not None:
            self._last = (content, mono)
            self.published += 1


class FleetGatherer:
    """The bridge's picture of every node: ``node.fleet`` in its status document."""

    def __init__(self, link: MqttLink, node: Node) -> None:
        self.link = link
        self.node = node
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}
        self._availability: dict[str, str] = {}

    def attach(self) -> None:
        prefix = self.link.topics.prefix
        self.link.subscribe(f"{prefix}/v1/nodes/+/status", self._on_status)
        self.link.subscribe(self.link.topics.all_availability, self._on_availability)

    def fleet(self) -> dict[str, dict[str, Any]]:
        """Per node name: online, role, version, clock_synced, last_seen, links, devices."""
        with self._lock:
            names = sorted(set(self._status) | set(self._availability))
            out = {}
            for name in names:
                status = self._status.get(name, {})
                out[name] = {
                    "online": self._availability.get(name) == ONLINE,
                    "role": status.get("role"), "version": status.get("version"),
                    "clock_synced": status.get("clock_synced"),
                    "last_seen": status.get("at"), "links": status.get("links", {}),
                    "rooms": status.get("rooms", []), "devices": status.get("devices", []),
                }
            return out

    def _name(self, topic: str, tail: str) -> str | None:
        head = f"{self.link.topics.prefix}/v1/nodes/"
        if topic.startswith(head) and topic.endswith(tail):
            name = topic[len(head):-len(tail)]
            return name if valid_topic_level(name) else None
        return None

    def _on_status(self, message: MqttMessage) -> None:
        name = self._name(message.topic, "/status")
        if name is None:
            return
        if not message.payload:  # the retained status was cleared: forget the node
            with self._lock:
                self._status.pop(name, None)
            return
        try:
            doc = json.loads(message.payload) if len(message.payload) <= MAX_STATUS_BYTES \
                else None
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("devices", []), list) \
                or not isinstance(doc.get("links", {}), dict):
            log.warning("node %s: status payload ignored (not the documented JSON object)", name)
            return
        with self._lock:
            self._status[name] = doc
        self.node.status_changed()  # node.fleet in the bridge's status

    def _on_availability(self, message: MqttMessage) -> None:
        name = self._name(message.topic, "/availability")
        if name is not None:
            with self._lock:
                self._availability[name] = message.payload.decode("utf-8", "replace")
            self.node.status_changed()
