"""The node's loop: schedule + clock -> occupancy -> views -> devices, and the status snapshot.

The loop sleeps until the next state change of any room (a meeting's start, a threshold, a link
turning stale), capped at :data:`MAX_SLEEP` so a wall-clock step is noticed, and wakes at once
when intake reports changed rooms. It never does device I/O itself: ``Device.show`` only hands
the newest view to the device's own worker.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from display.clock import Clock
from display.config import Config, DetailsConfig, DeviceConfig, RoomConfig
from display.details import StoredDetails, decode_room_meta, room_meta_key, shown_details
from display.devices.base import Device, DeviceFactory
from display.files import atomic_write
from display.freshness import Freshness
from display.headline import headline, headline_words
from display.model import Booking, BookingDetails, CheckinView, Occupancy, RoomView, State
from display.occupancy import Thresholds, next_change, occupancy
from display.store import ScheduleStore
from display.unchanged import Unchanged

log = logging.getLogger(__name__)

# Seconds the loop sleeps at most: bounds how late a wall-clock step is noticed, and keeps the
# status file's heartbeat (its mtime, on a tmpfs) fresh (``status`` trusts it for 30 s).
MAX_SLEEP = 10.0
CLOCK_STEP = 5.0  # seconds of disagreement between wall and monotonic time that count as a step
REDRAW_EVERY = timedelta(minutes=10)  # so a sign's timeline and "as of" keep moving
STATUS_EVERY = timedelta(seconds=MAX_SLEEP)  # mtime heartbeat of the status file when idle
PRUNE_EVERY = 3600.0  # seconds of monotonic time between prunes of the store
#: After a wall-clock step the store is not pruned for this long (monotonic seconds): which of
#: the two readings was right is not known yet (the store's own prune clock bounds it anyway).
PRUNE_HOLD_AFTER_STEP = 3600.0
# A status document this long (about 2,000 rooms) is rewritten at most every STATUS_COALESCE
# seconds: a burst of events is one write, still within a second of the first change.
LARGE_STATUS = 1_000_000
STATUS_COALESCE = 0.5
#: And a change to a large document waits this long (seconds) before it is written: writing
#: holds the interpreter for milliseconds, which the change's own MQTT messages and device
#: updates, made in the same pass, must not wait for.
STATUS_SETTLE = 0.1
LOOKBACK = timedelta(days=1)  # bookings that ended before this are not read
#: A pass that shows more rooms anew than this logs one line counting them by state instead of
#: a line a room (the first pass of 20,000 rooms, a reload, the node turning stale).
LOG_ROOMS = 10


def status_path(config: Config) -> Path:
    """Where ``room-display status`` looks: ``state_dir/status.json``, a symbolic link into
    :func:`runtime_dir` made once at start (so the SD card sees no status writes)."""
    return config.node.state_dir / "status.json"


def runtime_dir() -> Path:
    """A RAM-backed directory for files that change while the node runs.

    systemd's ``RuntimeDirectory=`` (``$RUNTIME_DIRECTORY``, ``/run/room-display``), else
    ``$XDG_RUNTIME_DIR/room-display``, else ``/dev/shm/room-display-UID``; the system temp dir
    when none of those exists.
    """
    systemd = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "room-display"
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    return base / f"room-display-{os.getuid()}"


def runtime_status_path(config: Config) -> Path:
    """The status file itself; named after the state directory so nodes on one host differ."""
    key = hashlib.sha256(str(config.node.state_dir.resolve()).encode()).hexdigest()[:12]
    return runtime_dir() / f"status-{key}.json"


def _content(name: str, occ: Occupancy, stale: bool,
             closed_until: datetime | None = None,
             details: Mapping[str, BookingDetails] | None = None) -> tuple[Any, ...]:
    """What a view shows, minus the instants that move every second."""
    return (name, occ.state, stale, occ.since, occ.until, occ.current, occ.next, occ.today,
            closed_until, tuple(sorted((details or {}).items())))


ViewListener = Callable[[RoomView], None]
#: ``(room, bookings, now) -> (check-in view, when it changes next)`` (:mod:`display.checkin`).
CheckinSource = Callable[[RoomConfig, list[Booking], datetime],
                         tuple[CheckinView | None, datetime | None]]
ScheduleListener = Callable[[list[str]], None]
StatusSource = Callable[[], Any]


class Node:
    """One node's rooms and devices; :meth:`run` is its loop.

    What else it feeds is wired explicitly, at construction or with the ``add_*`` methods (the
    MQTT bridge and the web page are made after the node, with the node): *view listeners* get
    every room view that changed, *schedule listeners* the rooms whose bookings were re-read,
    and *status sources* add a member to ``status``'s ``node`` object. Intake reaches the node
    only through :class:`~display.intake.node_input.NodeInput` (:meth:`notify`,
    :meth:`set_link`), which the node satisfies.
    """

    def __init__(self, config: Config, store: ScheduleStore, clock: Clock,
                 make_device: DeviceFactory, freshness: Freshness | None = None, *,
                 listeners: Iterable[ViewListener] = (),
                 schedule_listeners: Iterable[ScheduleListener] = (),
                 status_sources: Mapping[str, StatusSource] | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._make_device = make_device
        self.freshness = freshness or Freshness(
            timedelta(minutes=config.occupancy.stale_after_minutes))
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._dirty_rooms: set[str] = set()
        self._bookings: dict[str, list[Booking]] = {}
        self._details: dict[str, Mapping[str, StoredDetails]] = {}  # room -> key -> row
        self._published: dict[str, tuple[str | None, str | None]] = {}  # room -> (name, path)
        self._views: dict[str, RoomView] = {}
        # Per room, what its devices were last given: a view is shown again only when its
        # content changed, or every REDRAW_EVERY (a device that missed one catches up).
        self._shown: dict[str, Unchanged[tuple[Any, ...]]] = {}
        self._devices: dict[str, tuple[str, Device]] = {}  # device id -> (room, device)
        self._status_written: datetime | None = None
        self._status_written_mono: float | None = None
        self._status_owed = False  # a change waits for STATUS_COALESCE (a large document)
        self._status_owed_at: float | None = None  # monotonic: when a change was first owed
        # The rooms' JSON in configuration order, as last written, and the rooms recomputed
        # since: a write replaces those and joins the list (not every room made again). The
        # document itself is not kept (at 20,000 rooms it is 10 MB): what it held is known from
        # the node member and whether any room's JSON differed from the list's.
        self._status_texts: list[bytes] | None = None
        self._status_texts_epoch = -1
        self._texts_dirty: set[str] = set()
        self._status_node_text: bytes | None = None
        self._status_size = 0  # bytes of the document last written (0: none yet)
        self._last_prune: float | None = None  # monotonic
        self._prune_held: str | None = None  # why the last due prune was not done (logged once)
        self._last_step: tuple[float, float, datetime] | None = None  # (mono, seconds, wall)
        self._pending_config: Config | None = None
        self._last_clocks: tuple[datetime, float] | None = None
        self.clock_steps = 0
        # Replaced whole, never mutated, so the loop iterates them without a lock.
        self._status_sources: dict[str, StatusSource] = dict(status_sources or {})
        self._listeners: tuple[ViewListener, ...] = tuple(listeners)
        # Called on the loop's thread with the rooms whose bookings were re-read from the store
        # (changed by intake, or read for the first time): the MQTT bridge republishes their
        # schedules, which may change without changing what a panel shows (a booking next week).
        self._schedule_listeners: tuple[ScheduleListener, ...] = tuple(schedule_listeners)
        self._status_dirty = False
        self._checkin: CheckinSource | None = None
        #: ``(room, "in" | "end")`` for a press of a panel's button (on the device's thread).
        self.on_press: Callable[[str, str], None] | None = None
        self._checkin_wake: dict[str, datetime] = {}
        # The incremental loop: a heap of (instant, room) next changes; an entry counts only
        # while it is the room's current one in ``_due`` (pushing a new one supersedes it).
        self._queue: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}
        self._recompute_all = True
        self._last_now: datetime | None = None
        self._last_stale: bool | None = None
        self._room_index: dict[str, int] = {}
        self._thresholds = Thresholds()
        # Per room, its status entry without devices as UTF-8 JSON (bytes: half the memory of a
        # str holding CJK names), made when its view changed: writing the status document joins
        # them instead of formatting every room.
        # Any thread may fill it (``status`` is called by the web page's threads): an entry
        # counts only while its (epoch, generation) is current; the loop moves a room's
        # generation when it recomputes the room, and the epoch at a reload.
        self._room_docs: dict[str, tuple[int, int, bytes]] = {}
        self._doc_gen: dict[str, int] = {}
        self._docs_epoch = 0
        # Rooms recomputed, in order, for the web page's hub (:meth:`entry_changes`).
        self._entry_log: list[str] = []
        self._entry_log_base = 0
        self._index_config(config)
        for room, dev in config.devices():
            self._add_device(room, dev)

    def _index_config(self, config: Config) -> None:
        self._docs_epoch += 1  # a name, the zone or the rooms changed
        self._room_docs.clear()
        self._room_index = {room.open_id: i for i, room in enumerate(config.rooms)}
        self._thresholds = Thresholds.from_minutes(config.occupancy.soon_minutes,
                                                   config.occupancy.ending_minutes)

    def _add_device(self, room: RoomConfig, dev: DeviceConfig) -> None:
        device = self._make_device(dev, self.clock)
        device.on_change = self._device_changed  # rewrite status when health changes
        device.on_press = lambda action, room_id=room.open_id: self._pressed(room_id, action)
        self._devices[dev.id] = (room.open_id, device)

    def _pressed(self, room_id: str, action: str) -> None:
        on_press = self.on_press
        if on_press is None:
            log.info("room %s: a button press, but check-in is not set up on this node", room_id)
            return
        on_press(room_id, action)

    def _device_changed(self) -> None:
        self.status_changed()

    def status_changed(self) -> None:
        """Something the status document shows changed (a link, a count, a device's health):
        the loop rewrites it at once, however many such calls arrive before it runs."""
        with self._lock:
            self._status_dirty = True
        self._wake.set()

    # -- wiring (any thread) ------------------------------------------------------------------

    def add_listener(self, listener: ViewListener) -> None:
        """Call ``listener`` (on the loop's thread) with every room view that changed."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: ViewListener) -> None:
        """Stop calling ``listener``; a listener not added is ignored."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def add_schedule_listener(self, listener: ScheduleListener) -> None:
        """Call ``listener`` (on the loop's thread) with the rooms whose bookings were re-read."""
        with self._lock:
            self._schedule_listeners = (*self._schedule_listeners, listener)

    def set_checkin(self, source: CheckinSource) -> None:
        """Ask ``source`` (on the loop's thread) what each room's panels show about check-in."""
        with self._lock:
            self._checkin = source
            self._status_dirty = True
        self._wake.set()

    def add_status_source(self, name: str, source: StatusSource) -> None:
        """Show ``source()`` as ``node.<name>`` in the status document."""
        with self._lock:
            self._status_sources = {**self._status_sources, name: source}

    # -- inputs (any thread) ------------------------------------------------------------------

    def notify(self, rooms: Iterable[str]) -> None:
        """Intake committed changes for ``rooms``: re-read them and redraw now."""
        with self._lock:
            self._dirty_rooms.update(rooms)
            self._status_dirty = True  # a booking next week changes no view, but `next` may
        self._wake.set()

    def set_link(self, name: str, up: bool, error: str | None = None) -> None:
        """A link (``feishu``, ``broker``, ``bridge``) went up or down."""
        if self.freshness.set(name, up, self.clock.now(), error):
            log.info("link %s %s%s", name, "up" if up else "down", f": {error}" if error else "")
            self.status_changed()

    def wake(self) -> None:
        """Run the loop now: something it reads changed (a link's freshness, a re-sync)."""
        self.status_changed()

    def reconfigure(self, config: Config) -> None:
        """Switch to ``config`` at the start of the next tick (on the loop's own thread)."""
        with self._lock:
            self._pending_config = config
            self._status_dirty = True  # a removed room changes no other room's view
        self._wake.set()

    def _apply_config(self, new: Config) -> None:
        """Touch only what changed: unchanged devices keep running and are not redrawn."""
        old = self.config
        old_devices = {d.id: (room.open_id, d) for room, d in old.devices()}
        new_devices = {d.id: (room, d) for room, d in new.devices()}
        for device_id, (_room_id, device) in list(self._devices.items()):
            entry = new_devices.get(device_id)
            if entry is None or (entry[0].open_id, entry[1]) != old_devices[device_id]:
                log.info("device %s removed or changed: releasing it", device_id)
                device.close()
                del self._devices[device_id]
        added = []
        for device_id, (room, dev) in new_devices.items():
            if device_id not in self._devices:
                self._add_device(room, dev)
                added.append(room.open_id)
        kept_rooms = {r.open_id for r in new.rooms}
        for room_id in list(self._views):
            if room_id not in kept_rooms:
                del self._views[room_id]
                self._shown.pop(room_id, None)
                self._bookings.pop(room_id, None)
                self._due.pop(room_id, None)
        if (old.occupancy, old.node) != (new.occupancy, new.node):
            self._shown.clear()  # thresholds, zone or language changed: every view may differ
            self.freshness.stale_after = timedelta(minutes=new.occupancy.stale_after_minutes)
        for room_id in added:  # a new device must be shown its room even if nothing changed
            self._shown.pop(room_id, None)
        self.config = new
        self._index_config(new)
        self._recompute_all = True
        with self._lock:  # the hub compares every room again
            self._entry_log_base += len(self._entry_log) + 1
            self._entry_log.clear()
        log.info("configuration reloaded: %d room(s), %d device(s)", len(new.rooms),
                 len(self._devices))

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Update rooms and devices until ``stop`` is set."""
        while not stop.is_set():
            timeout = self.tick()
            if on_tick is not None:
                on_tick()
            self._wake.wait(timeout)
            self._wake.clear()

    def tick(self) -> float:
        """One pass: refresh changed rooms, update views and devices; returns seconds to sleep.

        Only the rooms that need it are recomputed: those whose bookings were re-read, and those
        whose next change (a state edge, a booking starting or ending, midnight, a quiet-hours
        edge, the periodic redraw) is due, taken from a priority queue. Every room is recomputed
        after a reload, a clock step (or the clock going back) and when the node turns stale or
        fresh, since those change every view.
        """
        with self._lock:
            dirty, self._dirty_rooms = self._dirty_rooms, set()
            pending, self._pending_config = self._pending_config, None
            status_dirty, self._status_dirty = self._status_dirty, False
        if pending is not None:
            self._apply_config(pending)
        now = self.clock.now()
        self._notice_clock_step(now)
        if self._last_now is not None and now < self._last_now:
            self._recompute_all = True  # a small step back: due instants may have passed
        self._last_now = now
        stale = self.freshness.stale(now)
        if stale != self._last_stale:
            self._last_stale = stale
            self._recompute_all = True
        index = self._room_index
        rooms = self.config.rooms
        if self._recompute_all:
            dirty = dirty | {r.open_id for r in rooms if r.open_id not in self._bookings}
        reread = sorted((room_id for room_id in dirty if room_id in index), key=index.__getitem__)
        if reread:
            self._reread([rooms[index[room_id]] for room_id in reread], now)
        if reread:
            for schedule_listener in self._schedule_listeners:
                schedule_listener(reread)
        if self._recompute_all:
            self._recompute_all = False
            todo: list[RoomConfig] = list(rooms)
        else:
            due = set(reread)
            queue = self._queue
            while queue and queue[0][0] <= now:
                at, room_id = heapq.heappop(queue)
                if self._due.get(room_id) == at:  # else superseded by a later push
                    due.add(room_id)
            todo = [rooms[i] for i in sorted(index[r] for r in due if r in index)]
        # A recomputed room's entry may change without its view (its until words at midnight).
        changed = bool(todo)
        shown: list[tuple[RoomConfig, str, State, bool]] = []
        for room in todo:
            self._update_room(room, now, stale, shown)
            self._schedule(room, now)
        _log_shown(shown)
        hold = 0.0
        if (self._status_owed or changed or status_dirty or self._status_written is None
                or now - self._status_written >= STATUS_EVERY):
            hold = self._status_hold(self._status_owed or changed or status_dirty)
            self._status_owed = hold > 0
            if not self._status_owed:
                self._status_owed_at = None
                self.write_status(now)
        self._maybe_prune(now)
        wake_at = [t for t in (self.freshness.next_change(now), self._next_due()) if t is not None]
        seconds = (min(wake_at) - self.clock.now()).total_seconds() if wake_at else MAX_SLEEP
        if self._status_owed:
            seconds = min(seconds, hold)
        return max(0.0, min(MAX_SLEEP, seconds))

    def _status_hold(self, change: bool) -> float:
        """Seconds a status write must still wait (0: write now); ``change``: what it shows may
        have changed (else the idle heartbeat, held only by the coalescing)."""
        if self._status_written_mono is None or self._status_size < LARGE_STATUS:
            return 0.0
        mono = self.clock.monotonic()
        if not change:
            return max(0.0, self._status_written_mono + STATUS_COALESCE - mono)
        if self._status_owed_at is None:
            self._status_owed_at = mono
        return max(0.0, self._status_written_mono + STATUS_COALESCE - mono,
                   self._status_owed_at + STATUS_SETTLE - mono)

    def _schedule(self, room: RoomConfig, now: datetime) -> None:
        """Queue the next instant ``room``'s view may change (or must be shown again)."""
        room_id = room.open_id
        times = [next_change(self._bookings[room_id], now, self._thresholds,
                             self.config.node.tz),
                 self.config.hours(room).next_change(now, self.config.node.tz),
                 self._checkin_wake.get(room_id)]  # a check-in release due
        shown = self._shown.get(room_id)
        if shown is not None and shown.recorded_at is not None:
            redraw = shown.recorded_at + REDRAW_EVERY
            if redraw > now:  # a closed sign is not redrawn: its old record stays behind
                times.append(redraw)
        at = min((t for t in times if t is not None), default=None)
        if at is None:
            self._due.pop(room_id, None)
            return
        self._due[room_id] = at
        heapq.heappush(self._queue, (at, room_id))
        if len(self._queue) > 4 * len(self._due) + 64:  # superseded entries: compact now and then
            self._queue = [(t, r) for t, r in self._queue if self._due.get(r) == t]
            heapq.heapify(self._queue)

    def _next_due(self) -> datetime | None:
        """The earliest queued instant still current (dropping superseded ones on the way)."""
        queue = self._queue
        while queue and self._due.get(queue[0][1]) != queue[0][0]:
            heapq.heappop(queue)
        return queue[0][0] if queue else None

    def _notice_clock_step(self, now: datetime) -> None:
        """Log when the wall clock jumped (NTP's first sync on a Pi without RTC, a manual set).

        Every room's bookings are read again and every room recomputed from ``now`` at the next
        pass (what was read under the old clock's window may miss a meeting now in progress), and
        sleeps are capped; pruning waits (:meth:`_maybe_prune`).
        """
        mono = self.clock.monotonic()
        if self._last_clocks is not None:
            wall_delta = (now - self._last_clocks[0]).total_seconds()
            step = wall_delta - (mono - self._last_clocks[1])
            if abs(step) > CLOCK_STEP:
                self.clock_steps += 1
                self._last_step = (mono, step, now)
                log.warning("wall clock stepped %+.0f s; recomputing every room, not pruning "
                            "the store for %.0f min", step, PRUNE_HOLD_AFTER_STEP / 60)
                self._shown.clear()
                self._bookings.clear()
                self._status_dirty = True
                self._recompute_all = True
        self._last_clocks = (now, mono)

    def clock_step(self) -> dict[str, Any] | None:
        """``node.clock_step`` in ``status``: the latest wall-clock step this run, or None."""
        if self._last_step is None:
            return None
        mono, seconds, at = self._last_step
        held = self.clock.monotonic() - mono < PRUNE_HOLD_AFTER_STEP
        return {"seconds": round(seconds, 1), "at": at.isoformat(), "steps": self.clock_steps,
                "pruning_held": held}

    def _maybe_prune(self, now: datetime) -> None:
        """Prune the store every :data:`PRUNE_EVERY` of monotonic time, unless the wall clock
        is not synchronised or stepped within :data:`PRUNE_HOLD_AFTER_STEP` (one log line)."""
        mono = self.clock.monotonic()
        if self._last_prune is not None and mono - self._last_prune < PRUNE_EVERY:
            return
        held = None
        if not self.freshness.clock_ok():
            held = "the wall clock is not synchronised"
        elif self._last_step is not None and mono - self._last_step[0] < PRUNE_HOLD_AFTER_STEP:
            held = "the wall clock stepped"
        if held is not None:
            if held != self._prune_held:
                log.warning("not pruning the schedule store: %s", held)
            self._prune_held = held
            return
        self._prune_held = None
        elapsed = 0.0 if self._last_prune is None else mono - self._last_prune
        self._last_prune = mono
        self.store.prune(now, elapsed)

    def room_name(self, room: RoomConfig) -> str:
        """The name signs show: an agent's own ``name``, else its bridge's; on a bridge with
        ``[feishu] room_names``, Feishu's directory's, else the config's."""
        published, _ = self._published.get(room.open_id, (None, None))
        if published is None:
            return room.name
        if self.config.role == "agent":
            return room.name if room.named else published
        feishu = self.config.feishu
        return published if feishu is not None and feishu.room_names else room.name

    def room_path(self, room: RoomConfig) -> str | None:
        """Where the room is in Feishu's directory ("Building / Floor"), when known."""
        _, path = self._published.get(room.open_id, (None, None))
        feishu = self.config.feishu
        if self.config.role != "agent" and not (feishu is not None and feishu.room_names):
            return None
        return path

    def _policy(self, room: RoomConfig) -> DetailsConfig | None:
        """The room's ``[details]`` where Feishu comes in; ``None`` on an agent (it shows what
        its bridge sent, which the bridge's own config already limited)."""
        return None if self.config.role == "agent" else self.config.room_details(room)

    def _reread(self, rooms: list[RoomConfig], now: datetime) -> None:
        """Read the bookings, details and published names of ``rooms`` from the store: one
        query per 500 rooms, not per room (the first pass reads every room)."""
        ids = [room.open_id for room in rooms]
        bookings = self.store.bookings_many(ids, ending_after=now - LOOKBACK)
        self._bookings.update(bookings)
        reading = {room.open_id for room in rooms if self._reads_details(room)}
        stored = self.store.details(b.key for room_id in reading for b in bookings[room_id])
        for room_id in ids:
            found = ({b.key: stored[b.key] for b in bookings[room_id] if b.key in stored}
                     if room_id in reading else None)
            self._details[room_id] = found or _NONE  # one shared empty mapping, not 20,000
        metas = self.store.meta_many(room_meta_key(room_id) for room_id in ids)
        for room_id in ids:
            self._published[room_id] = decode_room_meta(metas.get(room_meta_key(room_id)))

    def _reads_details(self, room: RoomConfig) -> bool:
        policy = self._policy(room)
        return policy is None or policy.any  # off (the default): nothing read, nothing shown

    def _update_room(self, room: RoomConfig, now: datetime, stale: bool,
                     shown_log: list[tuple[RoomConfig, str, State, bool]]) -> RoomView | None:
        """Recompute one room; show it on its devices when what they display changed (and add
        it to ``shown_log`` when that changed)."""
        occ = occupancy(self._bookings[room.open_id], now, self._thresholds, self.config.node.tz)
        closed_until = self.config.hours(room).closed_until(
            now, self.config.node.tz, in_use=occ.state is not State.FREE)
        shown_bookings = (*((occ.current,) if occ.current else ()), *occ.next)
        # One shared empty mapping for the rooms that show none (20,000 empty dicts otherwise).
        details = shown_details(shown_bookings, self._details.get(room.open_id, _NONE),
                                self._policy(room)) or _NONE
        name, path = self.room_name(room), self.room_path(room)
        checkin, wake = (self._checkin(room, self._bookings[room.open_id], now)
                         if self._checkin is not None else (None, None))
        if wake is None:
            self._checkin_wake.pop(room.open_id, None)
        else:
            self._checkin_wake[room.open_id] = wake
        content = (*_content(name, occ, stale, closed_until, details), path, checkin)
        shown = self._shown.get(room.open_id)
        if shown is None:
            shown = self._shown[room.open_id] = Unchanged(REDRAW_EVERY)
        as_of = self.freshness.as_of(now) if stale else now
        # A closed sign shows no clock, so it is not redrawn every REDRAW_EVERY (quiet hours).
        # The status entry is made again even when the content is the same: its words read
        # "tomorrow" until midnight and "today" after it.
        self._doc_gen[room.open_id] = self._doc_gen.get(room.open_id, 0) + 1
        self._texts_dirty.add(room.open_id)
        self._log_entry(room.open_id)
        if shown.same(content, now) or (closed_until is not None and shown.last == content):
            old = self._views[room.open_id]
            self._views[room.open_id] = RoomView(
                open_id=old.open_id, name=old.name, occupancy=occ, stale=stale, as_of=old.as_of,
                timezone=old.timezone, language=old.language, closed_until=closed_until,
                details=old.details, path=old.path,
                checkin=old.checkin)
            return None
        view = RoomView(open_id=room.open_id, name=name, occupancy=occ, stale=stale,
                        as_of=as_of, timezone=self.config.node.timezone,
                        language=self.config.node.language, closed_until=closed_until,
                        details=details, path=path, checkin=checkin)
        self._views[room.open_id] = view
        if shown.last != content:
            shown_log.append((room, name, occ.state, stale))
        shown.record(content, now)
        for room_id, device in self._devices.values():
            if room_id == room.open_id:
                device.show(view)
        for listener in self._listeners:
            listener(view)
        return view

    # -- status -------------------------------------------------------------------------------

    def views(self) -> dict[str, RoomView]:
        return dict(self._views)

    def view(self, open_id: str) -> RoomView | None:
        """The room's view as last computed (None before its first pass or when not ours)."""
        return self._views.get(open_id)

    def devices(self) -> Mapping[str, tuple[str, Device]]:
        return dict(self._devices)

    def status(self, now: datetime | None = None, *,
               select: Callable[[RoomConfig], bool] | None = None) -> dict[str, Any]:
        """The ``status --json`` document (the contract in the README, "Command line");
        with ``select``, only the rooms it accepts."""
        doc = self.status_head(now)
        # Parsed from the cached JSON: a caller may change what it gets (``redact`` does).
        doc["rooms"] = json.loads(
            b"[" + b",".join(text for _, text in self.room_entries_json(select)) + b"]")
        return doc

    def status_head(self, now: datetime | None = None) -> dict[str, Any]:
        """:meth:`status` without its ``rooms`` member (``generated_at`` and ``node``)."""
        return self._node_status(now or self.clock.now())

    def room_entries_json(self, select: Callable[[RoomConfig], bool] | None = None
                          ) -> list[tuple[str, bytes]]:
        """The ``rooms`` of :meth:`status` as (open id, the room's compact UTF-8 JSON), in
        configuration order (only those ``select`` accepts): what a caller that writes JSON out
        joins, without parsing and encoding every room again."""
        rooms = [r for r in self.config.rooms if select is None or select(r)]
        return [(room.open_id, text)
                for room, text in zip(rooms, self._room_entries(rooms), strict=True)]

    def _node_status(self, now: datetime) -> dict[str, Any]:
        """The document without its rooms."""
        tz = self.config.node.tz
        doc: dict[str, Any] = {
            "generated_at": now.astimezone(tz).isoformat(),
            "node": {"name": self.config.node.name, "role": self.config.role, "pid": os.getpid(),
                     "links": self.freshness.links(), "clock_synced": self.freshness.clock_ok(),
                     "clock_step": self.clock_step()},
        }
        for key, fn in self._status_sources.items():
            doc["node"][key] = fn()
        doc["node"] = local_times(doc["node"], tz)
        return doc

    def _room_entries(self, rooms: list[RoomConfig] | None = None) -> list[bytes]:
        """Every room's status entry as JSON, in configuration order.

        Only the JSON is kept (a fraction of the memory of the objects), made again when the room
        is recomputed; a room with devices gets its devices' health added each time (it changes
        without the view)."""
        tz = self.config.node.tz
        by_room: dict[str, list[Device]] = {}
        for room_id, device in list(self._devices.values()):
            by_room.setdefault(room_id, []).append(device)
        out = []
        for room in self.config.rooms if rooms is None else rooms:
            text = self._cached_entry(room)
            devices = by_room.get(room.open_id)
            if devices:
                entry = json.loads(text)
                entry["devices"] = local_times([d.health().to_json() for d in devices], tz)
                text = _dumps(entry).encode()
            out.append(text)
        return out

    def _room_texts(self) -> tuple[list[bytes], bool]:
        """Every room's JSON for the status file, made again only where it changed, and
        whether any differs from what the list held (True when it was made anew)."""
        rooms = self.config.rooms
        texts = self._status_texts
        dirty, self._texts_dirty = self._texts_dirty, set()
        if (texts is None or self._status_texts_epoch != self._docs_epoch
                or len(texts) != len(rooms)):
            self._status_texts_epoch = self._docs_epoch
            texts = self._status_texts = self._room_entries()
            return texts, True
        with_devices = self.rooms_with_devices()
        index = self._room_index
        redo = [rooms[i] for i in sorted(index[r] for r in dirty | with_devices if r in index)]
        changed = False
        for room, text in zip(redo, self._room_entries(redo), strict=True):
            i = index[room.open_id]
            if texts[i] != text:
                texts[i] = text
                changed = True
        return texts, changed

    def _cached_entry(self, room: RoomConfig) -> bytes:
        """``room``'s status entry without its devices, as JSON (made when stale)."""
        # The key is read before the view: an entry made from a view the loop replaces
        # meanwhile is stored under the old key, so it never counts.
        key = (self._docs_epoch, self._doc_gen.get(room.open_id, 0))
        cached = self._room_docs.get(room.open_id)
        if cached is not None and (cached[0], cached[1]) == key:
            return cached[2]
        text = _dumps(room_status(room, self._views.get(room.open_id), [],
                                  self.config.node.tz)).encode()
        self._room_docs[room.open_id] = (*key, text)
        return text

    def _log_entry(self, room_id: str) -> None:
        with self._lock:
            self._entry_log.append(room_id)
            if len(self._entry_log) > 4 * len(self._room_index) + 1024:
                drop = len(self._entry_log) // 2
                del self._entry_log[:drop]
                self._entry_log_base += drop

    def entry_changes(self, cursor: int) -> tuple[int, list[str] | None]:
        """The rooms recomputed since ``cursor`` (0 at first) and the cursor to pass next;
        None instead of rooms when ``cursor`` is older than what is kept (or the rooms were
        reconfigured): compare every room then. A recomputed room's entry may be unchanged."""
        with self._lock:
            end = self._entry_log_base + len(self._entry_log)
            if cursor < self._entry_log_base:
                return end, None
            return end, self._entry_log[cursor - self._entry_log_base:]

    def room_entry(self, open_id: str) -> dict[str, Any] | None:
        """One room of :meth:`status` (devices included), without making the others."""
        index = self._room_index.get(open_id)
        rooms = self.config.rooms
        if index is None or index >= len(rooms) or rooms[index].open_id != open_id:
            return None
        entry: dict[str, Any] = json.loads(self._room_entries([rooms[index]])[0])
        return entry

    def cached_bookings(self, open_id: str) -> list[Booking] | None:
        """The room's bookings as the loop last read them from the store (those that ended
        within :data:`LOOKBACK` included), or None before it read them."""
        return self._bookings.get(open_id)

    def rooms_with_devices(self) -> set[str]:
        """The rooms that have a device here (their health changes without a new view)."""
        return {room_id for room_id, _ in list(self._devices.values())}

    def node_status(self) -> dict[str, Any]:
        """The ``node`` member of :meth:`status`, without making the rooms."""
        node: dict[str, Any] = self._node_status(self.clock.now())["node"]
        return node

    def write_status(self, now: datetime) -> None:
        """Publish the status document for ``room-display status``, writing only on change.

        The file lives on a RAM-backed runtime path (:func:`runtime_status_path`); when nothing
        in it changed, only its mtime moves (the heartbeat ``status`` checks), so an idle node
        writes nothing to its state directory and the SD card under it.
        """
        doc = self._node_status(now)
        generated = doc.pop("generated_at")
        node_text = _dumps(doc["node"]).encode()
        changed = node_text != self._status_node_text or not self._status_size
        texts: list[bytes] | None = None
        if (changed or self._texts_dirty or self._devices
                or self._status_texts_epoch != self._docs_epoch):
            texts, rooms_changed = self._room_texts()
            changed = changed or rooms_changed
        # else the heartbeat of an idle node: no rooms joined again, only the mtime moves
        path = runtime_status_path(self.config)
        try:
            if not changed and path.exists():
                os.utime(path)
            else:
                if texts is None:
                    texts, _ = self._room_texts()
                path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                if path.parent.stat().st_uid != os.getuid():  # /dev/shm is shared by all users
                    raise PermissionError(errno.EPERM, "directory owned by another user")
                body = _document(json.dumps(generated).encode(), node_text, texts)
                atomic_write(path, body)
                self._status_size = len(body)
                del body  # 10 MB at 20,000 rooms: not kept past the write
                self._link_status(path)
            self._status_node_text = node_text
            self._status_written = now
            self._status_written_mono = self.clock.monotonic()
        except OSError as exc:
            self._status_size = 0  # what the file holds is not known: write it whole next time
            log.warning("cannot write %s: %s", path, exc.strerror)

    def _link_status(self, target: Path) -> None:
        """Point ``state_dir/status.json`` at ``target`` unless it already does (once a run)."""
        link = status_path(self.config)
        try:
            if link.is_symlink() and Path(os.readlink(link)) == target:
                return
        except OSError:
            pass
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(".status.json.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)

    def close(self) -> None:
        """Stop every device worker and release its port."""
        for _, device in self._devices.values():
            device.close()


#: No details: shared by every room that has none (read-only, so sharing it is safe).
_NONE: Mapping[str, Any] = MappingProxyType({})


def _log_shown(shown: list[tuple[RoomConfig, str, State, bool]]) -> None:
    """A line a room shown anew in one pass, or one line for them all past :data:`LOG_ROOMS`."""
    if len(shown) <= LOG_ROOMS:
        for room, name, state, stale in shown:
            log.info("room %s (%s): %s%s", name, room.open_id, state.value,
                     " (stale)" if stale else "")
        return
    counts = Counter(state.value for _, _, state, _ in shown)
    stale_rooms = sum(1 for *_, stale in shown if stale)
    log.info("%d rooms shown anew: %s%s", len(shown),
             ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
             f" ({stale_rooms} stale)" if stale_rooms else "")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _document(generated: bytes, node: bytes, rooms: list[bytes]) -> bytes:
    """The status document from its parts (JSON each), joined once: no 10 MB intermediates."""
    parts = [b'{"generated_at":', generated, b',"node":', node, b',"rooms":[']
    for i, room in enumerate(rooms):
        if i:
            parts.append(b",")
        parts.append(room)
    parts.append(b"]}")
    return b"".join(parts)


def room_status(room: RoomConfig, view: RoomView | None, devices: list[dict[str, Any]],
                tz: Any) -> dict[str, Any]:
    """One room of the ``status --json`` document; times in the node's zone."""
    def iso(t: datetime | None) -> str | None:
        return t.astimezone(tz).isoformat() if t else None

    def booking(b: Booking) -> dict[str, Any]:
        doc = b.to_json()
        doc["start"], doc["end"] = iso(b.start), iso(b.end)
        shown = view.detail(b) if view is not None else None
        if shown is not None:  # only what [details] allows: title, organizer, private
            doc.update(shown.to_json())
        return doc

    if view is None:
        return {"open_id": room.open_id, "name": room.name, "state": None, "stale": True,
                "since": None, "until": None, "until_text": None, "changes_at": None,
                "current": None, "next": [], "closed": False, "opens_at": None,
                "devices": local_times(devices, tz)}
    occ = view.occupancy
    head = headline(occ)  # "until" is what a person reads; the next state change is changes_at
    extra = {"path": view.path} if view.path else {}
    return {
        "open_id": room.open_id, "name": view.name, **extra, "state": occ.state.value,
        "stale": view.stale, "since": iso(occ.since), "until": iso(head.until),
        "until_text": headline_words(occ, tz, view.language), "changes_at": iso(occ.until),
        "as_of": iso(view.as_of),
        "current": booking(occ.current) if occ.current else None,
        "next": [booking(b) for b in occ.next],
        "closed": view.closed, "opens_at": iso(view.closed_until),
        **({"checkin": {"state": view.checkin.state.value,
                        "release_at": iso(view.checkin.release_at),
                        "free_until": iso(view.checkin.free_until)}} if view.checkin else {}),
        "devices": local_times(devices, tz),
    }


#: Keys whose values are ISO times in the status document. Links, devices and other nodes keep
#: their clocks in UTC; the document shows every time in the node's zone, as the rooms' are.
TIME_KEYS = frozenset({"since", "vouched", "last_update", "last_seen", "received_at", "at",
                       "next_at"})


def local_times(value: Any, tz: Any) -> Any:
    """``value`` (status JSON) with every ISO time under :data:`TIME_KEYS` moved to ``tz``."""
    if isinstance(value, dict):
        return {k: _local(v, tz) if k in TIME_KEYS and isinstance(v, str)
                else local_times(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [local_times(v, tz) for v in value]
    return value


def _local(text: str, tz: Any) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:  # not a time after all (another node's odd payload): shown as sent
        return text
    return when.astimezone(tz).isoformat() if when.tzinfo is not None else text
