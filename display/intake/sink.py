"""The one path every Feishu event takes: validate, dedupe, commit, then tell the node.

Both Feishu modes and ``--replay`` call :meth:`EventSink.accept`; when it returns, the event is
committed and may be acknowledged. It raises :class:`~display.errors.EventError` for an invalid
event (answer 400 / log and drop) and :class:`~display.errors.StoreError` when the commit failed
(answer 500 so Feishu retries).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from display.clock import Clock
from display.errors import EventError, StoreError
from display.intake.envelope import UnknownEventType, parse_envelope
from display.model import RoomEvent
from display.store import ApplyResult, Outcome, ScheduleStore

log = logging.getLogger(__name__)

#: Seconds between the INFO lines counting applied events (each event is logged at DEBUG).
SUMMARY_EVERY = 60.0


class Verdict(StrEnum):
    """How an accepted delivery was handled; every verdict is acknowledged."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    IGNORED = "ignored"  # unknown event type
    #: Applied (stored, so a room added to the config later shows it), but it names only rooms
    #: this node's config does not list: a mistyped ``open_id`` would otherwise look healthy.
    UNKNOWN_ROOM = "unknown_room"


@dataclass(frozen=True, slots=True)
class Accepted:
    """Result of :meth:`EventSink.accept`."""

    verdict: Verdict
    event: RoomEvent | None = None
    changed: frozenset[str] = frozenset()


#: What :meth:`EventSink.counts` counts: the verdicts, plus deliveries refused as invalid (never
#: applied; also those the webhook refuses before the sink) and those whose commit failed (not
#: acknowledged: Feishu delivers them again).
COUNTED = (*(v.value for v in Verdict), "refused", "failed")


