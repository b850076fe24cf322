"""What check-in did to each booking, durable in the schedule database (table ``checkins``).

One row per booking slot ``(room, key, start)`` once it is in progress in a room with check-in
on. Written by the node alone (its own connection to the store's file; WAL makes that safe),
read back into memory at start. A row left ``sending`` by a node that died while asking Feishu
becomes ``unknown`` at the next start: what happened in Feishu cannot be known, so it is never
sent again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from display.clock import from_epoch_ms, to_epoch_ms
from display.errors import StoreError

log = logging.getLogger(__name__)

KEEP = timedelta(days=2)  # rows of bookings that ended longer ago are pruned

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkins (
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (room_id, key, start_ms)
) WITHOUT ROWID;
"""


class Step(StrEnum):
    """Where one booking stands."""

    WAITING = "waiting"  # in its window
    CHECKED_IN = "checked_in"  # someone pressed, or back-to-back with the same organizer
    DRY_RUN = "dry_run"  # would have been released (mode dry-run)
    SENDING = "sending"  # the release (or end) is being asked of Feishu right now
    RELEASED = "released"  # Feishu took NOT_CHECK_IN
    ENDED = "ended"  # Feishu took ENDED_BEFORE_DUE
    REFUSED = "refused"  # Feishu answered an error: shown, not retried
    UNKNOWN = "unknown"  # no answer, or the node died while asking: shown, never retried
    GONE = "gone"  # free/busy no longer listed it: nothing sent
    SERIES = "series"  # an occurrence of a recurring series: never released automatically
    FAILED = "failed"  # could not ask (free/busy or token unreachable): nothing sent

    @property
    def final(self) -> bool:
        """No release will be attempted for it (any more)."""
        return self not in (Step.WAITING,)


#: What each outcome of the Feishu helper becomes.
OUTCOMES = {"refused": Step.REFUSED, "unknown": Step.UNKNOWN, "gone": Step.GONE,
            "series": Step.SERIES, "failed": Step.FAILED}

Slot = tuple[str, str, int]  # room, key, start_ms


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the ledger."""

    room_id: str
    key: str
    start: datetime
    end: datetime
    step: Step
    first_seen: datetime
    at: datetime
    source: str = ""
    detail: str = ""

    @property
    def slot(self) -> Slot:
        return self.room_id, self.key, to_epoch_ms(self.start)


class Ledger:
    """The ``checkins`` table, cached in memory; thread-safe; a context manager."""

    def __init__(self, path: Path | str, now: datetime) -> None:
        try:
            self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            interrupted = self._db.execute(
                "UPDATE checkins SET state = ?, detail = ? WHERE state = ? RETURNING key",
                (Step.UNKNOWN.value, "the node stopped while asking Feishu: not sent again",
                 Step.SENDING.value)).fetchall()
            rows = self._db.execute(
                "SELECT room_id, key, start_ms, end_ms, state, first_seen_ms, at_ms, source, "
                "detail FROM checkins WHERE end_ms > ?",
                (to_epoch_ms(now - KEEP),)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"check-in ledger {path}: {exc}") from exc
        for (key,) in interrupted:
            log.warning("check-in: the release of %s was interrupted; its outcome is unknown and "
                        "it is not sent again", key)
        self._lock = threading.Lock()
        self._rows: dict[Slot, Record] = {}
        for r in rows:
            rec = Record(r[0], r[1], from_epoch_ms(r[2]), from_epoch_ms(r[3]), Step(r[4]),
                         from_epoch_ms(r[5]), from_epoch_ms(r[6]), r[7], r[8])
            self._rows[rec.slot] = rec

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, slot: Slot) -> Record | None:
        with self._lock:
            return self._rows.get(slot)

    def records(self, room_id: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self._rows.values() if room_id is None or r.room_id == room_id]

    def put(self, record: Record) -> Record:
        """Write ``record`` (durable when this returns) and cache it."""
        with self._lock:
            return self._put(record)

    def _put(self, record: Record) -> Record:
        """The write itself; the caller holds ``_lock``."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO checkins VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*record.slot, to_epoch_ms(record.end), record.step.value,
                 to_epoch_ms(record.first_seen), to_epoch_ms(record.at), record.source,
                 record.detail))
        except sqlite3.Error as exc:
            raise StoreError(f"check-in ledger: {exc}") from exc
        self._rows[record.slot] = record
        return record

    def advance(self, record: Record, step: Step, at: datetime, *, source: str | None = None,
                detail: str = "", expect: Step | None = None) -> Record | None:
        """Move ``record`` to ``step``; ``None`` (nothing written) when ``expect`` is given and
        the stored row is no longer in that step (another thread moved it first)."""
        with self._lock:
            current = self._rows.get(record.slot, record)
            if expect is not None and current.step is not expect:
                return None
            return self._put(replace(current, step=step, at=at, detail=detail,
                                     source=current.source if source is None else source))

    def prune(self, now: datetime) -> None:
        cutoff = now - KEEP
        with self._lock:
            try:
                self._db.execute("DELETE FROM checkins WHERE end_ms < ?", (to_epoch_ms(cutoff),))
            except sqlite3.Error as exc:
                log.warning("check-in ledger: cannot prune: %s", exc)
                return
            self._rows = {k: r for k, r in self._rows.items() if r.end >= cutoff}
