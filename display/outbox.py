"""The replication outbox: what this bridge received from Feishu, for its peer bridges.

Two or more bridges of one site each hold part of what Feishu sends (Feishu hands each event to
one of the app's connections). Every event a bridge's Feishu intake applies is also written to
the ``outbox`` table of its store, **in the same transaction** as the commit
(:attr:`display.store.ScheduleStore.journal`), so nothing acknowledged to Feishu can be missing
from it. Each row has this bridge's sequence number ``seq`` (1, 2, ...: SQLite's
``AUTOINCREMENT`` never reuses one, also after rows were pruned) and the validated event
(:func:`event_to_json`). The node process publishes the rows to the broker
(:mod:`display.publish.peers`) and keeps them :data:`OUTBOX_KEEP`, so a peer that was away is
sent the window again when it comes back.

Only events received from Feishu are written here: events a peer replicated to us are applied
through a store without a journal, so they never travel back (no ping-pong). Duplicates and
superseded versions are not written (the origin already sent what superseded them).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from display.clock import to_epoch_ms
from display.errors import EventError, StoreError
from display.model import EventKind, RoomEvent, check_time
from display.store import ApplyResult, Outcome, ScheduleStore

log = logging.getLogger(__name__)

#: How long rows stay: Feishu's own retry horizon (about 7.1 h), rounded up. A peer away longer
#: than this is re-synced from free/busy instead (when re-sync is on).
OUTBOX_KEEP = timedelta(hours=8)
#: The journal prunes at most once per this many rows written.
PRUNE_EVERY_ROWS = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    committed_ms INTEGER NOT NULL,
    event TEXT NOT NULL
);
"""


def event_to_json(event: RoomEvent) -> dict[str, Any]:
    """A validated event as the outbox and the ``events`` topic carry it."""
    return {"uuid": event.uuid, "kind": event.kind.value, "event_id": event.event_id,
            "uid": event.uid, "original_time": event.original_time,
            "event_time_ms": event.event_time_ms, "start": event.start.isoformat(),
            "end": event.end.isoformat(), "room_ids": list(event.room_ids),
            "organizer_open_id": event.organizer_open_id}


def event_from_json(doc: Any) -> RoomEvent:
    """The event :func:`event_to_json` made; :class:`~display.errors.EventError` naming the bad
    field for anything else (a peer's payload is checked like Feishu's)."""
    if not isinstance(doc, dict):
        raise EventError("event", f"must be an object, got {type(doc).__name__}")

    def text(key: str, *, optional: bool = False) -> Any:
        value = doc.get(key)
        if optional and value is None:
            return None
        if not isinstance(value, str) or not value:
            raise EventError(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(key: str) -> int:
        value = doc.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EventError(key, f"must be a non-negative integer, got {value!r}")
        return value

    def when(key: str) -> datetime:
        raw = text(key)
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise EventError(key, f"{raw!r} is not an ISO-8601 time") from None
        return check_time(value, key)

    try:
        kind = EventKind(str(doc.get("kind")))
    except ValueError:
        raise EventError("kind", f"unknown event kind {doc.get('kind')!r}") from None
    rooms = doc.get("room_ids")
    if not isinstance(rooms, list) or not all(isinstance(r, str) and r for r in rooms):
        raise EventError("room_ids", f"must be a list of room ids, got {rooms!r}")
    start, end = when("start"), when("end")
    if end < start:
        raise EventError("end", "must not be before start")
    return RoomEvent(uuid=text("uuid"), kind=kind, event_id=text("event_id"), uid=text("uid"),
                     original_time=integer("original_time"),
                     event_time_ms=integer("event_time_ms"), start=start, end=end,
                     room_ids=tuple(rooms),
                     organizer_open_id=text("organizer_open_id", optional=True))


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the ``outbox`` table if the store has none yet."""
    db.executescript(SCHEMA)


def install(store: ScheduleStore, now: Callable[[], datetime]) -> None:
    """Make every event ``store`` applies from now on also an outbox row (same transaction).

    Call it on the store the Feishu intake commits through, never on one that applies events
    from peers.
    """
    try:
        with store._lock:
            ensure_schema(store._db)
    except sqlite3.Error as exc:
        raise StoreError(f"schedule store {store.path}: cannot create the outbox: {exc}") from exc
    written = [0]

    def journal(db: sqlite3.Connection, results: list[tuple[RoomEvent, ApplyResult]]) -> None:
        now_ms = to_epoch_ms(now())
        rows = [(now_ms, json.dumps(event_to_json(event), ensure_ascii=False,
                                    separators=(",", ":")))
                for event, result in results if result.outcome is Outcome.APPLIED]
        if not rows:
            return
        db.executemany("INSERT INTO outbox (committed_ms, event) VALUES (?, ?)", rows)
        written[0] += len(rows)
        if written[0] >= PRUNE_EVERY_ROWS:  # bounded without a timer in the intake child
            written[0] = 0
            _prune(db, now_ms)

    store.journal = journal


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox row: this bridge's ``seq``, when it was committed, the event as JSON text."""

    seq: int
    committed_ms: int
    event: str


class Outbox:
    """Reads (and prunes) the outbox of a store; the node's side, on its own connection."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store
        try:
            with store._lock:
                ensure_schema(store._db)
        except sqlite3.Error as exc:
            raise StoreError(f"schedule store {store.path}: cannot create the outbox: {exc}"
                             ) from exc

    def after(self, seq: int, limit: int = 500) -> list[Row]:
        """Rows with a sequence number above ``seq``, oldest first, at most ``limit``."""
        try:
            with self.store._lock:
                rows = self.store._db.execute(
                    "SELECT seq, committed_ms, event FROM outbox WHERE seq > ? ORDER BY seq "
                    "LIMIT ?", (seq, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"schedule store {self.store.path}: {exc}") from exc
        return [Row(int(s), int(c), str(e)) for s, c, e in rows]

    def last_seq(self) -> int:
        """The newest sequence number ever given (0: none yet), pruned rows included."""
        try:
            with self.store._lock:
                row = self.store._db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        except sqlite3.Error:  # no sqlite_sequence before the first row
            return 0
        return int(row[0]) if row else 0

    def prune(self, now: datetime) -> int:
        """Remove rows older than :data:`OUTBOX_KEEP`; how many went."""
        try:
            with self.store._transaction() as db:
                return _prune(db, to_epoch_ms(now))
        except StoreError as exc:
            log.warning("cannot prune the replication outbox: %s", exc)
            return 0


def _prune(db: sqlite3.Connection, now_ms: int) -> int:
    cutoff = now_ms - int(OUTBOX_KEEP.total_seconds() * 1000)
    return int(db.execute("DELETE FROM outbox WHERE committed_ms < ?", (cutoff,)).rowcount)
