"""The schedule store: every room's bookings in SQLite (WAL), shared by intake and node.

Deliveries and versions:

- a delivery ``uuid`` is applied at most once; seen uuids are kept for :data:`DEDUPE_KEEP`
  (Feishu retries for ~7.1 h), across restarts;
- a booking's identity (its *key*) is ``(uid, original_time)``, derived by us; Feishu's
  ``event_id`` is kept for display only;
- per key the version with the newest ``event_time`` wins, whatever the arrival order; at equal
  ``event_time`` a delete wins, so the outcome never depends on order;
- a delete leaves a tombstone (the ``versions`` row) so a late ``created`` cannot resurrect it;
- a version that no longer names a room removes the booking from that room (a ``deleted``
  naming no room removes it from every room that has it);
- :meth:`ScheduleStore.apply` returns only after the commit, so the caller may acknowledge.

Recurring series. Feishu's events carry no recurrence rule: ``original_time`` is 0 for a one-off
booking *and* for a whole series (the event then describes one occurrence), and the epoch second
``T`` of an occurrence's original start for an *exception* (one changed or cancelled occurrence).
Free/busy answers a series expanded into *instances* that share ``uid`` and ``original_time = 0``
and differ by start, and an exception with ``original_time = T``. So a stored slot is
``(room, key, start)``, and:

- a pushed ``uid_0`` (create or time change) replaces every slot of that key, in every room, by
  the one occurrence it describes: the instances are invalid until the next free/busy answer
  (the intake asks for one at once, for the rooms the event names);
- a ``deleted`` for ``uid_0`` removes the series: every slot of that uid, instances and
  exceptions, everywhere; its tombstone also refuses an exception of that uid that is not newer;
- an exception ``uid_T`` (pushed or answered) replaces the occurrence whose original start is
  ``T``: the ``uid_0`` slot starting at ``T`` goes; a ``deleted`` for ``uid_T`` (a cancelled
  occurrence) removes both;
- a free/busy answer is authoritative for its window and rooms as of when it was requested:
  slots of a key it does not list go, the listed ones are stored, and the key's version becomes
  the request time (a retried, older event then cannot undo it). Never overridden: a key whose
  version arrived or happened after the request, an occurrence whose exception did, and the
  instances of a series whose delete did.

Several processes open the same file (the Feishu intake child writes, the node reads); SQLite's
WAL mode and ``busy_timeout`` make that safe.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from display.clock import from_epoch_ms, to_epoch_ms
from display.details import StoredDetails
from display.errors import StoreError
from display.model import Booking, EventKind, RoomEvent, booking_key

if TYPE_CHECKING:
    from display.config import Config

log = logging.getLogger(__name__)


def store_path(config: Config) -> Path:
    """Where the node's schedule database lives."""
    return config.node.state_dir / "schedule.db"


