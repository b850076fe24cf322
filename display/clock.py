"""The one module that reads the wall clock.

Everything else is handed a :class:`Clock` (or simply ``now``), so tests and benchmarks can move
time by hand with :class:`display.testing.clock.FakeClock`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: Tests step the wall clock of whole processes (a node and its Feishu intake child) without
#: changing the machine's: when this variable names a file, :class:`SystemClock` adds the
#: seconds written in it (e.g. ``86400``; read again whenever the file changes) to the wall
#: clock; the monotonic clock is untouched, as in a real step. Unset in production.
OFFSET_ENV = "ROOM_DISPLAY_TEST_CLOCK_OFFSET_FILE"


class Clock(Protocol):
    """Source of wall-clock and monotonic time."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps with the wall clock."""
        ...


class SystemClock:
    """The real clocks of the machine (see :data:`OFFSET_ENV` for tests)."""

    def __init__(self) -> None:
        self._offset_file = os.environ.get(OFFSET_ENV) or None
        self._offset = 0.0
        self._offset_stamp = -1

    def now(self) -> datetime:
        now = datetime.now(UTC)
        if self._offset_file is None:
            return now
        return now + timedelta(seconds=self._offset_seconds())

    def _offset_seconds(self) -> float:
        path = self._offset_file
        try:
            if path is not None and os.stat(path).st_mtime_ns != self._offset_stamp:
                with open(path, encoding="ascii") as f:
                    self._offset = float(f.read().strip() or 0)
                self._offset_stamp = os.stat(path).st_mtime_ns
        except (OSError, ValueError):
            pass  # missing or half-written: keep the last offset
        return self._offset

    def monotonic(self) -> float:
        return time.monotonic()


def from_epoch_ms(ms: int) -> datetime:
    """UTC datetime from milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return round(when.timestamp() * 1000)
