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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from display.clock import from_epoch_ms, to_epoch_ms
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    uuid TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    event_id TEXT PRIMARY KEY,  -- the key {uid}_{original_time}
    event_time_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
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
            for index in _DROPPED_INDEXES:
                self._db.execute(f"DROP INDEX IF EXISTS {index}")
            _migrate(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open schedule store {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one group commit at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []
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
                    with self._transaction() as db:
                        results = [self._apply_one(db, t.event, t.received_ms) for t in batch]
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
        db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?)",
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
        with self._transaction() as db:
            newer: dict[str, bool] = {}

            def newer_than_request(key: str) -> bool:
                if key not in newer:
                    row = _version(db, key)
                    newer[key] = row is not None and (row[0] > asked_ms or row[3] > asked_ms)
                return newer[key]

            def series_deleted_since(uid: str) -> bool:
                row = _version(db, booking_key(uid, 0))
                return row is not None and bool(row[1]) and newer_than_request(row[4])

            def overridden(b: Booking) -> bool:
                if newer_than_request(b.key) or series_deleted_since(b.uid):
                    return True
                start = to_epoch_ms(b.start)
                # An instance whose occurrence got an exception (or was cancelled) since.
                return (not b.original_time and start % 1000 == 0
                        and newer_than_request(booking_key(b.uid, start // 1000)))

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
                    db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, 1, ?, ?)",
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
                    "INSERT INTO versions VALUES (?, ?, 0, ?, ?) ON CONFLICT(event_id) DO UPDATE "
                    "SET event_time_ms = excluded.event_time_ms, deleted = 0, "
                    "end_ms = max(versions.end_ms, excluded.end_ms), "
                    "received_ms = excluded.received_ms",
                    (key, asked_ms, last_end, asked_ms))
        return changed

    def prune(self, now: datetime) -> int:
        """Forget old deliveries, past bookings and their tombstones; returns rows removed."""
        now_ms = to_epoch_ms(now)
        with self._transaction() as db:
            removed = db.execute("DELETE FROM deliveries WHERE received_ms < ?",
                                 (now_ms - _ms(DEDUPE_KEEP),)).rowcount
            removed += db.execute("DELETE FROM slots WHERE end_ms < ?",
                                  (now_ms - _ms(BOOKING_KEEP),)).rowcount
            cutoff = now_ms - _ms(TOMBSTONE_KEEP)
            removed += db.execute("DELETE FROM versions WHERE end_ms < ? AND received_ms < ?",
                                  (cutoff, cutoff)).rowcount
        if removed:
            log.info("pruned %d old rows from the schedule store", removed)
        return removed

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reading --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def bookings(self, room_id: str, *, ending_after: datetime | None = None) -> list[Booking]:
        """The room's bookings in start order, optionally only those ending after a time."""
        after = to_epoch_ms(ending_after) if ending_after is not None else -1
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM slots WHERE room_id = ? AND end_ms > ? "
                    "ORDER BY start_ms, key", (room_id, after)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc
        return [_booking(r) for r in rows]

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


def _migrate(db: sqlite3.Connection) -> None:
    """Move a store of the schema before series (one row per room and event id) to ``slots``."""
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
