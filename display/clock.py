"""The one module that reads the wall clock.

Everything else is handed a :class:`Clock` (or simply ``now``), so tests and benchmarks can move
time by hand with :class:`display.testing.clock.FakeClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
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


def from_epoch_ms(ms: int) -> datetime:
    """UTC datetime from milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return round(when.timestamp() * 1000)