class EventSink:
    """Validate and commit Feishu envelopes; call ``on_change`` with the rooms that changed.

    ``rooms``, when given, returns the room ids the config lists (called once per commit): an
    applied event naming none of them is counted ``unknown_room`` and each such id is logged
    once, as a WARNING.
    """

    def __init__(self, store: ScheduleStore, clock: Clock,
                 on_change: Callable[[frozenset[str]], None] = lambda rooms: None, *,
                 on_applied: Callable[[RoomEvent, frozenset[str]], None] | None = None,
                 on_count: Callable[[str], None] | None = None,
                 on_store: Callable[[bool, str | None], None] | None = None,
                 rooms: Callable[[], Collection[str]] | None = None) -> None:
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._rooms_configured = rooms
        self._unknown_rooms_logged: set[str] = set()
        # After a commit, with the event: the intake re-syncs a series' rooms from it.
        self._on_applied = on_applied
        # The intake reports these to the node: each delivery's count key (COUNTED), and the
        # store turning unwritable / writable again (transitions only).
        self._on_count = on_count
        self._on_store = on_store
        self._counts = dict.fromkeys(COUNTED, 0)
        self._store_ok: bool | None = None  # unknown until the first commit
        self._unknown_logged: set[str] = set()
        self._lock = threading.Lock()
        self._applied = 0
        self._rooms: set[str] = set()
        self._summary_at = self._since = clock.monotonic() - SUMMARY_EVERY

    def counts(self) -> dict[str, int]:
        """Deliveries since start by :data:`COUNTED` key."""
        with self._lock:
            return dict(self._counts)

    def count_refused(self) -> None:
        """Count a delivery refused before it reached the sink (the webhook's own checks)."""
        self._count("refused")

    def note_store(self, ok: bool, error: str | None = None) -> None:
        """The store took (or refused) a write; ``on_store`` hears of changes only."""
        with self._lock:
            changed, self._store_ok = self._store_ok is not ok, ok
        if changed and self._on_store is not None:
            self._on_store(ok, error)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n
        if self._on_count is not None:
            for _ in range(n):
                self._on_count(key)

    def accept(self, raw: Any) -> Accepted:
        """Handle one decoded envelope. Thread-safe."""
        result = self.accept_many([raw])[0]
        if isinstance(result, EventError):
            raise result
        return result

    def accept_many(self, raws: Sequence[Any]) -> list[Accepted | EventError]:
        """Handle decoded envelopes in order, committing the valid ones in one transaction
        (one fsync). Per envelope the :class:`Accepted` or the
        :class:`~display.errors.EventError` it failed with; a failed commit raises
        :class:`~display.errors.StoreError` for all. Thread-safe.
        """
        out: list[Accepted | EventError] = []
        parsed: list[tuple[int, RoomEvent]] = []
        for raw in raws:
            try:
                checked = self.prepare(raw)
            except EventError as exc:
                out.append(exc)
                continue
            if isinstance(checked, RoomEvent):
                parsed.append((len(out), checked))
            out.append(Accepted(Verdict.IGNORED))  # replaced below when parsed
        for (i, _), accepted in zip(parsed, self.commit_many([e for _, e in parsed]),
                                    strict=True):
            out[i] = accepted
        return out

    def prepare(self, raw: Any) -> RoomEvent | Accepted:
        """The validated event of an envelope, or ``Accepted(IGNORED)`` for an event type we
        do not handle; raises :class:`~display.errors.EventError` for an invalid one. The
        webhook does this on its event loop, so its committer only commits."""
        try:
            return parse_envelope(raw)
        except UnknownEventType:
            self._unknown(str(raw["event"]["type"]))
            self._count(Verdict.IGNORED.value)
            return Accepted(Verdict.IGNORED)
        except EventError:
            self._count("refused")
            raise

    def commit_many(self, events: Sequence[RoomEvent]) -> list[Accepted | EventError]:
        """Commit validated events in one transaction (one fsync) and tell the node which
        rooms changed; :class:`~display.errors.StoreError` when the commit failed. An event
        the store could not hold is an :class:`~display.errors.EventError` of its own (answer
        400): the others of its batch are committed."""
        if not events:
            return []
        try:
            results = self._store.apply_many(events, self._clock.now())
        except StoreError as exc:
            self._count("failed", len(events))
            self.note_store(False, str(exc))
            raise
        if self._store_ok is not True:  # unknown or failing: once per change, not per event
            self.note_store(True)
        out: list[Accepted | EventError] = []
        changed: set[str] = set()
        applied: list[tuple[RoomEvent, frozenset[str]]] = []
        known = self._rooms_configured() if self._rooms_configured is not None else None
        for event, result in zip(events, results, strict=True):
            if result.outcome is Outcome.REJECTED:
                out.append(EventError("event", result.error or "cannot be stored"))
                self._count("refused")
                continue
            verdict = self._verdict(event, result, known)
            out.append(verdict)
            self._count(verdict.verdict.value)
            if result.outcome is Outcome.APPLIED:
                changed |= result.changed
                applied.append((event, result.changed))
        if applied:
            with self._lock:
                self._applied += len(applied)
                self._rooms |= changed
        if changed:  # once per batch: the node redraws each room once
            self._on_change(frozenset(changed))
        if self._on_applied is not None:
            for event, rooms in applied:
                self._on_applied(event, rooms)
        if applied:
            self.log_summary()
        return out

    def _unknown(self, kind: str) -> None:
        with self._lock:
            first = kind not in self._unknown_logged
            self._unknown_logged.add(kind)
        if first:  # logged once per type: Feishu may send many
            log.info("ignoring event type %r (acknowledged; logged once)", kind)

    def _unknown_rooms(self, event: RoomEvent, known: Collection[str]) -> bool:
        """True when ``event`` names rooms and none of them is configured; warns once per id."""
        unknown = [r for r in event.room_ids if r not in known]
        with self._lock:
            new = [r for r in unknown if r not in self._unknown_rooms_logged]
            self._unknown_rooms_logged.update(new)
        for room in new:  # once per room id: Feishu may send many for it
            log.warning("event %s names room %s, which is not in the config: stored and "
                        "acknowledged, but no panel shows it (a mistyped open_id? `room-display "
                        "map list` shows the configured rooms); logged once per room",
                        event.event_id, room)
        return bool(event.room_ids) and len(unknown) == len(event.room_ids)

    def _verdict(self, event: RoomEvent, result: ApplyResult,
                 known: Collection[str] | None) -> Accepted:
        if result.outcome is Outcome.DUPLICATE:
            log.debug("duplicate delivery %s ignored", event.uuid)
            return Accepted(Verdict.DUPLICATE, event)
        if result.outcome is Outcome.SUPERSEDED:
            log.info("event %s (%s) is older than the version we have; ignored",
                     event.event_id, event.kind.value)
            return Accepted(Verdict.SUPERSEDED, event)
        # One line per event would cost more than the commit at a burst's rate: DEBUG here,
        # a count at INFO from log_summary().
        if log.isEnabledFor(logging.DEBUG):  # its arguments cost more than the check
            log.debug("%s %s rooms=%s", event.kind.value.rsplit("_", 1)[-1], event.event_id,
                      ",".join(sorted(result.changed)))
        if known is not None and self._unknown_rooms(event, known):
            return Accepted(Verdict.UNKNOWN_ROOM, event, result.changed)
        return Accepted(Verdict.APPLIED, event, result.changed)

    def log_summary(self, force: bool = False) -> None:
        """At most every :data:`SUMMARY_EVERY` seconds (or when ``force``), one INFO line with
        the events applied since the last one. Thread-safe; also called by the intake's
        heartbeat so a quiet spell does not hold the last count back."""
        now = self._clock.monotonic()
        with self._lock:
            if not self._applied or (not force and now - self._summary_at < SUMMARY_EVERY):
                return
            applied, rooms = self._applied, len(self._rooms)
            self._applied, self._rooms, self._summary_at = 0, set(), now
        log.info("applied %d event(s) for %d room(s) in the last %.0f s", applied, rooms,
                 now - self._since)
        self._since = now
