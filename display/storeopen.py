"""Open the schedule store the way a node must: whatever is on disk, the node starts.

- an unusable state directory (a file, a read-only filesystem, under ``/proc``) is one
  :class:`~display.errors.StoreError` line naming ``[node] state_dir``;
- a corrupted ``schedule.db`` ("file is not a database", a failed integrity check) is moved aside,
  kept for inspection, and the node starts with an empty store that re-sync refills;
- a stored booking the node cannot use (a time outside :data:`display.model.EARLIEST` ..
  :data:`display.model.LATEST`, written by an older version) is skipped: removed from the
  schedule, logged once, counted in ``status``;
- a store that can be read but not written (disk full at start) is opened as a read-only
  snapshot; the node shows it as stale and keeps retrying the real file.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from display.errors import StoreError
from display.model import MAX_MS, MIN_MS, Booking, RoomEvent
from display.store import ApplyResult, ScheduleStore

log = logging.getLogger(__name__)

_SIDECARS = ("-wal", "-shm")


@dataclass(frozen=True)
class StoreReport:
    """What opening the store had to do; ``node.store`` in ``status``."""

    path: Path
    moved_aside: Path | None = None
    corrupt_reason: str | None = None
    unusable_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``node.store`` object of ``status --json``."""
        return {"path": str(self.path),
                "moved_aside": str(self.moved_aside) if self.moved_aside else None,
                "corrupt_reason": self.corrupt_reason,
                "unusable_rows": self.unusable_rows}


class ResilientStore(ScheduleStore):
    """A :class:`ScheduleStore` whose write failures never end the node.

    Opened as a read-only snapshot (:meth:`snapshot`) when the file can be read but not
    written (disk full at start); :meth:`retry` then keeps trying the real file and, once it can
    be written, switches to it in place, so every holder of this object follows.
    ``on_writable(ok, error)`` is told each change (the node shows stale while writes fail).
    """

    real_path: Path | None = None
    write_error: str | None = None
    on_writable: Callable[[bool, str | None], None] | None = None

    @classmethod
    def snapshot(cls, path: Path, error: str) -> ResilientStore:
        """An in-memory copy of the database at ``path``, read without locks or WAL files
        (``immutable``: nothing may be written next to it)."""
        store = cls(":memory:")
        try:
            source = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                source.backup(store._db)
            finally:
                source.close()
        except sqlite3.Error as exc:
            log.error("cannot read %s either (%s): starting with an empty schedule", path, exc)
        store.real_path = path
        store.write_error = error
        return store

    @classmethod
    def unopened(cls, path: Path, error: str) -> ResilientStore:
        """An empty stand-in for the store at ``path``, which cannot be opened now (disk full at
        start): every write raises :class:`~display.errors.StoreError` (the Feishu intake
        answers 503, Feishu retries) and first tries the real file again, switching to it once
        it opens (:meth:`retry`)."""
        store = cls(":memory:")
        store.real_path = path
        store.write_error = error
        return store

    def apply_many(self, events: Sequence[RoomEvent], received: datetime) -> list[ApplyResult]:
        self._writable()
        return super().apply_many(events, received)

    def resync_room(self, room_id: str, window: tuple[datetime, datetime],
                    bookings: Iterable[Booking], requested_at: datetime,
                    received: datetime) -> bool:
        self._writable()
        return super().resync_room(room_id, window, bookings, requested_at, received)

    def set_meta(self, key: str, value: str) -> None:
        self._writable()
        super().set_meta(key, value)

    def _writable(self) -> None:
        """Raise :class:`StoreError` unless writes reach the real file (a snapshot's or an
        unopened store's would be lost); tries to switch to the real file first."""
        if self.real_path is not None and not self.retry():
            raise StoreError(f"schedule store {self.real_path} cannot be written: "
                             f"{self.write_error}")

    def probe(self) -> bool:
        """Write one small row; True when the store takes writes (the retry's test)."""
        try:
            self.set_meta("written_at", datetime.now(UTC).isoformat())
        except StoreError as exc:
            self._failed(str(exc))
            return False
        if self.real_path is None:
            self._recovered()
        return self.real_path is None

    def retry(self) -> bool:
        """Try the real file again; switch to it when it opens and takes a write."""
        if self.real_path is None:
            return self.probe()
        try:
            fresh = ScheduleStore(self.real_path)
        except StoreError as exc:
            self._failed(str(exc))
            return False
        try:
            fresh.set_meta("written_at", datetime.now(UTC).isoformat())
        except StoreError as exc:
            fresh.close()
            self._failed(str(exc))
            return False
        with self._lock:
            old, self._db = self._db, fresh._db
            self.path, self.real_path = fresh.path, None
        old.close()
        self._recovered()
        return True

    def prune(self, now: datetime, elapsed: float) -> int:
        try:
            return super().prune(now, elapsed)
        except StoreError as exc:
            self._failed(str(exc))
            return 0

    def _failed(self, error: str) -> None:
        first = self.write_error is None
        self.write_error = error
        if first:
            log.error("cannot write the schedule store, showing what it holds as stale and "
                      "retrying: %s", error)
            if self.on_writable is not None:
                self.on_writable(False, error)

    def _recovered(self) -> None:
        if self.write_error is None:
            return
        self.write_error = None
        log.info("schedule store %s writable again", self.path)
        if self.on_writable is not None:
            self.on_writable(True, None)


