"""When can a node vouch for its data? Tracks its links and decides ``stale``.

A node is *stale* (README) when a link it depends on (the Feishu connection on a bridge, the
broker and the bridge on a panel agent) has been down for ``stale_after`` with nothing else
vouching for the data meanwhile, or while the wall clock is not known to be synchronised (a Pi
has no RTC). A successful re-sync from Feishu's free/busy API vouches for the Feishu link's data
(:meth:`Freshness.vouch`): "Feishu link down AND no successful re-sync for stale_after".
``as_of`` is the last instant the data was vouched for: shown on a stale sign as "as of HH:MM".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class _Link:
    up: bool
    since: datetime  # when it last changed state
    error: str | None = None
    vouched: datetime | None = None  # the newest proof, other than the link, that data is fresh

    @property
    def fresh_at(self) -> datetime:
        """The last instant this link's data was known good (while it is down)."""
        return max(self.since, self.vouched) if self.vouched is not None else self.since


class Freshness:
    """Link states and the stale rule; thread-safe (links change on intake threads)."""

    def __init__(self, stale_after: timedelta,
                 clock_synced: Callable[[], bool] = lambda: True) -> None:
        self.stale_after = stale_after
        self._clock_synced = clock_synced
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()

    def expect(self, name: str, down_since: datetime) -> None:
        """Declare a link the data depends on, down since ``down_since`` until it reports."""
        with self._lock:
            self._links.setdefault(name, _Link(False, down_since))

    def set(self, name: str, up: bool, now: datetime, error: str | None = None) -> bool:
        """Record a link's state; returns True when that changed anything."""
        with self._lock:
            link = self._links.get(name)
            if link is not None and link.up == up and link.error == error:
                return False
            if link is None or link.up != up:
                self._links[name] = _Link(up, now, error)
            else:
                link.error = error
            return True

    def vouch(self, name: str, now: datetime) -> None:
        """The data behind link ``name`` was confirmed at ``now`` by other means (a re-sync).

        A down link then turns stale only ``stale_after`` after the newest such proof.
        Unknown links are ignored: nothing depends on them.
        """
        with self._lock:
            link = self._links.get(name)
            if link is not None and (link.vouched is None or now > link.vouched):
                link.vouched = now

    def clock_ok(self) -> bool:
        return self._clock_synced()

    def stale(self, now: datetime) -> bool:
        if not self._clock_synced():
            return True
        with self._lock:
            return any(not link.up and now - link.fresh_at >= self.stale_after
                       for link in self._links.values())

    def as_of(self, now: datetime) -> datetime:
        """``now`` while every link is up, else the oldest instant a down link was vouched for
        (its outage began, or a re-sync confirmed its data later)."""
        with self._lock:
            down = [link.fresh_at for link in self._links.values() if not link.up]
        return min(down) if down else now

    def next_change(self, now: datetime) -> datetime | None:
        """When a down link will turn the node stale, if that is still ahead."""
        with self._lock:
            times = [link.fresh_at + self.stale_after for link in self._links.values()
                     if not link.up and link.fresh_at + self.stale_after > now]
        return min(times) if times else None

    def links(self) -> dict[str, dict[str, object]]:
        """Each link's state, for ``status``."""
        with self._lock:
            return {name: {"up": link.up, "since": link.since.isoformat(), "error": link.error,
                           "vouched": link.vouched.isoformat() if link.vouched else None}
                    for name, link in self._links.items()}


