"""Bridges that share what they commit, and the one of them that publishes the rooms.

Bridges of one site find each other through the broker and prefix they share; nothing else is
configured. Each bridge (docs/MQTT.md, "Several bridges"):

- publishes every row of its outbox (:mod:`display.outbox`: the events its Feishu intake
  committed, in order) QoS 1 on ``{p}/v1/bridges/{name}/events``, and says how far it got, and
  how far it applied each peer's events, retained on ``{p}/v1/bridges/{name}/progress`` (which
  is also how the others know it is a bridge);
- applies every peer's events through its own store with the same dedupe (``uuid``) and version
  (``event_time``) rules as its own, on a connection without a journal, so a replicated event
  never goes back out (no ping-pong), and tells its node which rooms changed;
- sends its outbox again (from what the peer reported applying, else the whole
  :data:`~display.outbox.OUTBOX_KEEP` window) whenever a peer's availability turns ``online``,
  and to every peer after its own reconnect: a bridge that was away catches up.

One publisher: the retained room topics (schedule, state, Home Assistant discovery) are written
by one bridge, chosen from the bridges' own ``online``/``offline`` availability: the bridge that
published the newest retained schedule while it is online, else the online bridge with the
smallest name. Every bridge follows the retained schedules' versions, so one taking over
publishes above the newest version on the broker, and agents never go back.

A bridge that has never met another does not subscribe to the room schedules: the broker would
send it back every schedule it publishes (MQTT 3.1.1 has no "no local"), which at 20,000 rooms
made its republish four times slower. Its own schedules reach the choice through
:meth:`Peers.published` instead. It subscribes as soon as another bridge shows up (and at every
connect once it met one, the fact being kept in its store), before it settles who publishes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from display.clock import Clock, from_epoch_ms
from display.errors import EventError, StoreError
from display.node import Node
from display.outbox import Outbox, event_from_json
from display.store import ScheduleStore
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import ONLINE, valid_topic_level

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often the outbox is looked at when no change woke us
PROGRESS_SECONDS = 1.0  # the progress topic is republished at most this often while it moves
SETTLE_SECONDS = 3.0  # after a connect, at most this long before deciding who publishes
PRUNE_SECONDS = 3600.0  # the outbox beyond its window goes once an hour (the intake prunes too)
BATCH = 500  # outbox rows per pass; also events applied per transaction
MAX_EVENT_BYTES = 64 * 1024
META_APPLIED = "replica.applied"
META_MET = "replica.met_peers"


def events_topic(prefix: str, name: str) -> str:
    return f"{prefix}/v1/bridges/{name}/events"


def progress_topic(prefix: str, name: str) -> str:
    return f"{prefix}/v1/bridges/{name}/progress"


class Peers:
    """This bridge's replication and publisher choice; wire with :meth:`attach`.

    ``store`` must be a connection of this node's schedule store **without** a journal (the
    events applied through it are not this bridge's to send on).
    """

    def __init__(self, link: MqttLink, node: Node, store: ScheduleStore, clock: Clock) -> None:
        if store.journal is not None:
            raise ValueError("Peers needs a store connection without a journal")
        self.link = link
        self.node = node
        self.store = store
        self.clock = clock
        self.me = link.node_name
        self.outbox = Outbox(store)
        self._lock = threading.Lock()
        self._bridges: set[str] = set()
        self._online: dict[str, bool] = {}
        self._published: dict[str, int] = {}  # per peer: the newest seq it says it sent
        self._their_applied: dict[str, int] = {}  # per peer: our seq it says it applied
        self._applied: dict[str, int] = _load_applied(store.meta(META_APPLIED))
        # Whether this bridge ever met another (kept in the store across restarts).
        self._met = store.meta(META_MET) is not None
        self._cursor = self.outbox.last_seq()  # sent up to here (rows after it: not yet)
        self._pending: list[tuple[str, int, Any]] = []
        self._drain_queued = False
        self._versions: dict[str, int] = {}  # per room: the newest retained version seen
        self._newest: tuple[int, str] | None = None  # (version, bridge) of the newest schedule
        self._settled = False
        self._connect_no = 0
        # Our progress messages published and their echoes heard since the connect; the
        # echo of number ``_echo_target`` follows the retained messages of every subscription
        # made before it (the broker keeps a client's packets in order).
        self._progress_count = 0
        self._echoes_heard = 0
        self._echo_target = 0
        self._following = False  # subscribed to the room schedules
        self._reassert_queued = False
        self._publisher: str | None = None
        self._active = False  # what the on_role hooks were last told
        self._progress_sent: tuple[str, float] | None = None
        self._poller = threading.Thread(target=self._poll, name="replica-poll", daemon=True)
        #: Called on the worker with this bridge's versions floor when it becomes the
        #: publisher (republish everything above them), and with None when it stops.
        self.on_role: list[Callable[[dict[str, int] | None], None]] = []
        #: Called on the worker when a bridge joined or left the set (the schedules list them).
        self.on_bridges: list[Callable[[], None]] = []
        self.sent = 0
        self.applied_events = 0
        self.rejected = 0
        self.takeovers = 0

    # -- wiring -----------------------------------------------------------------------------------

    def attach(self) -> None:
        p = self.link.topics.prefix
        self.link.subscribe(f"{p}/v1/bridges/+/events", self._on_events)
        self.link.subscribe(f"{p}/v1/bridges/+/progress", self._on_progress)
        if self._met:
            self._follow_schedules()
        self.link.subscribe(self.link.topics.all_availability, self._on_availability)
        self.link.add_connect_hook(self._connected)
        self.link.add_disconnect_hook(self._lost)
        self.node.add_schedule_listener(lambda rooms: self.link.call_soon(self.pump))
        self._poller.start()

    def _follow_schedules(self) -> None:
        """Subscribe to every room's schedule (from now on, at every connect too).

        While unsettled, the settling waits for the echo of one more progress message, which
        the broker sends after the retained schedules of this subscription."""
        if self._following:
            return
        self._following = True
        self.link.subscribe(f"{self.link.topics.prefix}/v1/rooms/+/schedule", self._on_schedule)
        if self.link.connected and not self._settled and self._echo_target > 0:
            self._publish_progress(force=True)
            self._echo_target = self._progress_count

    def published(self, open_id: str, version: int) -> None:
        """On the worker: this bridge published ``version`` of the room's schedule (what its
        echo on the room topic would tell a bridge following the schedules)."""
        self._versions[open_id] = max(version, self._versions.get(open_id, 0))
        if self._newest is None or (version, _inverse(self.me)) > (self._newest[0],
                                                                  _inverse(self._newest[1])):
            before = self._newest[1] if self._newest else None
            self._newest = (version, self.me)
            if before != self.me:  # decided after the publishing pass, not inside it
                self.link.call_soon(self._decide)

    def met_others(self) -> bool:
        """Whether this bridge has ever seen another bridge on its broker (kept in its store)."""
        with self._lock:
            return self._met

    def is_publisher(self) -> bool:
        """True while this bridge writes the retained room topics.

        Right after a connect, before the retained messages told it about the others, a bridge
        that never met another one publishes at once (a site with one bridge sees no delay);
        one that did waits until it knows who publishes.
        """
        if not self.link.connected:
            return False
        if not self._settled:
            with self._lock:
                return not self._met and not self._bridges - {self.me}
        return self._publisher == self.me

    def bridges(self) -> list[str]:
        """Every bridge known on the broker, this one included."""
        with self._lock:
            return sorted(self._bridges | {self.me})

    def status(self) -> dict[str, Any]:
        """``node.replication`` in ``status``: who publishes and how far behind each peer is."""
        publishing = self.is_publisher()
        with self._lock:
            peers = {}
            for name in sorted(self._bridges - {self.me}):
                published = self._published.get(name, 0)
                applied = self._applied.get(name, 0)
                peers[name] = {"online": self._online.get(name, False), "published": published,
                               "applied": applied, "behind": max(0, published - applied),
                               "applied_ours": self._their_applied.get(name)}
            return {"publisher": self._publisher if self._settled else None,
                    "publishing": publishing, "sequence": self._cursor,
                    "takeovers": self.takeovers, "peers": peers}

    # -- the worker thread ------------------------------------------------------------------------

    def _connected(self) -> None:
        self._connect_no += 1
        number = self._connect_no
        self._settled = False
        with self._lock:
            # Peers' availability arrives again (retained): each "online" then replays to it.
            self._online.clear()
            # Whatever was in flight when the link dropped may be lost (clean session).
            self._cursor = min([self._cursor, *self._their_applied.values()])
        self._active = self.is_publisher()  # the other connect hooks did as this says
        self._progress_count = self._echoes_heard = 0
        self._publish_progress(force=True)  # its echo tells us the retained ones came first
        self._echo_target = max(1, self._progress_count)
        timer = threading.Timer(SETTLE_SECONDS,
                                lambda: self.link.call_soon(lambda: self._settle(number)))
        timer.daemon = True
        timer.start()
        self.pump()

    def _lost(self, reason: str) -> None:
        self._settled = False
        self._decide()

    def _settle(self, number: int) -> None:
        if number != self._connect_no or self._settled or not self.link.connected:
            return
        self._settled = True
        self._decide()

    def _poll(self) -> None:
        pause = threading.Event()  # never set: a sleep that is not a bare time.sleep
        pruned = time.monotonic()
        while not pause.wait(POLL_SECONDS):
            if self.link.worker.ident is not None and not self.link.worker.is_alive():
                return  # the link was closed
            self.link.call_soon(self.pump)
            if time.monotonic() - pruned >= PRUNE_SECONDS:  # a quiet site prunes too
                pruned = time.monotonic()
                self.link.call_soon(self._prune)

    def _prune(self) -> None:
        self.outbox.prune(self.clock.now())

    def pump(self) -> None:
        """Send the outbox rows not sent yet (while connected), then the progress if due."""
        while self.link.connected:
            try:
                rows = self.outbox.after(self._cursor, BATCH)
            except StoreError as exc:
                log.warning("cannot read the replication outbox: %s", exc)
                return
            topic = events_topic(self.link.topics.prefix, self.me)
            for row in rows:
                payload = (f'{{"origin":{json.dumps(self.me)},"seq":{row.seq},'
                           f'"committed_at":"{from_epoch_ms(row.committed_ms).isoformat()}",'
                           f'"event":{row.event}}}')
                if self.link.publish(topic, payload) is None:
                    return
                self._cursor = row.seq
                self.sent += 1
            if len(rows) < BATCH:
                break
        self._publish_progress()

    def _publish_progress(self, force: bool = False) -> None:
        with self._lock:
            doc = {"name": self.me, "published": self._cursor, "applied": dict(self._applied)}
        content = json.dumps(doc, sort_keys=True)
        mono = time.monotonic()  # an I/O rate, not the schedule's clock
        last = self._progress_sent
        if not force and last is not None and (last[0] == content
                                               or mono - last[1] < PROGRESS_SECONDS):
            return
        doc["at"] = self.clock.now().isoformat()
        if self.link.publish(progress_topic(self.link.topics.prefix, self.me),
                             json.dumps(doc, separators=(",", ":")), retain=True) is not None:
            self._progress_count += 1
            self._progress_sent = (content, mono)
            if last is None or json.loads(last[0])["applied"] != doc["applied"]:
                try:
                    self.store.set_meta(META_APPLIED, json.dumps(doc["applied"]))
                except StoreError as exc:
                    log.warning("cannot record replication progress: %s", exc)

    # -- messages ---------------------------------------------------------------------------------

    def _name(self, topic: str, tail: str) -> str | None:
        head = f"{self.link.topics.prefix}/v1/bridges/"
        if topic.startswith(head) and topic.endswith(tail):
            name = topic[len(head):-len(tail)]
            return name if valid_topic_level(name) else None
        return None

    def _on_progress(self, message: MqttMessage) -> None:
        name = self._name(message.topic, "/progress")
        if name is None:
            return
        if name == self.me:
            if not message.retain:  # our own echo: the retained before it came
                self._echoes_heard += 1
                if self._echoes_heard >= self._echo_target and not self._settled:
                    self._settle(self._connect_no)
            return
        if not message.payload:  # a bridge withdrawn by hand: forget it
            with self._lock:
                self._bridges.discard(name)
            self._decide()
            for hook in self.on_bridges:
                hook()
            return
        doc = _json(message.payload)
        published = doc.get("published") if isinstance(doc, dict) else None
        applied = doc.get("applied") if isinstance(doc, dict) else None
        if not _count(published) or not isinstance(applied, dict):
            log.warning("bridge %s: progress payload ignored (not the documented object)", name)
            return
        ours = applied.get(self.me)
        with self._lock:
            new = name not in self._bridges
            self._bridges.add(name)
            self._published[name] = max(published, self._published.get(name, 0))
            if _count(ours):
                self._their_applied[name] = ours
        if new:
            log.info("bridge %s shares this broker: replicating with it", name)
            self._follow_schedules()
            if not self._met:
                self._met = True
                try:
                    self.store.set_meta(META_MET, name)
                except StoreError as exc:
                    log.warning("cannot record that bridge %s shares the broker: %s", name, exc)
            if self._online.get(name):  # send it what it may not have (all if it never said)
                self._cursor = min(self._cursor, ours if _count(ours) else 0)
                self.pump()
            self._decide()
            for hook in self.on_bridges:
                hook()

    def _on_availability(self, message: MqttMessage) -> None:
        name = self.link.topics.node_of(message.topic)
        if name is None or name == self.me:
            return
        online = message.payload == ONLINE.encode()
        with self._lock:
            was = self._online.get(name, False)
            self._online[name] = online
            bridge = name in self._bridges
            replay_from = self._their_applied.get(name, 0)
        if online and not was and bridge:
            # It was away (or we were): send it what it may have missed, from what it said
            # it applied (the whole window if it never said).
            log.info("bridge %s is online: replaying the outbox after seq %d", name, replay_from)
            self._cursor = min(self._cursor, replay_from)
            self.pump()
        if bridge and online != was:
            self._decide()

    def _on_schedule(self, message: MqttMessage) -> None:
        open_id = self.link.topics.room_of(message.topic)
        doc = _json(message.payload) if message.payload else None
        if open_id is None or not isinstance(doc, dict):
            return
        version, bridge = doc.get("version"), doc.get("bridge")
        if not _count(version) or not isinstance(bridge, str):
            return
        self._versions[open_id] = max(version, self._versions.get(open_id, 0))
        # The newest schedule names the publisher; at equal versions the smaller name, so
        # every bridge reads the same answer from the same messages.
        if self._newest is None or (version, _inverse(bridge)) > (self._newest[0],
                                                                 _inverse(self._newest[1])):
            before = self._newest[1] if self._newest else None
            self._newest = (version, bridge)
            if bridge != before:
                self._decide()
        if bridge != self.me and not message.retain and self._active:
            self._reassert(bridge, open_id)

    def _reassert(self, bridge: str, open_id: str) -> None:
        """Another bridge wrote a room while we publish (it started before it knew of us): say
        ours again, above its version, so agents keep the current schedule. Once for a run of
        such messages (each republish covers every room), after the ones queued behind."""
        if self._reassert_queued:
            return
        self._reassert_queued = True
        log.info("bridge %s wrote room %s while this bridge publishes: republishing",
                 bridge, open_id)

        def republish() -> None:
            self._reassert_queued = False
            if self._active:
                floor = dict(self._versions)
                for hook in self.on_role:
                    hook(floor)
        self.link.call_soon(republish)

    def _on_events(self, message: MqttMessage) -> None:
        origin = self._name(message.topic, "/events")
        if origin is None or origin == self.me:
            return
        doc = _json(message.payload) if len(message.payload) <= MAX_EVENT_BYTES else None
        seq = doc.get("seq") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not _count(seq) or doc.get("origin") != origin:
            log.warning("bridge %s: replicated event ignored (not the documented object)",
                        origin)
            self.rejected += 1
            return
        with self._lock:  # its progress may lag by PROGRESS_SECONDS: the events say more
            self._published[origin] = max(seq, self._published.get(origin, 0))
        self._pending.append((origin, seq, doc.get("event")))
        if not self._drain_queued:  # messages already queued behind us join this batch
            self._drain_queued = True
            self.link.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_queued = False
        pending, self._pending = self._pending, []
        events, seqs = [], []
        for origin, seq, raw in pending:
            try:
                events.append(event_from_json(raw))
            except EventError as exc:
                log.warning("bridge %s: replicated event %d refused: %s", origin, seq, exc)
                self.rejected += 1
                continue
            seqs.append((origin, seq))
        if not events:
            return
        try:
            results = self.store.apply_many(events, self.clock.now())
        except StoreError as exc:
            # Not recorded as applied: the origin replays it when we come back (or re-sync).
            log.error("cannot apply %d replicated event(s): %s", len(events), exc)
            return
        changed: set[str] = set()
        for result in results:
            changed |= result.changed
        with self._lock:
            for origin, seq in seqs:
                self._applied[origin] = max(seq, self._applied.get(origin, 0))
        self.applied_events += len(events)
        if changed:
            self.node.notify(changed)
        self._publish_progress()

    # -- who publishes ------------------------------------------------------------------------

    def _decide(self) -> None:
        with self._lock:
            online = {b for b in self._bridges if self._online.get(b)}
        if self.link.connected:
            online.add(self.me)
        newest = self._newest[1] if self._newest else None
        chosen = newest if newest in online else min(online, default=None)
        if chosen != self._publisher:
            log.info("publisher of the room topics: %s%s", chosen or "none",
                     " (this bridge)" if chosen == self.me else "")
        self._publisher = chosen
        now = self.is_publisher()
        if now == self._active:
            return
        self._active = now
        floor = dict(self._versions) if now else None
        if now:
            self.takeovers += 1
        for hook in self.on_role:
            hook(floor)


def _inverse(name: str) -> tuple[int, ...]:
    """A key that orders names backwards (the smaller name sorts last)."""
    return (*(-ord(c) for c in name), 1)


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _load_applied(raw: str | None) -> dict[str, int]:
    doc = _json(raw.encode()) if raw else None
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and _count(v)}
