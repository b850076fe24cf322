"""Skip what is unchanged, said once: the node per room, and every device towards its far end.

A *key* says everything that decides what the far end shows: the node's room content (minus the
instants that move every second), a serial board's session and LED output, an e-ink image's
digest, an MQTT payload's digest. Whoever delivers asks :meth:`Unchanged.same` first and
:meth:`Unchanged.record` after the far end took it; :meth:`Unchanged.forget` when the far end may
have lost it (a new board session is part of the key instead; a broker reconnect forgets).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Generic, TypeVar

K = TypeVar("K")


class Unchanged(Generic[K]):
    """The key of what was last delivered (and when); ``max_age`` forces a redelivery."""

    __slots__ = ("_at", "_key", "max_age")  # one a room: 20,000 on a large bridge

    def __init__(self, max_age: timedelta | None = None) -> None:
        self.max_age = max_age
        self._key: K | None = None
        self._at: datetime | None = None

    @property
    def last(self) -> K | None:
        """The key last recorded, or None since the start or a :meth:`forget`."""
        return self._key

    @property
    def recorded_at(self) -> datetime | None:
        """When the key last recorded was delivered (None without one, or recorded undated)."""
        return self._at

    def same(self, key: K, now: datetime | None = None) -> bool:
        """True when ``key`` was delivered last (and, with ``max_age``, recently): skip it."""
        if self._key is None or self._key != key:
            return False
        if self.max_age is None:
            return True
        return now is not None and self._at is not None and now - self._at < self.max_age

    def record(self, key: K, now: datetime | None = None) -> None:
        """The far end now has ``key``."""
        self._key = key
        self._at = now

    def forget(self) -> None:
        """The far end may have lost what it had: deliver the next key whatever it is."""
        self._key = None
        self._at = None
