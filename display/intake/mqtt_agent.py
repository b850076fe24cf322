"""A panel agent's intake: the schedule topics of its own rooms, validated, into its store.

The agent keeps each room's schedule in its own SQLite store and computes occupancy with its own
clock (the ordinary node loop, fed through
:class:`~display.intake.node_input.NodeInput`), so panels keep changing at meeting start
and end while the broker or the bridge is down, and after a restart without a broker.

Links for the stale rule (README): ``broker`` (reported by :class:`MqttLink`) and ``bridge``:
the availability topic of the node named in the schedules' ``bridge`` field. The agent
subscribes to the availability of each bridge its schedules name (and no other node's) and
counts the bridge up while every bridge its rooms' schedules came from says ``online``. Until
a schedule arrives, ``bridge`` is down ("no schedule received yet"), so a misconfigured topic
prefix turns panels stale instead of showing "free" forever.

Every payload is checked (:func:`display.encode.mqtt_schedule.decode_schedule`): a bad one is
one log line naming the room and what was wrong, and changes nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from display.clock import Clock
from display.config import Config
from display.encode.mqtt_schedule import decode_schedule
from display.errors import EventError, StoreError
from display.intake.node_input import NodeInput
from display.store import ScheduleStore
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import ONLINE

log = logging.getLogger(__name__)


class AgentIntake:
    """Feeds ``node`` from the schedule topics of the rooms of ``config``; wire with
    :meth:`attach`."""

    def __init__(self, link: MqttLink, node: NodeInput, store: ScheduleStore, clock: Clock,
                 config: Config) -> None:
        self.link = link
        self.node = node
        self.store = store
        self.clock = clock
        self.config = config
        self._lock = threading.Lock()
        self._rooms: set[str] = set()
        self._bridge_of: dict[str, str] = {}  # room -> bridge node named in its schedule
        self._versions: dict[str, int] = {}
        self._received: dict[str, str] = {}
        self._availability: dict[str, str] = {}  # node -> "online" | "offline"
        self._followed: set[str] = set()  # bridges whose availability we subscribed to
        self.applied = 0
        self.rejected = 0

    def attach(self) -> None:
        """Subscribe (now and after every reconnect) and declare the ``bridge`` link (down until
        a schedule arrives)."""
        self.node.set_link("bridge", False, "no schedule received yet")
        self.reconfigure(self.config)

    def reconfigure(self, config: Config) -> None:
        """Follow the rooms of ``config``: subscribe to new ones, drop removed ones."""
        self.config = config
        wanted = {r.open_id for r in config.rooms}
        with self._lock:
            added, removed = wanted - self._rooms, self._rooms - wanted
            self._rooms = wanted
            for open_id in removed:
                self._bridge_of.pop(open_id, None)
        for open_id in sorted(removed):
            self.link.unsubscribe(self.link.topics.schedule(open_id))
        for open_id in sorted(added):
            self.link.subscribe(self.link.topics.schedule(open_id), self._on_schedule)
        if removed:
            self._update_bridge_link()

    def status(self) -> dict[str, Any]:
        """Per room: the schedule version shown and where it came from (for ``status``)."""
        with self._lock:
            return {room: {"version": self._versions.get(room), "bridge": self._bridge_of.get(room),
                           "received_at": self._received.get(room)} for room in sorted(self._rooms)}

    # -- handlers (worker thread) -----------------------------------------------------------------

    def _on_schedule(self, message: MqttMessage) -> None:
        open_id = self.link.topics.room_of(message.topic)
        with self._lock:
            drives = open_id in self._rooms
        if open_id is None or not drives:
            log.warning("schedule on %s ignored: this node does not drive room %s",
                        message.topic, open_id)
            self.rejected += 1  # after the log line: tests wait on this count
            return
        if not message.payload:
            # An empty retained message: the bridge withdrew the room. Keep what we have (the
            # clock still moves it on) rather than guess the room is free.
            log.warning("room %s: the bridge withdrew its schedule (room removed from the "
                        "bridge's config?); keeping the last one", open_id)
            return
        try:
            schedule = decode_schedule(message.payload, open_id)
        except EventError as exc:
            log.warning("room %s: schedule rejected, nothing applied: %s", open_id, exc)
            self.rejected += 1
            return
        try:
            changed = self.store.replace_room(open_id, schedule.bookings)
        except StoreError as exc:
            log.error("room %s: cannot store its schedule: %s", open_id, exc)
            return
        with self._lock:
            self._bridge_of[open_id] = schedule.bridge
            self._versions[open_id] = schedule.version
            self._received[open_id] = self.clock.now().isoformat()
            new_bridge = schedule.bridge not in self._followed
            self._followed.add(schedule.bridge)
        if new_bridge:
            # Only the availability of bridges our schedules name: another node's topics are
            # none of our business (and could be large).
            self.link.subscribe(self.link.topics.availability(schedule.bridge),
                                self._on_availability)
        self.applied += 1
        if changed:
            log.info("room %s: schedule v%d from %s, %d booking(s)", open_id, schedule.version,
                     schedule.bridge, len(schedule.bookings))
            self.node.notify([open_id])
        self._update_bridge_link()

    def _on_availability(self, message: MqttMessage) -> None:
        name = self.link.topics.node_of(message.topic)
        if name is None:
            return
        with self._lock:
            self._availability[name] = message.payload.decode("utf-8", "replace")
            follows = name in self._bridge_of.values()
        if follows:
            self._update_bridge_link()

    def _update_bridge_link(self) -> None:
        with self._lock:
            bridges = sorted(set(self._bridge_of.values()))
            down = [b for b in bridges if self._availability.get(b) != ONLINE]
        if not bridges:
            self.node.set_link("bridge", False, "no schedule received yet")
        elif down:
            self.node.set_link("bridge", False, f"bridge {', '.join(down)} offline")
        else:
            self.node.set_link("bridge", True)
