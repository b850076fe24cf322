"""The bridge's side of the fan-out: every configured room's schedule and state, retained.

- ``{p}/v1/rooms/{open_id}/schedule``: the room's bookings that have not ended (see
  :func:`display.encode.mqtt_schedule.encode_schedule`), republished whenever the node
  re-reads the room from the store (intake committed a change), so a booking next week reaches
  the agents too;
- ``{p}/v1/rooms/{open_id}/state``: :func:`display.encode.view_json.view_json` of the room's view,
  published whenever the node shows a new view.

Payloads are encoded once on the worker thread and cached, so republishing everything after a
reconnect is only the ``publish`` calls (1,000 rooms in well under a second, see
``bench/bench_mqtt.py``). Rooms that left the configuration get an empty retained message on
both topics, which deletes the retained copy on the broker; the list of rooms published is kept
in the store's ``meta`` table so this also works across restarts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from display.clock import Clock, to_epoch_ms
from display.config import Config, RoomConfig
from display.details import shown_details
from display.encode.mqtt_schedule import bookings_window, encode_schedule
from display.encode.view_json import view_json
from display.model import Booking, BookingDetails, RoomView
from display.node import Node
from display.store import ScheduleStore
from display.transport.mqtt_client import MqttLink

log = logging.getLogger(__name__)

META_PUBLISHED = "mqtt.published_rooms"
# A republish (after a connect) keeps at most WINDOW messages unacknowledged: it streams at the
# broker's pace instead of queueing every room in the client at once. Smaller than it was
# (4,000): fewer messages live long enough for Python's garbage collector to move them to its
# oldest generation, whose collections walk the whole heap of a 20,000-room node (4-5 of them,
# 0.7-1.0 s CPU, in a republish at 4,000; about 3, 0.2-0.3 s, at 500). A republish of 20,000
# rooms took 2.3-2.8 s of node CPU at 500, 2.7-3.4 s at 1,000, 2.4-3.8 s at 4,000 (loaded VM).
WINDOW = 500
WINDOW_WAIT = 5.0  # seconds without a PUBACK before the republish stops waiting for the window


class BridgePublisher:
    """Publishes the rooms of ``node`` through ``link``; wire with :meth:`attach`."""

    def __init__(self, link: MqttLink, node: Node, store: ScheduleStore, clock: Clock) -> None:
        self.link = link
        self.node = node
        self.store = store
        self.clock = clock
        self.config: Config = node.config
        self._lock = threading.Lock()
        self._dirty_schedules: set[str] = set()
        self._new_views: dict[str, RoomView] = {}
        self._flush_queued = False
        # Worker-thread state: cached payloads and what they were built from.
        self._schedules: dict[str, bytes] = {}
        self._schedule_content: dict[str, tuple[Any, ...]] = {}
        self._versions: dict[str, int] = {}
        self._states: dict[str, bytes] = {}
        self.published = 0
        #: With several bridges (:mod:`display.publish.peers`): whether this one writes the
        #: room topics now (None: always), and every bridge's name for the schedules.
        self.gate: Callable[[], bool] | None = None
        self.bridges: Callable[[], list[str]] | None = None
        #: Called on the worker with (room, version) for each schedule this bridge published.
        self.on_schedule: Callable[[str, int], None] | None = None
        # The rooms of ``config`` by id, made again only when the configuration is replaced;
        # and whether rooms may have left it (checked at the first flush, after a reload and
        # at every connect: not at every event, which would read the whole list each time).
        self._configured: tuple[Config, dict[str, RoomConfig]] | None = None
        self._forget_pending = True

    def attach(self) -> None:
        """Hook into the node and the link; publishes once connected."""
        self.node.add_listener(self._on_view)
        self.node.add_schedule_listener(self._on_schedules)
        self.link.add_connect_hook(self.republish_all)
        self._mark_all()

    def reconfigure(self, config: Config) -> None:
        """Rooms were added or removed (``map``, a reload): publish the new set."""
        self.config = config
        self._forget_pending = True
        self._mark_all()

    def reconfigure_bridges(self) -> None:
        """The set of bridges changed: the schedules list them, so publish them again."""
        self._mark_all()

    # -- node thread: only record and queue ----------------------------------------------------

    def _on_view(self, view: RoomView) -> None:
        with self._lock:
            self._new_views[view.open_id] = view
        self._queue_flush()

    def _on_schedules(self, rooms: list[str]) -> None:
        with self._lock:
            self._dirty_schedules.update(rooms)
        self._queue_flush()

    def _mark_all(self) -> None:
        with self._lock:
            self._dirty_schedules.update(r.open_id for r in self.config.rooms)
        self._queue_flush()

    def _queue_flush(self) -> None:
        # Coalesce: a burst of views (every room at a reconnect) is one pass on the worker.
        with self._lock:
            if self._flush_queued:
                return
            self._flush_queued = True
        self.link.call_soon(self.flush)

    # -- worker thread ----------------------------------------------------------------------------

    def flush(self, everything: bool = False) -> None:
        """Encode what changed and publish it (if connected; else at the next connect).

        ``everything``: publish every cached payload, changed or not (after a reconnect).
        """
        with self._lock:
            self._flush_queued = False
            dirty, self._dirty_schedules = self._dirty_schedules, set()
            views, self._new_views = self._new_views, {}
        configured = self._rooms()
        now = self.clock.now()
        bridges = tuple(self.bridges()) if self.bridges is not None else ()
        if len(bridges) < 2:  # one bridge: the payload stays as it always was
            bridges = ()
        for open_id in sorted(dirty):
            room = configured.get(open_id)
            if room is None:
                continue
            current = self._bookings(open_id, now)
            if current is None:
                continue  # the node has not read it yet: it tells us when it did
            bookings = tuple(bookings_window(current))
            details = self._details(room, bookings)
            name, path = self.node.room_name(room), self.node.room_path(room)
            content = (name, path, bookings, tuple(sorted(details.items())), bridges)
            if self._schedule_content.get(open_id) == content and open_id in self._schedules:
                continue
            # version: when the content last changed at this bridge (ms), strictly increasing.
            version = max(to_epoch_ms(now), self._versions.get(open_id, 0) + 1)
            self._versions[open_id] = version
            self._schedule_content[open_id] = content
            self._schedules[open_id] = encode_schedule(
                open_id, name, bookings, version=version, generated_at=now,
                bridge=self.link.node_name, details=details, path=path,
                bridges=bridges)
            if not everything:
                self._stream_schedule(open_id)
        for open_id, view in views.items():
            if open_id not in configured:
                continue
            payload = json.dumps(view_json(view), ensure_ascii=False,
                                 separators=(",", ":")).encode()
            if self._states.get(open_id) == payload:
                continue
            self._states[open_id] = payload
            if not everything:
                self._stream(self.link.topics.state(open_id), payload)
        if everything and self.gate is not None and not self.gate():
            log.info("another bridge publishes: %d schedules and %d states kept for a takeover",
                     len(self._schedules), len(self._states))
        elif everything:
            topics = self.link.topics
            for open_id in sorted(self._schedules):
                self._stream_schedule(open_id)
            for open_id in sorted(self._states):
                self._stream(topics.state(open_id), self._states[open_id])
            log.info("published %d schedules and %d states", len(self._schedules),
                     len(self._states))
        if self._forget_pending:
            self._forget_removed(set(configured))

    def _bookings(self, open_id: str, now: datetime) -> list[Booking] | None:
        """The room's bookings not ended at ``now``: the node's copy, read when it told us the
        room changed (20,000 rooms are not read twice); None before the node's first read of
        it, which tells the schedule listeners (at start, before its first pass)."""
        cached = self.node.cached_bookings(open_id)
        if cached is None:
            return None
        now_ms = to_epoch_ms(now)
        return [b for b in cached if to_epoch_ms(b.end) > now_ms]

    def _rooms(self) -> dict[str, RoomConfig]:
        config = self.config
        if self._configured is None or self._configured[0] is not config:
            self._configured = (config, {r.open_id: r for r in config.rooms})
        return self._configured[1]

    def _details(self, room: RoomConfig,
                 bookings: tuple[Booking, ...]) -> dict[str, BookingDetails]:
        """What the bridge's ``[details]`` lets its schedule say of who and what (nothing by
        default: a detail that is off never leaves the bridge)."""
        policy = self.config.room_details(room)
        if not policy.any:
            return {}
        return shown_details(bookings, self.store.details(b.key for b in bookings), policy)

    def take_over(self, floor: dict[str, int] | None) -> None:
        """On the worker: this bridge became the publisher (``floor``: the newest version of
        each room on the broker) and republishes every room above it; None: it stopped."""
        if floor is None:
            return
        for open_id, version in floor.items():
            self._versions[open_id] = max(self._versions.get(open_id, 0), version)
        self._schedule_content.clear()  # re-encoded: a new version, this bridge's name
        with self._lock:
            self._dirty_schedules.update(r.open_id for r in self.config.rooms)
        self.flush(everything=True)

    def republish_all(self) -> None:
        """Connect hook: the broker may have lost every retained message (no persistence)."""
        self._forget_pending = True
        self.flush(everything=True)

    def _stream_schedule(self, open_id: str) -> None:
        if (self._stream(self.link.topics.schedule(open_id), self._schedules[open_id])
                and self.on_schedule is not None):
            self.on_schedule(open_id, self._versions[open_id])

    def _stream(self, topic: str, payload: bytes) -> bool:
        """Publish with at most :data:`WINDOW` unacknowledged at a time (a first publish or a
        republish of every room goes at the broker's pace, not all into the client at once)."""
        if self.link.connected and not self.link.wait_window(WINDOW, WINDOW_WAIT):
            # Slow broker: go on unthrottled rather than skip a room (a lost link republishes
            # everything at its next connect anyway).
            log.debug("republish window not drained within %s s", WINDOW_WAIT)
        return self._publish(topic, payload)

    def _publish(self, topic: str, payload: bytes) -> bool:
        if self.gate is not None and not self.gate():
            return False  # another bridge publishes; ours stays cached for a takeover
        if self.link.publish(topic, payload, retain=True) is None:
            return False
        self.published += 1
        return True

    def _forget_removed(self, configured: set[str]) -> None:
        """Delete the retained topics of rooms no longer configured, once connected."""
        recorded = set(_load_list(self.store.meta(META_PUBLISHED)))
        removed = (recorded | set(self._schedules) | set(self._states)) - configured
        if not self.link.connected or (self.gate is not None and not self.gate()):
            return  # the record stays; the next connect (or takeover) does it
        self._forget_pending = False
        for open_id in sorted(removed):
            for topic in (self.link.topics.schedule(open_id), self.link.topics.state(open_id)):
                self.link.publish(topic, b"", retain=True)
            self._schedules.pop(open_id, None)
            self._states.pop(open_id, None)
            self._schedule_content.pop(open_id, None)
            log.info("room %s left the configuration: cleared its retained topics", open_id)
        if recorded != configured:
            self.store.set_meta(META_PUBLISHED, json.dumps(sorted(configured)))


def _load_list(raw: str | None) -> Iterable[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
