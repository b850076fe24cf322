"""Wiring: build a running node (store, devices, intake links) from a configuration.

``run`` and ``demo`` both go through :class:`App`, so the demo exercises the same code paths as a
Pi by a door. Nothing here imports ``lark_oapi``: the Feishu intake runs in a child process.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from display import memory
from display.checkin.control import ControlServer
from display.checkin.mqtt import CheckinForwarder, CheckinSubscriber
from display.checkin.service import Action, CheckinService, Result
from display.clock import Clock, SystemClock
from display.config import Config, load_config
from display.devices.factory import device_factory
from display.errors import ConfigError, StoreError
from display.freshness import Freshness
from display.intake.replay import replay_file
from display.intake.sink import COUNTED, EventSink
from display.intake.supervisor import IntakeSupervisor, ResyncReport
from display.mqtt_roles import MqttServices, make_link
from display.node import Node, runtime_status_path
from display.render.identify import DEFAULT_SECONDS, Identify
from display.store import SERIES_WITHOUT_RESYNC, store_path
from display.storeopen import open_store
from display.systemd import ClockSync, notify
from display.watch import watch_file

if TYPE_CHECKING:
    from display.web.server import WebServer

log = logging.getLogger(__name__)

#: How often a store that cannot be written (disk full) is tried again.
STORE_RETRY_SECONDS = 5.0


def identify_request_path(config: Config) -> Path:
    return config.node.state_dir / "identify-request"


class App:
    """A node and everything it owns; a context manager that releases all of it.

    ``intake_args`` are passed to the Feishu intake child's command line (tests shorten its
    re-sync intervals with them).
    """

    def __init__(self, config: Config, clock: Clock | None = None, *,
                 intake_args: Sequence[str] = ()) -> None:
        self.config = config
        self._stop = threading.Event()
        self.intake_args = tuple(intake_args)
        memory.tune()  # before the first pass: its large blocks are given back as they go
        self.clock = clock or SystemClock()
        # Never fails over what is in the file: a corrupt one is moved aside (see storeopen).
        self.store, self.store_report = open_store(store_path(config))
        self.freshness = Freshness(timedelta(minutes=config.occupancy.stale_after_minutes),
                                   ClockSync(config.node.clock))
        # One broker connection per node, made before the devices: mqtt:TOPIC devices use it.
        self.mqtt_link = make_link(config)
        self.identify = Identify(self.clock)
        self.node = Node(config, self.store, self.clock,
                         device_factory(self.mqtt_link, self.identify),
                         self.freshness, status_sources={"store": self.store_report.to_json})
        self._store_retry: threading.Thread | None = None
        self.store.on_writable = self._store_writable
        if not self.store.probe():  # disk full, read-only: show what is stored, as stale
            self._store_writable(False, self.store.write_error)
        self.mqtt: MqttServices | None = None
        self.intake: IntakeSupervisor | None = None
        self._watcher: threading.Thread | None = None
        self._ready = False
        self._last_status_line = ""
        # The STATUS line's counts, kept up to date from the rooms the node recomputed
        # (Node.entry_changes): a pass costs what changed, not a scan of every room.
        self._status_cursor = 0
        self._room_states: dict[str, tuple[str, bool]] = {}  # open id -> (state, stale)
        self._state_counts: Counter[tuple[str, bool]] = Counter()
        self._state_keys: dict[tuple[str, bool], tuple[str, bool]] = {}
        # (config, organizer shown anywhere, title shown anywhere) for ``node.details``.
        self._details_shown: tuple[Config, bool, bool] | None = None
        self._resync: ResyncReport | None = None
        self.resync_passes = {"ok": 0, "error": 0}  # since start, for /metrics
        self.event_counts = dict.fromkeys(COUNTED, 0)  # Feishu deliveries since start
        self.web: WebServer | None = None
        # Check-in: the node that talks to Feishu decides and releases; an agent forwards.
        self.checkin: CheckinService | None = None
        self.checkin_forwarder: CheckinForwarder | None = None
        if config.feishu is not None:
            try:
                self.checkin = CheckinService(config, self.store, self.clock, self.node.notify)
            except StoreError as exc:  # the node runs on; nothing is released meanwhile
                log.error("check-in is off until the node restarts: %s", exc)
            else:
                self.node.set_checkin(self.checkin.room_checkin)
                self.node.add_status_source("checkin", self.checkin.status)
        self.node.on_press = self._button_pressed
        status_file = runtime_status_path(config)  # the socket sits beside it, in RAM
        self.control = ControlServer(status_file.with_name(f"control-{status_file.stem[7:]}.sock"),
                                     config.node.state_dir, self.press)

    def press(self, room: str, action: Action, source: str = "cli") -> Future[Result]:
        """A check-in or early end for ``room`` (open_id or name), from any source."""
        if self.checkin is not None:
            return self.checkin.press(room, action, source)
        done: Future[Result] = Future()
        target = self.config.room(room) or next(
            (r for r in self.config.rooms if r.name == room), None)
        if target is None:
            done.set_result(Result(False, f"no room {room!r} on this node"))
        elif self.checkin_forwarder is not None:
            return self.checkin_forwarder.press(target.open_id, action)
        else:
            done.set_result(Result(False, "check-in needs [feishu] (a bridge or single box) or "
                                   "[mqtt] (a panel agent sends it to the bridge)"))
        return done

    def _button_pressed(self, room: str, action: str) -> None:
        """A panel's button (on the device's thread): hand it on, log the answer."""
        def answered(future: Future[Result]) -> None:
            result = future.result()
            log.log(logging.INFO if result.ok else logging.WARNING, "button in %s: %s", room,
                    result.message)

        self.press(room, Action(action), "button").add_done_callback(answered)

    def __enter__(self) -> App:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _store_writable(self, ok: bool, error: str | None) -> None:
        """The store stopped (or resumed) taking writes: nothing new can be shown meanwhile, so
        the rooms are stale at once, and the real file is retried until it works."""
        if ok:
            self.node.set_link("store", True)
            return
        self.freshness.set("store", False, self.clock.now() - self.freshness.stale_after,
                           f"cannot write the schedule store: {error}")
        self.node.wake()
        if self._store_retry is not None and self._store_retry.is_alive():
            return

        def retry() -> None:
            while not self._stop.wait(STORE_RETRY_SECONDS):
                if self.store.retry():
                    return

        self._store_retry = threading.Thread(target=retry, name="store-retry", daemon=True)
        self._store_retry.start()

    def replay(self, path: Path) -> None:
        """Apply a JSON-lines file of Feishu envelopes before running (debugging, demos)."""
        sink = EventSink(self.store, self.clock, self.node.notify,
                         rooms=lambda: {room.open_id for room in self.config.rooms})
        replay_file(path, sink)  # logs its own one-line summary

    def start_intake(self) -> None:
        """Start the Feishu intake child when this node is a bridge or single box, and the
        MQTT side (bridge publishing or an agent's schedule intake) when it has ``[mqtt]``,
        and the web page when it has ``[web]`` (started with the node: no second service)."""
        self.start_web()
        self.start_mqtt()
        self.control.start()
        if self.config.feishu is None:
            return
        self.freshness.expect("feishu", self.clock.now())
        self.node.add_status_source("resync", self.resync_status)
        self.node.add_status_source("intake", self.intake_status)
        self.node.add_status_source("details", self.details_status)
        self.intake = IntakeSupervisor(
            self.config.path,
            self.node,
            on_resync=self.resync_done,
            on_events=self.events_counted,
            on_store=self.intake_store,
            child_args=self.intake_args,
        )
        self.intake.start()

    def events_counted(self, counts: dict[str, int]) -> None:
        """The intake child counted these deliveries (on the supervisor's callback thread)."""
        for key, n in counts.items():
            if key in self.event_counts:  # a newer child's key we do not know: not shown
                self.event_counts[key] += n
        self.node.status_changed()  # `status` shows the counts within a second

    def intake_status(self) -> dict[str, object]:
        """``node.intake`` in ``status``: Feishu deliveries since the node started."""
        counts = dict(self.event_counts)
        return {"events": {"received": sum(counts.values()), **counts}}

    def details_status(self) -> dict[str, object]:
        """``node.details`` in ``status``: what ``[details]`` shows, and the intake's lookups
        (kept in the store by the intake child, which makes them) by result."""
        try:
            raw = self.store.meta("details_counts")
            counts = json.loads(raw) if raw else {}
        except (StoreError, ValueError):
            counts = {}
        config = self.config
        shown = self._details_shown
        if shown is None or shown[0] is not config:  # once a configuration, not once a call
            rooms = [config.room_details(room) for room in config.rooms]
            shown = self._details_shown = (config, any(d.organizer for d in rooms),
                                           any(d.title for d in rooms))
        return {"organizer": shown[1], "title": shown[2],
                "counts": counts if isinstance(counts, dict) else {}}

    def intake_store(self, ok: bool, error: str | None) -> None:
        """The intake child's commits failed (its deliveries are not acknowledged) or work
        again: while they fail nothing new can be shown, so the rooms are stale at once."""
        link = self.freshness.links().get("store")
        if ok:
            if link is not None and not link["up"]:
                self.node.set_link("store", True)
            return
        self.freshness.set("store", False, self.clock.now() - self.freshness.stale_after,
                           f"cannot write the schedule store: {error}")
        self.node.wake()

    def resync_done(self, report: ResyncReport) -> None:
        """The intake child finished a re-sync pass (on the supervisor's callback thread).

        A full success vouches for the Feishu data (README: a bridge is stale only when the
        link is down AND no re-sync succeeded for ``stale_after_minutes``).
        """
        self._resync = report
        self.resync_passes["ok" if report.ok else "error"] += 1
        if report.ok:
            self.freshness.vouch("feishu", self.clock.now())
        self.node.wake()  # stale may have ended; status shows the result

    def resync_status(self) -> dict[str, object]:
        """``node.resync`` in ``status``: switched on, and the latest pass (``at`` null: none)."""
        feishu = self.config.feishu
        if feishu is None:
            return {"enabled": False}
        if not feishu.resync_enabled:  # what a sign can and cannot know of recurring series
            return {"enabled": False, "series": SERIES_WITHOUT_RESYNC}
        last = self._resync
        if last is None:
            return {"enabled": True, "ok": None, "at": None, "error": None, "rooms": 0,
                    "changed": 0, "next_at": None}
        return {"enabled": True, **last.to_json(self.config.node.tz)}

    def start_web(self) -> None:
        """Serve the read-only web page (a taken port is one log line; the node runs on)."""
        if self.web is not None or self.config.web is None:
            return
        from display.web.server import WebServer  # imported only where the page is served

        self.web = WebServer(self.config.web, self.node,
                             lambda: {"resync": dict(self.resync_passes),
                                      "events": dict(self.event_counts)})
        self.web.press = self.press
        if not self.web.start():
            self.web = None

    def start_mqtt(self) -> None:
        """Connect to the broker in the background; by role, publish or follow schedules."""
        if self.mqtt is not None or self.config.mqtt is None:
            return
        self.mqtt = MqttServices(self.config, self.node, self.store, self.clock, self.mqtt_link)
        if self.checkin is not None:
            CheckinSubscriber(self.mqtt.link, self.checkin, lambda: self.config).attach()
        elif self.config.role == "agent":
            self.checkin_forwarder = CheckinForwarder(self.mqtt.link, self.clock)
            self.checkin_forwarder.attach()
        peers = self.mqtt.peers
        if peers is not None:
            peers.on_role.append(self._took_over)
            if self.checkin is not None:
                # Several bridges: only the one that publishes releases, so a no-show is not
                # released twice. A bridge that never met another (one bridge a site) releases
                # whatever its broker link does.
                self.checkin.releasing = lambda: peers.is_publisher() or not peers.met_others()
        self.mqtt.start()

    def _took_over(self, floor: dict[str, int] | None) -> None:
        """This bridge became the publisher while other bridges exist: the one before may
        have gone with events no one else got, so re-sync from free/busy (when it is on)."""
        peers = self.mqtt.peers if self.mqtt is not None else None
        if floor is None or peers is None or len(peers.bridges()) < 2 or self.intake is None:
            return
        if self.intake.request_resync("this bridge took over publishing the rooms"):
            log.info("took over publishing: asked the Feishu intake for a full re-sync")

    def reload(self) -> bool:
        """Re-read the config file; apply it if valid and different. Returns True if applied.

        An invalid file is rejected with one log line and the running config stays.
        """
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("config change rejected, still running the previous one: %s", exc)
            return False
        if new == self.config:
            return False
        feishu_changed = new.feishu != self.config.feishu
        web_changed = new.web != self.config.web
        self.config = new
        self.node.reconfigure(new)
        if self.checkin is not None:
            self.checkin.reconfigure(new)
        if self.mqtt is not None:
            self.mqtt.reconfigure(new)
        if feishu_changed and self.intake is not None:
            log.info("[feishu] changed: restarting the Feishu intake")
            self.intake.close()
            self.intake = None
        if feishu_changed:
            self.start_intake()
        if web_changed and self.web is not None:
            log.info("[web] changed: restarting the web page")
            self.web.close()
            self.web = None
        if web_changed:
            self.start_web()
        return True

    def identify_device(self, device_id: str, seconds: float = DEFAULT_SECONDS) -> bool:
        """Show ``device_id``'s test pattern for ``seconds``, then its room again."""
        entry = self.node.devices().get(device_id)
        if entry is None:
            log.warning("identify: no device %r on this node", device_id)
            return False
        device = entry[1]
        self.identify.start(device_id, seconds)
        device.resend()
        timer = threading.Timer(seconds + 0.05, device.resend)
        timer.daemon = True
        timer.start()
        log.info("identify: %s shows its test pattern for %.0f s", device_id, seconds)
        return True

    def store_changed(self) -> None:
        """Another process committed to the store (``send-test-event``): re-read every room."""
        log.info("the schedule store changed outside the node: re-reading every room")
        self.node.notify(room.open_id for room in self.config.rooms)

    def identify_requested(self) -> None:
        """Serve ``room-display identify`` (it writes the device id, then sends SIGUSR1)."""
        try:
            request = json.loads(identify_request_path(self.config).read_text(encoding="utf-8"))
            device_id = str(request["device"])
            seconds = min(300.0, max(0.1, float(request.get("seconds", DEFAULT_SECONDS))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("identify request unreadable: %s", exc)
            return
        self.identify_device(device_id, seconds)

    def watch_config(self) -> None:
        """Reload when the config file changes (``map`` edits, an editor's save).

        inotify (:mod:`display.watch`): the thread sleeps until the config's directory changes.
        """
        self._watcher = watch_file(self.config.path, self.reload, self._stop, "config-watch")

    def run(self, on_tick: Callable[[], None] | None = None) -> None:
        """Run the node's loop until :meth:`stop`."""
        first = [True]

        def tick() -> None:
            if first[0]:  # every room read and shown: what is left now stays
                first[0] = False
                memory.settle()
            self._tell_systemd()
            if on_tick is not None:
                on_tick()

        memory.hold()
        try:
            self.node.run(self._stop, tick)
        finally:
            gc.enable()  # a first pass that failed: the process goes on collecting

    def _tell_systemd(self) -> None:
        """READY after the first pass, a STATUS line when it changes, and a watchdog ping.

        Sent from the loop itself, so a wedged loop stops the pings and systemd restarts us.
        """
        if not self._ready:
            self._ready = True
            notify("READY=1")
        self._count_states()
        counts: Counter[str] = Counter()
        for (state, _), n in self._state_counts.items():
            counts[state] += n
        stale = sum(n for (_, is_stale), n in self._state_counts.items() if is_stale)
        line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "no rooms"
        line += f"; {stale} stale" if stale else ""
        if line != self._last_status_line:
            self._last_status_line = line
            notify(f"STATUS={line}")
        notify("WATCHDOG=1")

    def _count_states(self) -> None:
        """Bring the rooms' (state, stale) counts up to date with the node's views."""
        self._status_cursor, changed = self.node.entry_changes(self._status_cursor)
        if changed is None:  # a reload, or too much changed to know: count every room
            self._room_states = {
                open_id: self._state_keys.setdefault(key, key)
                for open_id, v in self.node.views().items()
                for key in [(v.occupancy.state.value, v.stale)]}
            self._state_counts = Counter(self._room_states.values())
            return
        for open_id in set(changed):
            view = self.node.view(open_id)
            old = self._room_states.pop(open_id, None)
            if old is not None:
                self._state_counts[old] -= 1
            if view is not None:
                key = (view.occupancy.state.value, view.stale)
                # One tuple per (state, stale), shared by the rooms: not one a room.
                new = self._room_states[open_id] = self._state_keys.setdefault(key, key)
                self._state_counts[new] += 1

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.node.wake()

    def close(self) -> None:
        self.stop()
        self.control.close()
        if self.web is not None:
            self.web.close()
        if self.intake is not None:
            self.intake.close()
        self.node.close()
        if self.mqtt is not None:
            self.mqtt.close()
        if self.checkin is not None:
            self.checkin.close()
        self.store.close()
