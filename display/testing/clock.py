"""A clock moved by hand, for tests and benchmarks (the real one is :mod:`display.clock`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


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
