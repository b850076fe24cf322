"""The check-in service of a node that talks to Feishu (a bridge or a single box).

The node's loop asks :meth:`CheckinService.room_checkin` about each room on every pass: a
booking in progress without a check-in gets its window (from its start, or from when it was
first seen if that was later), and when the window ran out the service releases it (mode
``release``), notes what it would have done (``dry-run``), or leaves it (a recurring series).
:meth:`CheckinService.press` takes a check-in or an early end from any source (the board's button,
MQTT, the web page, ``room-display checkin``). Every Feishu call runs on one worker thread,
through the helper process (:mod:`.releaser`); what happened is in the :class:`~.ledger.Ledger`
before and after, and a released booking is marked in the store, so every panel turns free at
once and no later event or re-sync brings it back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from display.checkin.ledger import OUTCOMES, Ledger, Record, Step
from display.checkin.policy import (
    back_to_back,
    in_progress,
    is_series,
    release_at,
    room_policy,
)
from display.checkin.releaser import Outcome, Releaser, run_helper
from display.clock import Clock, to_epoch_ms
from display.config import CheckinMode, Config, RoomConfig
from display.errors import StoreError
from display.model import Booking, CheckinState, CheckinView
from display.store import ScheduleStore

log = logging.getLogger(__name__)

NOT_CHECK_IN, ENDED_BEFORE_DUE = "NOT_CHECK_IN", "ENDED_BEFORE_DUE"
#: How long ``press`` callers that wait for an early end (the control socket) wait at most.
END_WAIT = 150.0


class Action(StrEnum):
    """What a person asks: check in to the meeting, or end it now. The MQTT payloads."""

    IN = "in"
    END = "end"


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to a press: whether it did what was asked, and a line for a person."""

    ok: bool
    message: str


def _done(result: Result) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_result(result)
    return future


def _hhmm(when: datetime, config: Config) -> str:
    return when.astimezone(config.node.tz).strftime("%H:%M")


