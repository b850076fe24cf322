"""The schedule store: every room's bookings in SQLite (WAL), shared by intake and node.

Rules (DESIGN.md, FEISHU.md):
- a delivery ``uuid`` is applied at most once; seen uuids are kept for :data:`DEDUPE_KEEP`
  (Feishu retries for ~7.1 h), across restarts;
- per ``event_id`` the version with the newest ``event_time`` wins, whatever the arrival order;
  at equal ``event_time`` a delete wins, so the outcome never depends on order;
- a delete leaves a tombstone (the ``versions`` row) so a late ``created`` cannot resurrect it;
- a version that no longer names a room removes the booking from that room;
- :meth:`ScheduleStore.apply` returns only after the commit, so the caller may acknowledge.

Several processes open the same file (the Feishu intake child writes, the node reads); SQLite's
WAL mode and ``busy_timeout`` make that safe.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from display.clock import from_epoch_ms, to_epoch_ms
from display.errors import StoreError
from display.model import Booking, EventKind, RoomEvent

log = logging.getLogger(__name__)

DEDUPE_KEEP = timedelta(hours=24)
BOOKING_KEEP = timedelta(days=1)  # after a booking ended
TOMBSTONE_KEEP = timedelta(days=2)  # after the booking's end, and after the last version came

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    uuid TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_ms);
CREATE TABLE IF NOT EXISTS versions (
    event_id TEXT PRIMARY KEY,
    event_time_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bookings (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    uid TEXT NOT NULL,
    original_time INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    organizer_open_id TEXT,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bookings_room_end ON bookings (room_id, end_ms);
CREATE INDEX IF NOT EXISTS bookings_event ON bookings (event_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class Outcome(StrEnum):
    """What applying one delivery did."""

    APPLIED = "applied"  # a new version; rooms in ``changed`` may show something else now
    DUPLICATE = "duplicate"  # this uuid was applied before: nothing to do, still acknowledge
    SUPERSEDED = "superseded"  # an equal or newer version of the booking is already known


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
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open schedule store {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one group commit at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []

    def __enter__(self) -> ScheduleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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
        ticket = _Ticket(event, to_epoch_ms(received))
        with self._queue_lock:
            self._queue.append(ticket)
        with self._commit_lock:
            if not ticket.done:
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
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None  # set with done, under the commit lock
        return ticket.result

    @staticmethod
    def _apply_one(db: sqlite3.Connection, event: RoomEvent, received_ms: int) -> ApplyResult:
        """The rules of the module docstring for one event, inside the caller's transaction."""
        try:
            db.execute("INSERT INTO deliveries (uuid, received_ms) VALUES (?, ?)",
                       (event.uuid, received_ms))
        except sqlite3.IntegrityError:
            return ApplyResult(Outcome.DUPLICATE)
        deleted = event.kind is EventKind.DELETED
        row = db.execute("SELECT event_time_ms, deleted FROM versions WHERE event_id = ?",
                         (event.event_id,)).fetchone()
        if row is not None and (row[0], row[1]) >= (event.event_time_ms, int(deleted)):
            return ApplyResult(Outcome.SUPERSEDED)
        db.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?)",
            (event.event_id, event.event_time_ms, int(deleted), to_epoch_ms(event.end),
             received_ms))
        before = {r[0] for r in db.execute(
            "SELECT room_id FROM bookings WHERE event_id = ?", (event.event_id,))}
        keep = set() if deleted else set(event.room_ids)
        for room in before - keep:
            db.execute("DELETE FROM bookings WHERE room_id = ? AND event_id = ?",
                       (room, event.event_id))
        for room in keep:
            db.execute(
                "INSERT OR REPLACE INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (room, event.event_id, event.uid, event.original_time,
                 to_epoch_ms(event.start), to_epoch_ms(event.end), event.organizer_open_id))
        return ApplyResult(Outcome.APPLIED, frozenset(before | keep))

    def seen(self, uuid: str) -> bool:
        """True if this delivery was applied (or recognised) before."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM deliveries WHERE uuid = ?", (uuid,)).fetchone()
        return row is not None

    def replace_room(self, room_id: str, bookings: Iterable[Booking]) -> bool:
        """Make ``bookings`` the whole schedule of ``room_id`` (a panel agent's intake).

        Returns True when anything changed.
        """
        rows = {(b.event_id, b.uid, b.original_time, to_epoch_ms(b.start), to_epoch_ms(b.end),
                 b.organizer_open_id) for b in bookings}
        with self._transaction() as db:
            current = set(db.execute(
                "SELECT event_id, uid, original_time, start_ms, end_ms, organizer_open_id "
                "FROM bookings WHERE room_id = ?", (room_id,)))
            if current == rows:
                return False
            db.execute("DELETE FROM bookings WHERE room_id = ?", (room_id,))
            db.executemany("INSERT INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(room_id, *r) for r in rows])
            return True

    def resync_room(self, room_id: str, window: tuple[datetime, datetime],
                    bookings: Iterable[Booking], requested_at: datetime,
                    received: datetime) -> bool:
        """Make the room's bookings in ``window`` match a free/busy answer; True if changed.

        The answer is authoritative for its window as of ``requested_at``, but never overrides
        a version that arrived (or happened) after the request was sent: that event is newer
        than what the API could know.
        """
        start_ms, end_ms = to_epoch_ms(window[0]), to_epoch_ms(window[1])
        asked_ms, received_ms = to_epoch_ms(requested_at), to_epoch_ms(received)
        wanted = {b.event_id: b for b in bookings}
        changed = False
        with self._transaction() as db:
            def newer_than_request(event_id: str) -> bool:
                row = db.execute("SELECT event_time_ms, received_ms FROM versions "
                                 "WHERE event_id = ?", (event_id,)).fetchone()
                return row is not None and (row[0] > asked_ms or row[1] > asked_ms)

            present = {r[0]: r[1:] for r in db.execute(
                "SELECT event_id, uid, original_time, start_ms, end_ms, organizer_open_id "
                "FROM bookings WHERE room_id = ? AND end_ms > ? AND start_ms < ?",
                (room_id, start_ms, end_ms))}
            for event_id in present.keys() - wanted.keys():
                if newer_than_request(event_id):
                    continue
                db.execute("DELETE FROM bookings WHERE room_id = ? AND event_id = ?",
                           (room_id, event_id))
                left = db.execute("SELECT 1 FROM bookings WHERE event_id = ?",
                                  (event_id,)).fetchone()
                if left is None:  # gone everywhere: a tombstone stops a late retry of "created"
                    db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, 1, ?, ?)",
                               (event_id, asked_ms, present[event_id][3], received_ms))
                changed = True
            for event_id, b in wanted.items():
                row = (b.uid, b.original_time, to_epoch_ms(b.start), to_epoch_ms(b.end),
                       b.organizer_open_id)
                if present.get(event_id) == row or newer_than_request(event_id):
                    continue
                db.execute("INSERT OR REPLACE INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (room_id, event_id, *row))
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, 0, ?, ?) ON CONFLICT(event_id) DO UPDATE "
                    "SET event_time_ms = excluded.event_time_ms, deleted = 0, "
                    "end_ms = excluded.end_ms, received_ms = excluded.received_ms",
                    (event_id, asked_ms, row[3], received_ms))
                changed = True
        return changed

    def prune(self, now: datetime) -> int:
        """Forget old deliveries, past bookings and their tombstones; returns rows removed."""
        now_ms = to_epoch_ms(now)
        with self._transaction() as db:
            removed = db.execute("DELETE FROM deliveries WHERE received_ms < ?",
                                 (now_ms - _ms(DEDUPE_KEEP),)).rowcount
            removed += db.execute("DELETE FROM bookings WHERE end_ms < ?",
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
                    "SELECT event_id, uid, original_time, start_ms, end_ms, organizer_open_id "
                    "FROM bookings WHERE room_id = ? AND end_ms > ? ORDER BY start_ms, event_id",
                    (room_id, after)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"schedule store {self.path}: {exc}") from exc
        return [_booking(r) for r in rows]

    def rooms(self) -> list[str]:
        """Every room that has at least one booking."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT room_id FROM bookings")]

    def counts(self) -> dict[str, int]:
        """Row counts per table, for ``status`` and benchmarks."""
        with self._lock:
            return {t: int(self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for t in ("deliveries", "versions", "bookings")}


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def _booking(row: Any) -> Booking:
    event_id, uid, original_time, start_ms, end_ms, organizer = row
    return Booking(event_id=event_id, uid=uid, original_time=original_time,
                   start=from_epoch_ms(start_ms), end=from_epoch_ms(end_ms),
                   organizer_open_id=organizer)
