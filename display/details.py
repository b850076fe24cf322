"""Titles and organizer names: the privacy rule that decides what a sign may say, and the
cache of organizer names. Pure: no I/O, no clock (callers hand in ``now``).

The rule (README "Titles and organizers"): every detail is off unless ``[details]`` turns it on.
A booking whose free/busy entry carries no organizer is *private*: its title is never fetched and
every surface shows "Booked". For the others, the title and the organizer's name are shown when
their option is on and they are known; until then (or when a lookup failed) a sign says "Booked".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from display.config import DetailsConfig
from display.model import Booking, BookingDetails

#: Seconds a name found (or an id found to have none) is reused before it is asked for again.
NAME_HIT_TTL = 300.0
NAME_MISS_TTL = 60.0


@dataclass(frozen=True, slots=True)
class StoredDetails:
    """A row of the store's details table: what was fetched (or received) for one booking."""

    title: str | None = None
    organizer: str | None = None
    private: bool = False


def is_private(booking: Booking) -> bool:
    """True when free/busy gave ``booking`` no organizer: nothing about it is fetched or shown."""
    return not booking.organizer_open_id


def wants_title(booking: Booking, policy: DetailsConfig) -> bool:
    """True when ``booking``'s title may be fetched (its option on and not private)."""
    return policy.title and not is_private(booking)


def wants_organizer(booking: Booking, policy: DetailsConfig) -> bool:
    """True when the name of ``booking``'s organizer may be looked up."""
    return policy.organizer and not is_private(booking)


def shown_details(bookings: Iterable[Booking], stored: Mapping[str, StoredDetails],
                  policy: DetailsConfig | None) -> dict[str, BookingDetails]:
    """What may be shown of each booking, by key.

    ``policy`` is the room's ``[details]`` on the node that holds the Feishu connection. On a
    panel agent it is ``None``: the agent shows what its bridge sent, which the bridge already
    limited to what its own config allows.
    """
    out: dict[str, BookingDetails] = {}
    for b in bookings:
        row = stored.get(b.key)
        if policy is None:
            if row is not None:
                out[b.key] = BookingDetails(row.title, row.organizer, row.private)
            continue
        if not policy.any:
            continue
        if is_private(b):
            out[b.key] = BookingDetails(private=True)
            continue
        out[b.key] = BookingDetails(
            title=row.title if row is not None and policy.title else None,
            organizer=row.organizer if row is not None and policy.organizer else None)
    return out


#: The store's meta key of a room's name and place as its source says (an agent: its bridge's
#: schedule; a bridge with ``[feishu] room_names``: Feishu's directory).
def room_meta_key(open_id: str) -> str:
    """Meta key under which ``open_id``'s published name and path are kept."""
    return f"room:{open_id}"


def encode_room_meta(name: str, path: str | None) -> str:
    """The meta value for :func:`room_meta_key`."""
    return json.dumps({"name": name, "path": path}, ensure_ascii=False, sort_keys=True)


def decode_room_meta(value: str | None) -> tuple[str | None, str | None]:
    """``(name, path)`` from a meta value; ``(None, None)`` when absent or unreadable."""
    try:
        doc = json.loads(value) if value else None
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    name, path = doc.get("name"), doc.get("path")
    return (name if isinstance(name, str) and name else None,
            path if isinstance(path, str) and path else None)


class NameCache:
    """Organizer names by open id, with their own lifetimes for hits and misses.

    Open ids are per app, so one cache serves one app. Not thread-safe: one fetcher owns it.
    """

    def __init__(self, hit_ttl: float = NAME_HIT_TTL, miss_ttl: float = NAME_MISS_TTL) -> None:
        self.hit_ttl = hit_ttl
        self.miss_ttl = miss_ttl
        self._names: dict[str, tuple[str | None, float]] = {}  # id -> (name, expires)

    def lookup(self, open_id: str, now: float) -> tuple[bool, str | None]:
        """``(known, name)``: ``known`` False when it must be asked for (absent or expired)."""
        entry = self._names.get(open_id)
        if entry is None or entry[1] <= now:
            self._names.pop(open_id, None)
            return False, None
        return True, entry[0]

    def put(self, open_id: str, name: str | None, now: float) -> None:
        """Remember ``name`` (``None``: the id has no name we may see) from ``now``."""
        self._names[open_id] = (name, now + (self.hit_ttl if name else self.miss_ttl))

    def __len__(self) -> int:
        return len(self._names)
