"""Home Assistant MQTT discovery (``homeassistant = true`` in ``[mqtt]``, on the bridge).

Each configured room becomes a Home Assistant *device* with two entities, both reading the
room's retained state topic ``{p}/v1/rooms/{open_id}/state`` (no extra topics to keep in sync):

- ``binary_sensor`` with ``device_class: occupancy``: ``ON`` while busy or ending;
- ``sensor`` with ``device_class: enum`` (options free/soon/busy/ending) whose attributes
  (``json_attributes_topic``) carry ``current``, ``next``, ``since``, ``until`` (what a person
  reads: free until the next meeting, in use until the block ends; ``display.headline``),
  ``until_text`` (the same in words), ``changes_at`` (the next state change), ``stale``.

Discovery topics: ``{discovery_prefix}/{component}/room_display_{object}/{entity}/config``,
retained; availability follows the bridge's own availability topic (``online``/``offline``,
its LWT). Configs are re-sent when Home Assistant announces itself with ``online`` on
``[mqtt] birth_topic`` (its birth message, ``homeassistant/status`` by default; a setting of its
own in Home Assistant), and a room that leaves the configuration gets an empty retained message
on each of its config topics, which removes the device from Home Assistant. The rooms announced
are recorded in the store's ``meta`` table, so a room removed while the bridge was stopped is
removed at the next start.
"""

from __future__ import annotations

import json
import logging
import re
from importlib import metadata
from typing import Any

from display.config import Config, RoomConfig
from display.store import ScheduleStore
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import OFFLINE, ONLINE

log = logging.getLogger(__name__)

META_ANNOUNCED = "homeassistant.announced"
STATES = ("free", "soon", "busy", "ending")
ORIGIN_URL = "https://github.com/room-display/room-display"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id(open_id: str) -> str:
    """The room's id as Home Assistant accepts it in a topic and a unique_id."""
    return "room_display_" + _UNSAFE.sub("_", open_id)


def _version() -> str:
    try:
        return metadata.version("room-display")
    except metadata.PackageNotFoundError:
        return "0"


def discovery_topics(prefix: str, open_id: str) -> dict[str, str]:
    """``{"binary_sensor": topic, "sensor": topic}`` for one room under ``prefix``."""
    obj = object_id(open_id)
    return {"binary_sensor": f"{prefix}/binary_sensor/{obj}/occupancy/config",
            "sensor": f"{prefix}/sensor/{obj}/state/config"}


def discovery_payloads(room: RoomConfig, state_topic: str,
                       availability_topic: str) -> dict[str, dict[str, Any]]:
    """The two discovery config documents of ``room`` (HA's documented keys, unabbreviated)."""
    obj = object_id(room.open_id)
    device = {
        "identifiers": [obj],
        "name": room.name,
        "manufacturer": "room-display",
        "model": "Meeting room door panel",
        "sw_version": _version(),
        "suggested_area": room.name,
    }
    origin = {"name": "room-display", "sw_version": _version(), "support_url": ORIGIN_URL}
    common = {
        "device": device,
        "origin": origin,
        "availability_topic": availability_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "state_topic": state_topic,
        "qos": 1,
    }
    occupancy = {
        **common,
        "name": "Occupancy",
        "unique_id": f"{obj}_occupancy",
        "device_class": "occupancy",
        "value_template": "{{ 'ON' if value_json.state in ['busy', 'ending'] else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
    }
    state = {
        **common,
        "name": "State",
        "unique_id": f"{obj}_state",
        "device_class": "enum",
        "options": list(STATES),
        "icon": "mdi:door",
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": state_topic,
        "json_attributes_template": (
            "{{ {'current': value_json.current, 'next': value_json.next, "
            "'since': value_json.since, 'until': value_json.until, "
            "'until_text': value_json.until_text, 'changes_at': value_json.changes_at, "
            "'stale': value_json.stale, 'as_of': value_json.as_of} | tojson }}"),
    }
    return {"binary_sensor": occupancy, "sensor": state}


class HomeAssistantDiscovery:
    """Announces every configured room to Home Assistant; wire with :meth:`attach`."""

    def __init__(self, link: MqttLink, config: Config, store: ScheduleStore) -> None:
        if config.mqtt is None:
            raise ValueError("Home Assistant discovery needs [mqtt]")
        self.link = link
        self.config = config
        self.store = store
        self.prefix = config.mqtt.discovery_prefix
        self.status_topic = config.mqtt.birth_topic
        self.announcements = 0

    def attach(self) -> None:
        self.link.subscribe(self.status_topic, self._on_ha_status)
        self.link.add_connect_hook(self.announce)

    def reconfigure(self, config: Config) -> None:
        """Announce new rooms and remove the ones that left (on the worker thread)."""
        self.config = config
        self.link.call_soon(self.announce)

    def announce(self) -> None:
        """Publish every room's configs and remove rooms announced before but gone now."""
        if not self.link.connected:
            return
        rooms = {r.open_id: r for r in self.config.rooms}
        for room in rooms.values():
            topics = discovery_topics(self.prefix, room.open_id)
            docs = discovery_payloads(room, self.link.topics.state(room.open_id),
                                      self.link.availability_topic)
            for component, doc in docs.items():
                self.link.publish(topics[component], json.dumps(doc, ensure_ascii=False),
                                  retain=True)
        announced = _load(self.store.meta(META_ANNOUNCED))
        for open_id in sorted(set(announced) - set(rooms)):
            for topic in discovery_topics(self.prefix, open_id).values():
                self.link.publish(topic, b"", retain=True)
            log.info("Home Assistant: removed room %s (no longer configured)", open_id)
        if sorted(rooms) != sorted(announced):
            self.store.set_meta(META_ANNOUNCED, json.dumps(sorted(rooms)))
        self.announcements += 1

    def _on_ha_status(self, message: MqttMessage) -> None:
        # Home Assistant restarted and lost its entities: its birth message asks for configs.
        if message.payload.strip() == ONLINE.encode():
            log.info("Home Assistant is online: re-sending discovery for %d room(s)",
                     len(self.config.rooms))
            self.announce()


def _load(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
