"""The one module that reads the wall clock.

Everything else is handed a :class:`Clock` (or simply ``now``), so tests and the demo can move
time by hand with :class:`FakeClock`, the way gpiozero ships its ``MockFactory`` in the package.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock and monotonic time."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps with the wall clock."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock moved by hand; thread-safe so a test can advance it while a node runs."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, delta: timedelta) -> None:
        """Move both clocks forward by ``delta``."""
        with self._lock:
            self._now += delta
            self._mono += delta.total_seconds()

    def set(self, when: datetime) -> None:
        """Step the wall clock (as NTP might); the monotonic clock is untouched."""
        with self._lock:
            self._now = when.astimezone(UTC)


def from_epoch_ms(ms: int) -> datetime:
    """UTC datetime from milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return round(when.timestamp() * 1000)
