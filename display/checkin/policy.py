"""The check-in rules, as pure functions of configuration, bookings and ``now``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from display.config import CheckinMode, Config, RoomConfig
from display.model import Booking


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """How check-in applies to one room."""

    mode: CheckinMode
    window: timedelta


def room_policy(config: Config, room: RoomConfig) -> RoomPolicy:
    """``[checkin]`` for ``room``: off outside the allow-list, else the room's override (if
    any) of the section's mode and window."""
    section = config.checkin
    minutes = room.checkin_window_minutes or section.window_minutes
    if section.rooms and room.open_id not in section.rooms:
        return RoomPolicy(CheckinMode.OFF, timedelta(minutes=minutes))
    return RoomPolicy(room.checkin or section.mode, timedelta(minutes=minutes))


def slot_id(booking: Booking) -> tuple[str, int]:
    """A booking's slot in a room: its key and start (a series' instances share the key)."""
    return booking.key, int(booking.start.timestamp())


def in_progress(bookings: Sequence[Booking], now: datetime) -> list[Booking]:
    """The bookings running at ``now``."""
    return [b for b in bookings if b.start <= now < b.end]


def back_to_back(booking: Booking, bookings: Sequence[Booking]) -> bool:
    """True when a booking by the same organizer ends exactly when ``booking`` starts: the
    people are already in the room, so it counts as checked in."""
    if not booking.organizer_open_id:
        return False
    return any(b.end == booking.start and b.organizer_open_id == booking.organizer_open_id
               and slot_id(b) != slot_id(booking) for b in bookings)


def is_series(booking: Booking, bookings: Sequence[Booking]) -> bool:
    """True when ``booking`` is known to belong to a recurring series: an exception
    (``original_time`` set) or one of several instances sharing its key."""
    if booking.original_time:
        return True
    return any(b.key == booking.key and b.start != booking.start for b in bookings)


def release_at(booking: Booking, first_seen: datetime, window: timedelta) -> datetime | None:
    """When ``booking`` is released if nobody checks in: ``window`` after its start, or after
    it was first seen when that was later; ``None`` when it ends before then."""
    due = max(booking.start, first_seen) + window
    return due if due < booking.end else None