#: At least twice ``config.MAX_REPLAY_WINDOW``: a signed replay the webhook accepts must find its
#: uuid, even after the wall clock stepped forward (tests/unit/intake/test_replay_window.py).
DEDUPE_KEEP = timedelta(hours=24)
BOOKING_KEEP = timedelta(days=1)  # after a booking ended
TOMBSTONE_KEEP = timedelta(days=2)  # after the booking's end, and after the last version came
#: A free/busy answer requested within this time after a ``deleted`` event was received does
#: not bring back what the event deleted (free/busy may lag behind the event); a newer event does.
DELETE_GRACE = timedelta(minutes=10)
#: The prune clock advances at most this many times the elapsed time (so it catches up with a
#: wall clock it fell behind, a restart's downtime, without following a step).
CATCH_UP = 2.0
#: A prune counts as a pass when at least this much elapsed time separates it from the previous
#: one; a uuid or tombstone is kept for :data:`RETRY_PASSES` passes after the one that saw it:
#: at least 8 h of elapsed time, more than Feishu's retry horizon (~7.1 h).
PASS_SECONDS = 3600.0
#: A row stamped further than this after the pruning node's ``now`` was written by a clock that
#: was ahead (the other process's clock differs by milliseconds, not minutes).
FUTURE_MARGIN = timedelta(minutes=1)
RETRY_PASSES = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    uuid TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    seen_pass INTEGER  -- the prune pass that first saw it (elapsed-time aging)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    event_id TEXT PRIMARY KEY,  -- the key {uid}_{original_time}
    event_time_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,  -- 0 a version, 1 deleted by an event, 2 gone from an answer
    end_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    seen_pass INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    uid TEXT NOT NULL,
    original_time INTEGER NOT NULL,
    organizer_open_id TEXT,
    PRIMARY KEY (room_id, key, start_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS slots_key ON slots (key, start_ms);
-- Bookings released through check-in (no-show, or ended early): the slot reads as free from
-- free_from_ms on, whatever later events or re-syncs write (display.checkin).
CREATE TABLE IF NOT EXISTS released (
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    free_from_ms INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (room_id, key, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""
#: Titles and organizer names (README "Titles and organizers"), by booking key: written by the
#: Feishu intake (or an agent's schedule intake), read by the node like bookings. Added after
#: the first release: ``CREATE ... IF NOT EXISTS`` adds it to an older store when it is opened.
_DETAILS_SCHEMA = """
CREATE TABLE IF NOT EXISTS details (
    key TEXT PRIMARY KEY,  -- {uid}_{original_time}
    title TEXT,
    organizer TEXT,
    private INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""
#: Every index is a B-tree page more written (and fsynced) per event, so there are only the
#: primary keys and ``slots_key``: a room's slots are a prefix of the slots' key; every key of a
#: uid (``{uid}_{original_time}``) is a range of ``slots_key`` (see :func:`_uid_range`); only
#: prune scans whole tables, once an hour. Stores written before drop these (no data in them).
_DROPPED_INDEXES = ("deliveries_received", "slots_room_end", "slots_uid")


class Outcome(StrEnum):
    """What applying one delivery did."""

    APPLIED = "applied"  # a new version; rooms in ``changed`` may show something else now
    DUPLICATE = "duplicate"  # this uuid was applied before: nothing to do, still acknowledge
    SUPERSEDED = "superseded"  # an equal or newer version of the booking is already known
    REJECTED = "rejected"  # this event alone could not be stored (a value SQLite cannot hold)

#: What ``status`` says about recurring series when re-sync is off.
SERIES_WITHOUT_RESYNC = (
    "re-sync is off: a recurring series shows only the occurrence its latest event describes; "
    "its other occurrences are unknown (events carry no recurrence rule), exceptions and "
    "cancelled occurrences still show")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of :meth:`ScheduleStore.apply` and the rooms whose bookings changed."""

    outcome: Outcome
    changed: frozenset[str] = frozenset()
    error: str | None = None  # why, for REJECTED


#: See :attr:`ScheduleStore.journal`.
Journal = Callable[[sqlite3.Connection, list[tuple[RoomEvent, ApplyResult]]], None]


@dataclass(slots=True)
class _Ticket:
    """One caller's event waiting for a group commit."""

    event: RoomEvent
    received_ms: int
    done: bool = False
    result: ApplyResult | None = None
    error: StoreError | None = None


class ScheduleStore:
    """Bookings per room, versioned by ``event_time``; a context manager closing the database.

    ``durable=True`` (the default) fsyncs every commit (``synchronous=FULL``) so an acknowledged
    event survives a power cut, not only a crash: a Pi is unplugged more often than it crashes.
    """

    def __init__(self, path: Path | str, *, durable: bool = True) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by the threads of a process, serialised by a lock: SQLite
            # serialises writers anyway, and a single connection keeps memory small on a Pi.
            self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            self._db.executescript(_DETAILS_SCHEMA)
            for index in _DROPPED_INDEXES:
                self._db.execute(f"DROP INDEX IF EXISTS {index}")
            _migrate(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open schedule store {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one group commit at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []
        #: Called inside each apply transaction with the events and their results, before the
        #: commit: what it writes commits (or rolls back) with them (the replication outbox,
        #: :mod:`display.outbox`). None: nothing more is written.
        self.journal: Journal | None = None
        self._batch_thread: int | None = None  # the thread inside batch(), holding _lock

    def __enter__(self) -> ScheduleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction (one fsync) for every write made in the block by this thread, e.g.
        a re-sync chunk of rooms; all of it is rolled back if any of it fails."""
        with self._transaction():
            self._batch_thread = threading.get_ident()
            try:
                yield
            finally:
                self._batch_thread = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._batch_thread == threading.get_ident():  # inside batch(): its transaction
            yield self._db
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc

    # -- writing --------------------------------------------------------------------------------

    def apply(self, event: RoomEvent, received: datetime) -> ApplyResult:
        """Apply one validated event; committed (and durable) when this returns.

        Group commit: events that arrive from other threads while a commit is being written are
        queued, and the next committer writes all of them in one transaction, one fsync. Each
        caller still returns only after its own event is durable, so acknowledging stays safe,
        and a burst of webhook deliveries costs one fsync per batch instead of one per event.
        """
        return self.apply_many([event], received)[0]

    def apply_many(self, events: Sequence[RoomEvent], received: datetime) -> list[ApplyResult]:
        """Apply ``events`` in order, in one transaction with whatever other threads queued;
        committed (and durable) when this returns. A failed commit raises
        :class:`~display.errors.StoreError` and applies none of them."""
        if not events:
            return []
        received_ms = to_epoch_ms(received)
        tickets = [_Ticket(event, received_ms) for event in events]
        with self._queue_lock:
            self._queue.extend(tickets)
        with self._commit_lock:
            if not tickets[-1].done:  # queued together, so they are committed together
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    try:
                        with self._transaction() as db:
                            results = self._apply_batch(db, batch, isolate=False)
                    except _Poisoned:  # rolled back: again, each event on its own savepoint
                        with self._transaction() as db:
                            results = self._apply_batch(db, batch, isolate=True)
                except StoreError as exc:
                    for t in batch:
                        t.error, t.done = exc, True
                else:
                    for t, result in zip(batch, results, strict=True):
                        t.result, t.done = result, True
        out = []
        for ticket in tickets:
            if ticket.error is not None:
                raise ticket.error
            assert ticket.result is not None  # set with done, under the commit lock
            out.append(ticket.result)
        return out

    def _apply_batch(self, db: sqlite3.Connection, batch: list[_Ticket], *,
                     isolate: bool) -> list[ApplyResult]:
        """Apply a batch inside the caller's transaction.

        A value that cannot be stored (validation bounds every field, so this is defence in
        depth) must fail only its own event, never the others committed with it: without
        ``isolate`` such an event raises :class:`_Poisoned` (the caller rolls back and tries
        again with ``isolate``); with it, each event runs on a savepoint and a poisoned one is
        rolled back alone and answered ``REJECTED``. Errors of the database itself (disk full,
        locked) still fail the whole batch.
        """
        results = []
        for t in batch:
            if isolate:
                db.execute("SAVEPOINT event")
            try:
                results.append(self._apply_one(db, t.event, t.received_ms))
            except _PER_EVENT as exc:
                if not isolate:
                    raise _Poisoned from exc
                db.execute("ROLLBACK TO event")
                log.error("event uuid=%.64r cannot be stored and is refused alone: %s: %.200s",
                          t.event.uuid, type(exc).__name__, exc)
                results.append(ApplyResult(Outcome.REJECTED,
                                           error=f"cannot be stored: {exc}"[:200]))
            if isolate:
                db.execute("RELEASE event")
        if self.journal is not None:  # in the same transaction: nothing committed is missed
            self.journal(db, [(t.event, r) for t, r in zip(batch, results, strict=True)])
        return results

    @staticmethod
    def _apply_one(db: sqlite3.Connection, event: RoomEvent, received_ms: int) -> ApplyResult:
        """The rules of the module docstring for one event, inside the caller's transaction."""
        try:
            db.execute("INSERT INTO deliveries (uuid, received_ms) VALUES (?, ?)",
                       (event.uuid, received_ms))
        except sqlite3.IntegrityError:
            return ApplyResult(Outcome.DUPLICATE)
        deleted = event.kind is EventKind.DELETED
        version = _version(db, event.key)
        if version is not None and version[:2] >= (event.event_time_ms, int(deleted)):
            return ApplyResult(Outcome.SUPERSEDED)
        series = booking_key(event.uid, 0)
        if event.original_time:
            # An exception of a series deleted at or after it happened cannot come back.
            gone = _version(db, series)
            if gone is not None and gone[1] and gone[0] >= event.event_time_ms:
                return ApplyResult(Outcome.SUPERSEDED)
        db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, NULL)",
                   (event.key, event.event_time_ms, int(deleted), to_epoch_ms(event.end),
                    received_ms))
        # Every slot of the key goes (for a series: the instances are invalid until the next
        # answer); a deleted series takes its exceptions along.
        if deleted and not event.original_time:
            touched = _delete(db, "key >= ? AND key < ? AND uid = ?",
                              (*_uid_range(event.uid), event.uid))
        else:
            touched = _delete(db, "key = ?", (event.key,))
        if event.original_time:  # an exception replaces the occurrence it was
            touched |= _delete(db, "key = ? AND start_ms = ?",
                               (series, event.original_time * 1000))
        keep = () if deleted else event.room_ids
        for room in keep:
            db.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (room, event.key, to_epoch_ms(event.start), to_epoch_ms(event.end),
                        event.event_id, event.uid, event.original_time,
                        event.organizer_open_id))
        return ApplyResult(Outcome.APPLIED, frozenset(touched | set(keep)))

    def seen(self, uuid: str) -> bool:
        """True if this delivery was applied (or recognised) before."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM deliveries WHERE uuid = ?", (uuid,)).fetchone()
        return row is not None

    def replace_room(self, room_id: str, bookings: Iterable[Booking]) -> bool:
        """Make ``bookings`` the whole schedule of ``room_id`` (a panel agent's intake).

        Returns True when anything changed.
        """
        rows = {_row(b) for b in bookings}
        with self._transaction() as db:
            current = set(db.execute(f"SELECT {_COLUMNS} FROM slots WHERE room_id = ?",
                                     (room_id,)))
            if current == rows:
                return False
            db.execute("DELETE FROM slots WHERE room_id = ?", (room_id,))
            db.executemany(f"INSERT OR REPLACE INTO slots (room_id, {_COLUMNS}) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(room_id, *r) for r in rows])
            return True

    def resync_room(self, room_id: str, window: tuple[datetime, datetime],
                    bookings: Iterable[Booking], requested_at: datetime,
                    received: datetime) -> bool:
        """Make the room's bookings in ``window`` match a free/busy answer; True if changed.

        The answer is authoritative for its window as of ``requested_at``, but never overrides
        what arrived (or happened) after the request was sent: see the module docstring.
        ``received`` (when the answer came) is not recorded: what it confirms is as of the
        request.
        """
        start_ms, end_ms = to_epoch_ms(window[0]), to_epoch_ms(window[1])
        # What the answer confirms is known as of the request, not of its arrival: recorded so,
        # the next room of the same answer (or chunk) is not mistaken for something newer.
        asked_ms = to_epoch_ms(requested_at)
        grace_ms = _ms(DELETE_GRACE)
        with self._transaction() as db:
            newer: dict[str, bool] = {}

            def newer_than_request(key: str) -> bool:
                if key not in newer:
                    row = _version(db, key)
                    newer[key] = row is not None and (row[0] > asked_ms or row[3] > asked_ms)
                return newer[key]

            def deleted_lately(key: str) -> bool:
                # Deleted by an event received within DELETE_GRACE before the request: free/busy
                # may not know of the delete yet (the targeted pass asks 2 s after it), and
                # only a newer event may bring the booking back. A tombstone an earlier answer
                # wrote (deleted = 2) does not count: the later answer knows better.
                row = _version(db, key)
                return (row is not None and row[1] == 1 and asked_ms - row[3] < grace_ms)

            def held(key: str) -> bool:
                return newer_than_request(key) or deleted_lately(key)

            def series_deleted_since(uid: str) -> bool:
                row = _version(db, booking_key(uid, 0))
                return row is not None and bool(row[1]) and held(row[4])

            def exception_held(uid: str, original: int) -> bool:
                # An instance whose occurrence got an exception (or was cancelled) since; a
                # cancelled occurrence is not held once its series was issued again with or
                # after the cancellation (a series' time change drops its exceptions).
                key = booking_key(uid, original)
                if newer_than_request(key):
                    return True
                if not deleted_lately(key):
                    return False
                cancelled, series = _version(db, key), _version(db, booking_key(uid, 0))
                return not (cancelled is not None and series is not None and not series[1]
                            and series[0] >= cancelled[0])

            def overridden(b: Booking) -> bool:
                if held(b.key) or series_deleted_since(b.uid):
                    return True
                start = to_epoch_ms(b.start)
                return (not b.original_time and start % 1000 == 0
                        and exception_held(b.uid, start // 1000))

            wanted = {(b.key, to_epoch_ms(b.start)): b for b in bookings if not overridden(b)}
            present = {(r[1], r[2]): r for r in db.execute(
                f"SELECT room_id, {_COLUMNS} FROM slots "
                "WHERE room_id = ? AND end_ms > ? AND start_ms < ?",
                (room_id, start_ms, end_ms))}
            changed = False
            gone_keys: dict[str, int] = {}
            for slot, row in present.items():
                if slot in wanted or newer_than_request(slot[0]):
                    continue
                db.execute("DELETE FROM slots WHERE room_id = ? AND key = ? AND start_ms = ?",
                           (room_id, *slot))
                gone_keys[slot[0]] = max(gone_keys.get(slot[0], 0), row[3])
                changed = True
            for key, last_end in gone_keys.items():
                if db.execute("SELECT 1 FROM slots WHERE key = ? LIMIT 1", (key,)).fetchone():
                    continue
                if not newer_than_request(key):
                    # Gone everywhere: a tombstone stops a late retry of its "created".
                    db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, 2, ?, ?, NULL)",
                               (key, asked_ms, last_end, asked_ms))
            confirmed: dict[str, int] = {}
            for slot, b in wanted.items():
                row = _row(b)
                confirmed[b.key] = max(confirmed.get(b.key, 0), row[2])
                old = present.get(slot)
                if old is not None and tuple(old[1:]) == row:
                    continue
                db.execute(f"INSERT OR REPLACE INTO slots (room_id, {_COLUMNS}) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (room_id, *row))
                changed = True
            for key, last_end in confirmed.items():
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, 0, ?, ?, NULL) ON CONFLICT(event_id) "
                    "DO UPDATE SET event_time_ms = excluded.event_time_ms, deleted = 0, "
                    "end_ms = max(versions.end_ms, excluded.end_ms), "
                    "received_ms = excluded.received_ms, seen_pass = NULL",
                    (key, asked_ms, last_end, asked_ms))
        return changed

    def prune(self, now: datetime, elapsed: float) -> int:
        """Forget old deliveries, past bookings and their tombstones; returns rows removed.

        ``now`` is the wall clock, ``elapsed`` the monotonic seconds since this process's
        previous prune (0 for its first). A wall clock that steps (no RTC, a bad NTP answer, a
        wrong ``date``) must never delete anything, so neither is trusted alone:

        - the store ages by its own *prune clock*, persisted: it follows the wall clock but
          advances at most :data:`CATCH_UP` times the elapsed time per prune, never across a
          restart's downtime and never backwards: a step of a year moves it by seconds;
        - a delivery's uuid and a tombstone also need :data:`RETRY_PASSES` prunes, each at
          least :data:`PASS_SECONDS` of elapsed time apart, after the prune that first saw them:
          they outlive Feishu's retries (~7.1 h) whatever either clock did;
        - a row stamped more than :data:`FUTURE_MARGIN` after ``now`` (written while the clock
          was ahead) is restamped ``now``: it ages from now on instead of being kept for that
          long, and a free/busy answer asked for from now on may override it.
        """
        now_ms = to_epoch_ms(now)
        with self._transaction() as db:
            old = _meta_int(db, "prune_clock_ms")
            passes = _meta_int(db, "prune_passes") or 0
            if old is None:  # a new (or older) store: start from the newest row written
                newest = db.execute("SELECT max(received_ms) FROM deliveries").fetchone()[0]
                clock = min(now_ms, int(newest)) if newest is not None else now_ms
            else:
                clock = max(old, min(now_ms, old + int(CATCH_UP * max(0.0, elapsed) * 1000)))
            if elapsed >= PASS_SECONDS:
                passes += 1
            for table in ("deliveries", "versions"):
                db.execute(f"UPDATE {table} SET seen_pass = ? WHERE seen_pass IS NULL",
                           (passes,))
                db.execute(f"UPDATE {table} SET received_ms = ? WHERE received_ms > ?",
                           (now_ms, now_ms + _ms(FUTURE_MARGIN)))
            ripe = passes - RETRY_PASSES
            removed = db.execute(
                "DELETE FROM deliveries WHERE received_ms < ? AND seen_pass <= ?",
                (clock - _ms(DEDUPE_KEEP), ripe)).rowcount
            removed += db.execute("DELETE FROM slots WHERE end_ms < ?",
                                  (clock - _ms(BOOKING_KEEP),)).rowcount
            removed += db.execute("DELETE FROM released WHERE at_ms < ?",
                                  (clock - _ms(TOMBSTONE_KEEP),)).rowcount
            cutoff = clock - _ms(TOMBSTONE_KEEP)
            removed += db.execute(
                "DELETE FROM versions WHERE end_ms < ? AND received_ms < ? AND seen_pass <= ?",
                (cutoff, cutoff, ripe)).rowcount
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("prune_clock_ms", str(clock)), ("prune_passes", str(passes))))
        if removed:
            log.info("pruned %d old rows from the schedule store", removed)
        return removed

    def put_details(self, rows: Mapping[str, StoredDetails], now: datetime, *,
                    clear: Iterable[str] = ()) -> bool:
        """Store details by booking key; True when any row changed (one transaction).

        Rows of bookings no longer stored go at the same time: details live as long as their
        bookings, and the store's pruning of those is enough to bound this table. Keys in
        ``clear`` but not in ``rows`` lose their details (an agent's bridge stopped sending them).
        """
        changed = False
        now_ms = to_epoch_ms(now)
        with self._transaction() as db:
            db.execute("DELETE FROM details WHERE key NOT IN (SELECT key FROM slots)")
            for key in set(clear) - set(rows):  # a sender that no longer says anything of it
                changed |= db.execute("DELETE FROM details WHERE key = ?", (key,)).rowcount > 0
            for key, d in rows.items():
                old = db.execute("SELECT title, organizer, private FROM details WHERE key = ?",
                                 (key,)).fetchone()
                new = (d.title, d.organizer, int(d.private))
                if old is not None and tuple(old) == new:
                    continue
                db.execute("INSERT OR REPLACE INTO details VALUES (?, ?, ?, ?, ?)",
                           (key, *new, now_ms))
                changed = True
        return changed

    def details(self, keys: Iterable[str]) -> dict[str, StoredDetails]:
        """The stored details of those ``keys`` that have any."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, StoredDetails] = {}
        with self._lock:
            try:
                for i in range(0, len(wanted), 500):  # SQLite's bound on host parameters
                    part = wanted[i:i + 500]
                    marks = ",".join("?" * len(part))
                    for key, title, organizer, private in self._db.execute(
                            f"SELECT key, title, organizer, private FROM details "
                            f"WHERE key IN ({marks})", part):
                        out[key] = StoredDetails(title, organizer, bool(private))
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc
        return out

    def mark_released(self, room_id: str, booking: Booking, free_from: datetime,
                      at: datetime) -> None:
        """Show ``booking`` in ``room_id`` as over from ``free_from`` (its start: released as a
        no-show; later: ended early), now and after any later event or re-sync about it."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO released VALUES (?, ?, ?, ?, ?)",
                       (room_id, booking.key, to_epoch_ms(booking.start),
                        to_epoch_ms(free_from), to_epoch_ms(at)))

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reading --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The values of those ``keys`` that are set (one query per 500 keys)."""
        out: dict[str, str] = {}
        with self._lock:
            try:
                for part in _chunks(list(dict.fromkeys(keys))):
                    marks = ",".join("?" * len(part))
                    out.update((str(k), str(v)) for k, v in self._db.execute(
                        f"SELECT key, value FROM meta WHERE key IN ({marks})", part))
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc
        return out

    def bookings(self, room_id: str, *, ending_after: datetime | None = None) -> list[Booking]:
        """The room's bookings in start order, optionally only those ending after a time."""
        return self.bookings_many([room_id], ending_after=ending_after)[room_id]

    def bookings_many(self, room_ids: Iterable[str], *, ending_after: datetime | None = None
                      ) -> dict[str, list[Booking]]:
        """:meth:`bookings` of every room of ``room_ids`` (each present, maybe empty), read in
        one query per 500 rooms instead of one per room: a node's first pass over 20,000
        rooms."""
        after = to_epoch_ms(ending_after) if ending_after is not None else -1
        wanted = list(dict.fromkeys(room_ids))
        rows: list[Any] = []
        released: dict[tuple[str, str, int], int] = {}
        with self._lock:
            try:
                for part in _chunks(wanted):
                    marks = ",".join("?" * len(part))
                    rows += self._db.execute(
                        f"SELECT room_id, {_COLUMNS} FROM slots WHERE room_id IN ({marks}) "
                        "AND end_ms > ? ORDER BY room_id, start_ms, key", (*part, after))
                    released.update(((r[0], r[1], r[2]), int(r[3])) for r in self._db.execute(
                        "SELECT room_id, key, start_ms, free_from_ms FROM released "
                        f"WHERE room_id IN ({marks})", part))
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc
        out: dict[str, list[Booking]] = {room_id: [] for room_id in wanted}
        for r in rows:
            free_from = released.get((r[0], r[1], r[2])) if released else None
            if free_from is None:
                out[r[0]].append(_booking(r[1:]))
            elif free_from > r[2]:  # ended early: it lasted until then
                out[r[0]].append(_booking((*r[1:3], min(r[3], free_from), *r[4:])))
        return out

    def rooms(self) -> list[str]:
        """Every room that has at least one booking."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT room_id FROM slots")]

    def counts(self) -> dict[str, int]:
        """Row counts per table, for ``status`` and benchmarks (``bookings``: stored slots)."""
        with self._lock:
            return {name: int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                    for name, table in (("deliveries", "deliveries"), ("versions", "versions"),
                                        ("bookings", "slots"))}


class _Poisoned(Exception):
    """One event of a batch holds a value SQLite cannot store; the batch is redone isolated."""


#: What one event's values can raise while being bound or stored (not the database's own errors).
_PER_EVENT = (OverflowError, ValueError, TypeError, sqlite3.InterfaceError, sqlite3.DataError)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """``items`` in runs of at most ``size`` (SQLite's bound on host parameters is 999 in old
    builds; one more is left for the query's own)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


#: The columns of a slot after ``room_id``, in table order.
_COLUMNS = "key, start_ms, end_ms, event_id, uid, original_time, organizer_open_id"

_SlotRow = tuple[str, int, int, str, str, int, str | None]


def _row(b: Booking) -> _SlotRow:
    return (b.key, to_epoch_ms(b.start), to_epoch_ms(b.end), b.event_id, b.uid,
            b.original_time, b.organizer_open_id)


def _booking(row: Any) -> Booking:
    _key, start_ms, end_ms, event_id, uid, original_time, organizer = row
    return Booking(event_id=event_id, uid=uid, original_time=original_time,
                   start=from_epoch_ms(start_ms), end=from_epoch_ms(end_ms),
                   organizer_open_id=organizer)


def _version(db: sqlite3.Connection, key: str) -> tuple[int, int, int, int, str] | None:
    """``(event_time_ms, deleted, end_ms, received_ms, key)`` of a key, if any."""
    row = db.execute("SELECT event_time_ms, deleted, end_ms, received_ms, event_id "
                     "FROM versions WHERE event_id = ?", (key,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                                     str(row[4]))


def _uid_range(uid: str) -> tuple[str, str]:
    """Bounds ``[low, high)`` of every key of ``uid`` (``{uid}_...``) in ``slots_key``; a longer
    uid sharing the prefix (``{uid}_x``) falls in it too, hence the extra ``uid = ?``."""
    prefix = booking_key(uid, 0)[: len(uid) + 1]
    return prefix, prefix[:-1] + chr(ord("_") + 1)


def _delete(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> set[str]:
    """Delete the slots matching ``where``; the rooms that had one (one statement: a commit's
    CPU time is on every event's path)."""
    return {r[0] for r in db.execute(f"DELETE FROM slots WHERE {where} RETURNING room_id", args)}


def _meta_int(db: sqlite3.Connection, key: str) -> int | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    try:
        return None if row is None else int(row[0])
    except ValueError:
        return None


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older store to this schema: ``seen_pass`` columns (elapsed-time aging), and
    the schema before series (one row per room and event id) to ``slots``."""
    for table in ("deliveries", "versions"):
        columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if "seen_pass" not in columns:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN seen_pass INTEGER")
            except sqlite3.OperationalError as exc:  # the other process added it just now
                if "duplicate column" not in str(exc):
                    raise
    old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bookings'")
    if old.fetchone() is None:
        return
    db.executescript(
        "BEGIN IMMEDIATE;"
        f"INSERT OR IGNORE INTO slots (room_id, {_COLUMNS}) SELECT room_id, "
        "uid || '_' || original_time, start_ms, end_ms, event_id, uid, original_time, "
        "organizer_open_id FROM bookings;"
        "DROP TABLE bookings;"
        "COMMIT;")
    log.info("schedule store: moved bookings to the schema with recurring series")