class CheckinService:
    """Check-in state of every room of one node; see the module docstring.

    ``notify(rooms)`` makes the node re-read those rooms (a check-in, a release).
    ``releasing()`` says whether this node is the one that releases now: where several bridges
    share a site, only the one publishing the room topics may (the others keep their windows
    and check-ins, and release when they take over).
    """

    def __init__(self, config: Config, store: ScheduleStore, clock: Clock,
                 notify: Callable[[Iterable[str]], None], *,
                 releaser: Releaser | None = None,
                 releasing: Callable[[], bool] = lambda: True) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._notify = notify
        self._releaser: Releaser = releaser or (
            lambda path, room, booking, status: run_helper(path, room, booking, status))
        self.releasing = releasing
        self.ledger = Ledger(store.path, clock.now())
        self._lock = threading.RLock()
        self._upcoming: dict[tuple[str, str, int], datetime] = {}  # slot -> its end
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkin-release")
        self.checkins: dict[str, int] = {}  # by source, since start
        self.releases: dict[str, int] = {}  # NOT_CHECK_IN outcomes, since start
        self.ends: dict[str, int] = {}  # ENDED_BEFORE_DUE outcomes, since start
        self.dry_run = 0  # releases a dry run would have made, since start
        self._last_prune: datetime | None = None

    def close(self) -> None:
        """Wait for a release in flight (its outcome must be recorded), then close."""
        self._worker.shutdown(wait=True)
        self.ledger.close()

    def reconfigure(self, config: Config) -> None:
        with self._lock:
            self.config = config

    def _room(self, name: str) -> RoomConfig | None:
        room = self.config.room(name)
        if room is None:
            room = next((r for r in self.config.rooms if r.name == name), None)
        return room

    # -- the node's loop ------------------------------------------------------------------------

    def room_checkin(self, room: RoomConfig, bookings: list[Booking],
                     now: datetime) -> tuple[CheckinView | None, datetime | None]:
        """What ``room``'s panels show about check-in now, and when that changes next (a
        release due); releases what is due. Called on the node's loop thread."""
        with self._lock:
            if self._last_prune is None or now - self._last_prune > timedelta(hours=1):
                self._last_prune = now
                self.ledger.prune(now)
                self._upcoming = {k: end for k, end in self._upcoming.items() if end > now}
            policy = room_policy(self.config, room)
            if policy.mode is CheckinMode.OFF:
                return None, None
            for b in bookings:
                if b.start > now:
                    self._upcoming[(room.open_id, b.key, to_epoch_ms(b.start))] = b.end
            view: CheckinView | None = None
            wake: datetime | None = None
            for b in in_progress(bookings, now):
                try:
                    rec = self._record(room.open_id, b, bookings, now)
                except StoreError as exc:
                    log.warning("check-in: %s", exc)
                    continue
                if rec.step is Step.CHECKED_IN:
                    view = view or CheckinView(CheckinState.CHECKED_IN)
                elif rec.step is Step.WAITING:
                    due = release_at(b, rec.first_seen, policy.window)
                    if due is not None and now >= due:
                        self._due(room, b, rec, bookings, policy.mode, now)
                    elif policy.mode is CheckinMode.DRY_RUN or due is None:
                        view = CheckinView(CheckinState.WAITING)
                    else:
                        view = CheckinView(CheckinState.WAITING, release_at=due)
                        wake = due if wake is None else min(wake, due)
            if view is None:
                view = self._released_view(room.open_id, bookings, now)
            return view, wake

    def _record(self, room_id: str, b: Booking, bookings: list[Booking],
                now: datetime) -> Record:
        """The ledger's row of a booking in progress, made (durably) the first time."""
        slot = (room_id, b.key, to_epoch_ms(b.start))
        rec = self.ledger.get(slot)
        if rec is not None:
            return rec
        if back_to_back(b, bookings):
            log.info("check-in: %s in %s follows the same organizer's meeting: checked in",
                     b.uid, room_id)
            self._count(self.checkins, "back_to_back")
            return self.ledger.put(Record(room_id, b.key, b.start, b.end, Step.CHECKED_IN,
                                          b.start, now, "back_to_back"))
        seen = b.start if slot in self._upcoming else now
        return self.ledger.put(Record(room_id, b.key, b.start, b.end, Step.WAITING, seen, now))

    def _due(self, room: RoomConfig, b: Booking, rec: Record, bookings: list[Booking],
             mode: CheckinMode, now: datetime) -> None:
        if not self.releasing():
            return  # another bridge releases; this one decides again when it takes over
        if is_series(b, bookings):
            log.warning("check-in: nobody checked in to %s in %s, an occurrence of a recurring "
                        "series: not released automatically", b.uid, room.name)
            self.ledger.advance(rec, Step.SERIES, now, detail="an occurrence of a recurring "
                                "series is never released automatically")
            self._count(self.releases, "series")
            return
        if mode is CheckinMode.DRY_RUN:
            log.info("check-in (dry-run): nobody checked in to %s in %s: would release it now",
                     b.uid, room.name)
            self.ledger.advance(rec, Step.DRY_RUN, now, detail="would have been released")
            self.dry_run += 1
            return
        sending = self.ledger.advance(rec, Step.SENDING, now, expect=Step.WAITING)
        if sending is None:
            return
        log.info("check-in: nobody checked in to %s in %s: releasing it", b.uid, room.name)
        self._worker.submit(self._release, room.open_id, b, sending, NOT_CHECK_IN)

    def _released_view(self, room_id: str, bookings: list[Booking],
                       now: datetime) -> CheckinView | None:
        """"Released" while the time of a booking released (or ended) here has not run out."""
        gone = [r for r in self.ledger.records(room_id)
                if r.step in (Step.RELEASED, Step.ENDED) and r.at <= now < r.end]
        if not gone:
            return None
        nxt = [b.start for b in bookings if b.start > now]
        return CheckinView(CheckinState.RELEASED, free_until=min(nxt) if nxt else None)

    # -- releasing (the worker thread) ----------------------------------------------------------

    def _release(self, room_id: str, b: Booking, rec: Record, status: str) -> Result:
        try:
            outcome = self._releaser(self.config.path, room_id, b, status)
        except Exception as exc:  # a releaser's bug: the outcome cannot be known
            log.exception("check-in: the release of %s failed", b.uid)
            outcome = Outcome("unknown", f"release failed: {exc}")
        now = self.clock.now()
        counts = self.releases if status == NOT_CHECK_IN else self.ends
        self._count(counts, outcome.outcome)
        if outcome.outcome == "released":
            free_from = b.start if status == NOT_CHECK_IN else max(b.start, min(now, b.end))
            try:
                self.store.mark_released(room_id, b, free_from, now)
            except StoreError as exc:
                log.error("check-in: released %s in Feishu but cannot mark it: %s", b.uid, exc)
            step = Step.RELEASED if status == NOT_CHECK_IN else Step.ENDED
            self.ledger.advance(rec, step, now, detail=outcome.detail)
            log.info("check-in: %s %s in %s: %s", status, b.uid, room_id, outcome.detail)
            self._notify([room_id])
            until = _hhmm(now, self.config)
            return Result(True, f"released: the room is free from {until}" if
                          status == NOT_CHECK_IN else f"ended at {until}: the room is free")
        step = OUTCOMES.get(outcome.outcome, Step.UNKNOWN)
        self.ledger.advance(rec, step if status == NOT_CHECK_IN or step is not Step.SERIES
                            else Step.WAITING, now, detail=outcome.detail)
        log.warning("check-in: %s of %s in %s: %s (%s)", status, b.uid, room_id,
                    outcome.outcome, outcome.detail)
        self._notify([room_id])
        return Result(False, f"not ended: {outcome.detail}" if status == ENDED_BEFORE_DUE
                      else f"not released: {outcome.detail}")

    # -- presses (any thread) -------------------------------------------------------------------

    def press(self, room_name: str, action: Action, source: str) -> Future[Result]:
        """A person checked in to ``room_name`` (open_id or name) or ended its meeting.

        A check-in is answered at once; an early end once Feishu answered (wait on the future
        where a person waits for the answer; never on a network thread).
        """
        with self._lock:
            room = self._room(room_name)
            if room is None:
                return _done(Result(False, f"no room {room_name!r} on this node"))
            policy = room_policy(self.config, room)
            if policy.mode is CheckinMode.OFF:
                return _done(Result(False, f"check-in is off for {room.name} ([checkin] mode)"))
            now = self.clock.now()
            try:
                bookings = self.store.bookings(room.open_id, ending_after=now)
            except StoreError as exc:
                return _done(Result(False, str(exc)))
            current = in_progress(bookings, now)
            if action is Action.IN:
                result = self._check_in(room, current or [
                    b for b in bookings if now < b.start <= now + policy.window][:1],
                    bookings, source, now)
                return _done(result)
            return self._end(room, current, bookings, policy.mode, source, now)

    def _check_in(self, room: RoomConfig, targets: list[Booking], bookings: list[Booking],
                  source: str, now: datetime) -> Result:
        if not targets:
            return Result(False, f"no meeting in {room.name} to check in to")
        for b in targets:
            slot = (room.open_id, b.key, to_epoch_ms(b.start))
            rec = self.ledger.get(slot)
            if rec is None:
                first = b.start if b.start > now or slot in self._upcoming else now
                self.ledger.put(Record(room.open_id, b.key, b.start, b.end, Step.CHECKED_IN,
                                       first, now, source))
            elif rec.step is Step.WAITING:
                self.ledger.advance(rec, Step.CHECKED_IN, now, source=source)
            elif rec.step is not Step.CHECKED_IN:
                return Result(False, f"too late to check in to {room.name}'s meeting: "
                              f"{rec.step.value}")
        self._count(self.checkins, source)
        log.info("check-in: %s checked in (%s)", room.name, source)
        self._notify([room.open_id])
        return Result(True, f"checked in to {room.name} until "
                      f"{_hhmm(targets[0].end, self.config)}")

    def _end(self, room: RoomConfig, current: list[Booking], bookings: list[Booking],
             mode: CheckinMode, source: str, now: datetime) -> Future[Result]:
        if not current:
            return _done(Result(False, f"no meeting in {room.name} to end"))
        if len(current) > 1:
            return _done(Result(False, f"{len(current)} meetings in {room.name} at once: end "
                                "the right one in Feishu"))
        b = current[0]
        if is_series(b, bookings) and not b.original_time:
            return _done(Result(False, f"{room.name}'s meeting is an occurrence of a recurring "
                                "series: ending one occurrence is not supported, end it in "
                                "Feishu"))
        if mode is CheckinMode.DRY_RUN:
            log.info("check-in (dry-run): %s asked to end %s in %s: would end it now", source,
                     b.uid, room.name)
            self.dry_run += 1
            return _done(Result(True, f"dry-run: {room.name}'s meeting would end now"))
        slot = (room.open_id, b.key, to_epoch_ms(b.start))
        rec = self.ledger.get(slot) or Record(room.open_id, b.key, b.start, b.end,
                                              Step.CHECKED_IN, now, now, source)
        if rec.step in (Step.SENDING, Step.RELEASED, Step.ENDED, Step.UNKNOWN):
            return _done(Result(False, f"{room.name}'s meeting is already {rec.step.value}"))
        sending = self.ledger.advance(rec, Step.SENDING, now, source=source)
        assert sending is not None  # no expect: always written
        log.info("check-in: %s ends %s in %s early", source, b.uid, room.name)
        return self._worker.submit(self._release, room.open_id, b, sending, ENDED_BEFORE_DUE)

    # -- status -----------------------------------------------------------------------------------

    def _count(self, counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    def counts(self) -> dict[str, Any]:
        """Since start: check-ins by source, releases and ends by outcome, dry-run decisions."""
        return {"checkins": dict(self.checkins), "releases": dict(self.releases),
                "ends": dict(self.ends), "dry_run": self.dry_run}

    def _name(self, room_id: str) -> str:
        # The configuration's own index: asked once a second with a page open, so no map of
        # every room here (20,000 rooms made it most of an idle node's CPU).
        room = self.config.room(room_id)
        return room.name if room is not None else room_id

    def status(self) -> dict[str, Any]:
        """``node.checkin`` in ``status``: the mode, the counts and today's decisions."""
        now = self.clock.now()
        recent = sorted(
            (r for r in self.ledger.records() if r.end > now - timedelta(hours=12)),
            key=lambda r: (r.start, r.room_id))
        return {"mode": self.config.checkin.mode.value,
                "window_minutes": self.config.checkin.window_minutes,
                **self.counts(),
                "bookings": [{"room": r.room_id, "name": self._name(r.room_id),
                              "key": r.key,
                              "start": r.start.astimezone(self.config.node.tz).isoformat(),
                              "state": r.step.value, "since": r.at.isoformat(),
                              "source": r.source, "detail": r.detail} for r in recent]}