def prepare_state_dir(directory: Path) -> None:
    """Create ``directory`` if needed and prove it is writable; one-line error otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".room-display-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # usable, only full: the store copes (read-only start)
            return
        reason = exc.strerror or type(exc).__name__
        raise StoreError(f"state directory {directory} is not usable ({reason}); set "
                         "[node] state_dir to a writable directory") from None


def open_store(path: Path) -> tuple[ResilientStore, StoreReport]:
    """Open (or create) the store at ``path``, recovering from what can be recovered."""
    prepare_state_dir(path.parent)
    moved: Path | None = None
    reason = corruption(path)
    if reason is not None:
        moved = move_aside(path, reason)
    unusable = skip_unusable_rows(path)
    try:
        store = ResilientStore(path)
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, sqlite3.OperationalError) and path.exists():
            # Readable but not writable (disk full, read-only remount): start with what it
            # holds; the node retries the real file (App) and shows stale meanwhile.
            return (ResilientStore.snapshot(path, str(exc)),
                    StoreReport(path, None, None, unusable))
        if moved is not None or not _is_corruption(cause):
            raise
        reason = str(cause)
        moved = move_aside(path, reason)
        store = ResilientStore(path)
    return store, StoreReport(path, moved, reason if moved else None, unusable)


def corruption(path: Path) -> str | None:
    """Why ``path`` is not a usable SQLite database, or None (also None when it is missing or
    merely busy: only damage counts)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(str(path), timeout=10)
    except sqlite3.Error as exc:
        return str(exc) if _is_corruption(exc) else None
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        return str(exc) if _is_corruption(exc) else None
    finally:
        db.close()
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    return None if verdict == "ok" else f"integrity check: {verdict}"


def _is_corruption(exc: BaseException | None) -> bool:
    # OperationalError is "locked", "disk is full", "readonly": the file itself is fine.
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def move_aside(path: Path, reason: str) -> Path:
    """Rename the damaged database (and its WAL files) to ``NAME.corrupt-TIMESTAMP``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, target)
        for suffix in _SIDECARS:
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
    except OSError as exc:
        raise StoreError(f"schedule store {path} is corrupt ({reason}) and cannot be moved "
                         f"aside ({exc.strerror}); move it away by hand") from None
    log.error("schedule store %s is corrupt (%s): moved it to %s and starting with an empty "
              "store; re-sync refills it", path, reason, target)
    return target


def skip_unusable_rows(path: Path) -> int:
    """Remove stored bookings whose times the node cannot use; log each once, return the count.

    Such rows come only from versions that did not bound dates on every way in; they would end
    every start with an overflow.
    """
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    except sqlite3.Error:
        return 0
    outside = ("NOT (start_ms BETWEEN ? AND ? AND end_ms BETWEEN ? AND ?)",
               (MIN_MS, MAX_MS, MIN_MS, MAX_MS))
    skipped = 0
    try:
        # ``slots`` is today's table; ``bookings`` the one before recurring series, still on
        # disk until the store migrates it (rows outside the bound must not reach that either).
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('slots', 'bookings')")]
        for table in tables:
            rows = db.execute(f"SELECT room_id, event_id, start_ms, end_ms FROM {table} WHERE "
                              + outside[0], outside[1]).fetchall()
            for room_id, event_id, start_ms, end_ms in rows:
                log.warning("skipping stored booking %s of room %s: its time (%s .. %s ms) is "
                            "outside 2000-2100", event_id, room_id, start_ms, end_ms)
            if rows:
                db.execute(f"DELETE FROM {table} WHERE " + outside[0], outside[1])
            skipped += len(rows)
    except sqlite3.Error as exc:
        log.error("cannot skip unusable bookings in %s: %s", path, exc)
        return 0
    finally:
        db.close()
    return skipped
