"""Every node's own health on the broker, and the bridge's view of the whole fleet.

- :class:`NodeStatusPublisher` (every node with ``[mqtt]``): ``{p}/v1/nodes/{name}/status``,
  retained JSON (:func:`node_status_payload`): version, role, clock, links and each device's
  health. Published after every connect, whenever it changes (checked every
  :data:`CHECK_SECONDS`) and every :data:`HEARTBEAT_SECONDS` so "last seen" moves.
- :class:`FleetGatherer` (the bridge): follows every node's ``status`` and ``availability``;
  :meth:`FleetGatherer.fleet` is ``node.fleet`` in the bridge's status document (and so
  on its web page; wired by :mod:`display.mqtt_roles`).

The payload is documented in ``docs/MQTT.md``; another node's is bounded before it is parsed
(:data:`MAX_STATUS_BYTES`, :data:`STATUS_DEPTH`) and reduced to that shape before it is kept
(:func:`shape_status`): a malformed one is one rate-limited log line, never more.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
from datetime import datetime
from typing import Any

from display import __version__, jsonbound
from display.clock import Clock
from display.errors import EventError
from display.node import Node
from display.ratelimit import RateLimitedLog
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import ONLINE, valid_topic_level

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0  # how late a device's or link's change reaches the bridge
HEARTBEAT_SECONDS = 60.0  # republished this often even unchanged: "last seen" stays current
#: A node status larger than this is dropped unread (a real one is a few KiB).
MAX_STATUS_BYTES = 64 * 1024
#: Deepest JSON nesting read in a node status (the documented one nests 3 levels).
STATUS_DEPTH = 8
MAX_TEXT = 256  # characters kept of any string of another node's status
MAX_ITEMS = 256  # entries kept of its lists (devices, rooms) and links
MAX_NODES = 1000  # nodes followed; more is one warning per newcomer
WARN_EVERY_SECONDS = 600.0  # one warning per node and cause this often


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
    """The bridge's picture of every node: ``node.fleet`` in its status document.

    Another node's status is only kept as :func:`shape_status` reduces it (known fields, right
    types, bounded lengths), so whatever a node publishes, the status document, ``status`` and
    the page get the documented shape; what was wrong is one rate-limited WARNING per node and
    cause.
    """

    def __init__(self, link: MqttLink, node: Node, clock: Clock | None = None) -> None:
        self.link = link
        self.node = node
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}
        self._availability: dict[str, str] = {}
        self._warnings = RateLimitedLog(log, WARN_EVERY_SECONDS,
                                       clock.monotonic if clock else time.monotonic)

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
            return name if valid_topic_level(name) and len(name) <= MAX_TEXT else None
        return None

    def _room_for(self, name: str, kept: dict[str, Any]) -> bool:
        """Whether one more node fits (:data:`MAX_NODES`); one warning when it does not."""
        if name in kept or len(set(self._status) | set(self._availability)) < MAX_NODES:
            return True
        self._warnings.warning("too many nodes", "node %s ignored: the bridge already follows "
                               "%d nodes", name, MAX_NODES)
        return False

    def _on_status(self, message: MqttMessage) -> None:
        name = self._name(message.topic, "/status")
        if name is None:
            return
        if not message.payload:  # the retained status was cleared: forget the node
            with self._lock:
                self._status.pop(name, None)
            return
        try:
            doc = jsonbound.loads(message.payload, what="status", max_bytes=MAX_STATUS_BYTES,
                                  max_depth=STATUS_DEPTH)
        except EventError as exc:
            self._warnings.warning((name, "unreadable"),
                                   "node %s: status payload ignored: %s", name, exc)
            return
        if not isinstance(doc, dict):
            self._warnings.warning((name, "not an object"), "node %s: status payload ignored "
                                   "(not the documented JSON object)", name)
            return
        shaped, dropped = shape_status(doc)
        if dropped:
            self._warnings.warning((name, "fields dropped"), "node %s: status fields not of "
                                   "the documented shape ignored: %s", name,
                                   ", ".join(dropped[:5]))
        with self._lock:
            if self._room_for(name, self._status):
                self._status[name] = shaped
        self.node.status_changed()  # node.fleet in the bridge's status

    def _on_availability(self, message: MqttMessage) -> None:
        name = self._name(message.topic, "/availability")
        if name is not None:
            with self._lock:
                if self._room_for(name, self._availability):
                    self._availability[name] = availability_text(message.payload)
            self.node.status_changed()


def availability_text(payload: bytes) -> str:
    """An availability payload as kept: ``online``/``offline`` or a bounded excerpt."""
    return payload[:16].decode("utf-8", "replace")


def shape_status(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``doc`` reduced to the documented node status shape, and the fields that were not.

    Unknown keys are left out silently (a newer node may add some); a known key of the wrong
    type is left out and named; strings are cut to :data:`MAX_TEXT` characters, lists to
    :data:`MAX_ITEMS` entries.
    """
    dropped: list[str] = []
    out: dict[str, Any] = {}
    for key in ("name", "role", "version", "at"):
        if key in doc:
            _put(out, key, _text(doc[key]), dropped, key)
    if "clock_synced" in doc:
        _put(out, "clock_synced", doc["clock_synced"] if isinstance(doc["clock_synced"], bool)
             else None, dropped, "clock_synced")
    links = doc.get("links", {})
    if isinstance(links, dict):
        out["links"] = {}
        for link_name, link in itertools.islice(links.items(), MAX_ITEMS):
            shaped = _link(link)
            if isinstance(link_name, str) and len(link_name) <= MAX_TEXT and shaped is not None:
                out["links"][link_name] = shaped
            else:
                dropped.append(f"links.{_text(link_name) or '?'}")
    else:
        dropped.append("links")
    rooms = doc.get("rooms", [])
    if isinstance(rooms, list):
        out["rooms"] = [r for r in (_text(r) for r in rooms[:MAX_ITEMS]) if r is not None]
        if len(out["rooms"]) != min(len(rooms), MAX_ITEMS):
            dropped.append("rooms")
    else:
        dropped.append("rooms")
    devices = doc.get("devices", [])
    if isinstance(devices, list):
        out["devices"] = [d for d in (_device(d) for d in devices[:MAX_ITEMS]) if d is not None]
        if len(out["devices"]) != min(len(devices), MAX_ITEMS):
            dropped.append("devices")
    else:
        dropped.append("devices")
    return out, dropped


def _put(out: dict[str, Any], key: str, value: Any, dropped: list[str], where: str) -> None:
    if value is None:
        dropped.append(where)
    out[key] = value


def _text(value: Any) -> str | None:
    """A string cut to :data:`MAX_TEXT` characters, or None for anything else."""
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _optional_text(raw: dict[str, Any], key: str) -> tuple[bool, str | None]:
    value = raw.get(key)
    return (value is None or isinstance(value, str)), _text(value)


def _link(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("up"), bool):
        return None
    since_ok, since = _optional_text(raw, "since")
    error_ok, error = _optional_text(raw, "error")
    if not (since_ok and error_ok):
        return None
    return {"up": raw["up"], "since": since, "error": error}


def _device(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) \
            or not isinstance(raw.get("online"), bool):
        return None
    out: dict[str, Any] = {"id": raw["id"][:MAX_TEXT], "online": raw["online"]}
    for key in ("kind", "room", "last_update", "error"):
        ok, value = _optional_text(raw, key)
        if not ok:
            return None
        out[key] = value
    return out
