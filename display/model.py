"""Values shared by every layer: bookings, events, occupancy states and what a panel shows.

All are frozen dataclasses; all datetimes are timezone-aware and in UTC. Conversion to the room's
local time happens only when something is drawn or printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from display.errors import EventError

#: The one bound on booking times, for every way a booking enters (webhook, long connection,
#: replay, MQTT schedule, re-sync): 2000-01-01 .. 2100-01-01 UTC. Anything outside is a corrupt
#: value, not a booking, and would overflow date arithmetic further on (year 9999 + a day).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
#: The same bound in epoch milliseconds (Feishu's timestamps, the store's columns).
MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_800_000


def check_time(when: datetime, where: str) -> datetime:
    """``when`` if it is timezone-aware and within :data:`EARLIEST`..:data:`LATEST`.

    Raises :class:`~display.errors.EventError` naming ``where`` otherwise.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise EventError(where, f"{when.isoformat()} has no UTC offset")
    if not EARLIEST <= when <= LATEST:
        raise EventError(where, f"{when.isoformat()} is outside {EARLIEST.year}-{LATEST.year}")
    return when


def _check_span(start: datetime, end: datetime) -> None:
    check_time(start, "start")
    check_time(end, "end")


def booking_key(uid: str, original_time: int) -> str:
    """The identity of a booking: ``{uid}_{original_time}`` (``original_time`` in seconds)."""
    return f"{uid}_{original_time}"


class EventKind(StrEnum):
    """The three values of ``event.type`` in Feishu's third-party room event family."""

    CREATED = "third_party_meeting_room_event_created"
    UPDATED = "third_party_meeting_room_event_updated"
    DELETED = "third_party_meeting_room_event_deleted"


class State(StrEnum):
    """Occupancy of a room at an instant (README, "Occupancy")."""

    FREE = "free"
    SOON = "soon"
    BUSY = "busy"
    ENDING = "ending"

    @property
    def occupied(self) -> bool:
        """True while a meeting is in progress."""
        return self in (State.BUSY, State.ENDING)


@dataclass(frozen=True, slots=True)
class Booking:
    """One booking of one room: the half-open interval ``[start, end)``.

    Its identity is ``(uid, original_time)`` (:attr:`key`); an occurrence of a recurring series
    expanded by free/busy shares the series' key and is told apart by its ``start``.
    ``event_id`` is what Feishu called it (informative only).
    """

    event_id: str
    uid: str
    original_time: int
    start: datetime
    end: datetime
    organizer_open_id: str | None = None

    @property
    def key(self) -> str:
        """The identity ``{uid}_{original_time}`` versions and tombstones are kept under."""
        return booking_key(self.uid, self.original_time)

    def __post_init__(self) -> None:
        _check_span(self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        """The booking object of the ``status --json`` contract (UTC offsets)."""
        return {
            "event_id": self.event_id,
            "uid": self.uid,
            "original_time": self.original_time,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "organizer_open_id": self.organizer_open_id,
        }


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A validated Feishu event: one version of one booking, naming one or more rooms.

    ``event_time_ms`` orders versions of the same :attr:`key` (``uid``, ``original_time``);
    ``uuid`` identifies the delivery and is what duplicates share; ``event_id`` is what Feishu
    sent (informative: the published sample does not follow the documented format).
    ``original_time`` is in epoch seconds: 0 for a one-off booking or a whole series, else the
    original start of the one occurrence this event changes (an exception).
    """

    uuid: str
    kind: EventKind
    event_id: str
    uid: str
    original_time: int
    event_time_ms: int
    start: datetime
    end: datetime
    room_ids: tuple[str, ...]
    organizer_open_id: str | None = None

    @property
    def key(self) -> str:
        """The booking's identity, derived by us (never taken from ``event_id``)."""
        return booking_key(self.uid, self.original_time)

    def __post_init__(self) -> None:
        _check_span(self.start, self.end)

    def booking(self) -> Booking:
        """The booking this event describes (rooms apart)."""
        return Booking(
            event_id=self.event_id,
            uid=self.uid,
            original_time=self.original_time,
            start=self.start,
            end=self.end,
            organizer_open_id=self.organizer_open_id,
        )


@dataclass(frozen=True, slots=True)
class BookingDetails:
    """Who and what a booking is, as far as this node may show it (README "Titles and
    organizers"): each detail is off unless ``[details]`` turns it on.

    ``private``: free/busy gave the booking no organizer, so it is shown as "Booked" and its
    title is never asked for. ``title``/``organizer`` are ``None`` while unknown (not fetched
    yet, the lookup failed, or the detail is off).
    """

    title: str | None = None
    organizer: str | None = None
    private: bool = False

    def to_json(self) -> dict[str, Any]:
        """The members a booking object gains: only those with a value."""
        doc: dict[str, Any] = {}
        if self.private:
            doc["private"] = True
        if self.title is not None:
            doc["title"] = self.title
        if self.organizer is not None:
            doc["organizer"] = self.organizer
        return doc


@dataclass(frozen=True, slots=True)
class Occupancy:
    """What the schedule says about a room at ``at``: a pure function's answer.

    ``since``/``until`` bound the current *state* (``until`` is when it changes next); ``None``
    means unbounded within the schedule we know. ``current`` is the booking in progress, ``next``
    the upcoming bookings in start order.
    """

    at: datetime
    state: State
    since: datetime | None
    until: datetime | None
    current: Booking | None
    next: tuple[Booking, ...]
    today: tuple[Booking, ...] = ()


class CheckinState(StrEnum):
    """Where the booking in progress stands with check-in (:mod:`display.checkin`)."""

    WAITING = "waiting"  # in its window: a press keeps it, else it is released at release_at
    CHECKED_IN = "checked_in"
    RELEASED = "released"  # released (no-show) or ended early: the room is free


@dataclass(frozen=True, slots=True)
class CheckinView:
    """What a panel shows about check-in: the state and, while waiting, when the room is
    released (``release_at``); after a release, until when the room is free (``free_until``)."""

    state: CheckinState
    release_at: datetime | None = None
    free_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RoomView:
    """Everything a panel needs to draw one room: the renderers' only input.

    ``as_of`` is when the data was last vouched for (shown on a stale sign as "as of HH:MM");
    ``timezone`` is an IANA name used for display only. ``closed_until`` is set in quiet hours
    (outside the room's opening hours, no booking in progress or about to start): when the room
    opens again.
    """

    open_id: str
    name: str
    occupancy: Occupancy
    stale: bool
    as_of: datetime
    timezone: str
    language: str = "en"
    closed_until: datetime | None = None
    #: What may be shown of each booking, by :attr:`Booking.key`; empty with details off.
    details: Mapping[str, BookingDetails] = field(default_factory=dict)
    #: Where the room is in Feishu's directory ("Building A / 5F"), when known.
    path: str | None = None
    checkin: CheckinView | None = None  # None: check-in is off for this room or nothing is due

    def detail(self, booking: Booking | None) -> BookingDetails | None:
        """The details shown for ``booking``, if any are on."""
        return None if booking is None else self.details.get(booking.key)

    @property
    def closed(self) -> bool:
        """True in quiet hours."""
        return self.closed_until is not None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A device's health as ``status`` reports it."""

    id: str
    kind: str
    url: str
    online: bool
    last_update: datetime | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The device object of the ``status --json`` contract."""
        return {
            "id": self.id,
            "kind": self.kind,
            "url": self.url,
            "online": self.online,
            "last_update": self.last_update.isoformat() if self.last_update else None,
            "error": self.error,
        }
