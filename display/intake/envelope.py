"""Validate Feishu's v1 ("p1") envelope of the third-party room event family.

The parser trusts nothing: every field is type-checked and a rejected event gets one
:class:`~display.errors.EventError` naming the field (``event.start.time_stamp: ...``).
Unknown ``event.type`` values raise :class:`UnknownEventType` so callers can acknowledge and
ignore them instead of making Feishu retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from display.clock import from_epoch_ms
from display.errors import EventError
from display.model import MAX_MS, MIN_MS, EventKind, RoomEvent

#: Timestamps above this are milliseconds, below it seconds (FEISHU.md: "parse by magnitude").
MS_THRESHOLD = 100_000_000_000
MAX_ROOMS = 200
MAX_ID = 256


class UnknownEventType(EventError):
    """A well-formed envelope of an event type we do not handle."""


def parse_envelope(data: Any) -> RoomEvent:
    """Validate one v1 envelope (already JSON-decoded) into a :class:`RoomEvent`."""
    if not isinstance(data, Mapping):
        raise EventError("envelope", f"must be a JSON object, got {_kind(data)}")
    uuid = _text(data, "uuid", "uuid")
    if data.get("type") != "event_callback":
        raise EventError("type", f"must be 'event_callback', got {data.get('type')!r}")
    event = data.get("event")
    if not isinstance(event, Mapping):
        raise EventError("event", f"must be an object, got {_kind(event)}")
    raw_kind = event.get("type")
    if not isinstance(raw_kind, str):
        raise EventError("event.type", f"must be a string, got {_kind(raw_kind)}")
    try:
        kind = EventKind(raw_kind)
    except ValueError:
        raise UnknownEventType("event.type", f"unknown event type {raw_kind!r}") from None

    uid = _text(event, "uid", "event.uid")
    original_time = _integer(event.get("original_time", 0), "event.original_time")
    if original_time < 0:
        raise EventError("event.original_time", f"must not be negative, got {original_time}")
    expected_id = f"{uid}_{original_time}"
    event_id = event.get("event_id", expected_id)
    if event_id != expected_id:
        raise EventError("event.event_id",
                         f"{event_id!r} does not match uid and original_time ({expected_id!r})")
    event_time_ms = _epoch_ms(event.get("event_time"), "event.event_time")
    start = _time_field(event, "start")
    end = _time_field(event, "end")
    if start >= end:
        raise EventError("event.end", f"must be after start ({start.isoformat()} >= "
                         f"{end.isoformat()})")
    rooms = _rooms(event.get("meeting_rooms"))
    organizer = event.get("organizer")
    organizer_open_id: str | None = None
    if organizer is not None:
        if not isinstance(organizer, Mapping):
            raise EventError("event.organizer", f"must be an object, got {_kind(organizer)}")
        value = organizer.get("open_id")
        if value is not None and not isinstance(value, str):
            raise EventError("event.organizer.open_id", f"must be a string, got {_kind(value)}")
        organizer_open_id = value or None
    return RoomEvent(
        uuid=uuid, kind=kind, event_id=expected_id, uid=uid, original_time=original_time,
        event_time_ms=event_time_ms, start=start, end=end, room_ids=rooms,
        organizer_open_id=organizer_open_id,
    )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(data: Mapping[str, Any], key: str, name: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EventError(name, f"must be a non-empty string, got {_kind(value)}")
    if len(value) > MAX_ID:
        raise EventError(name, f"is longer than {MAX_ID} characters")
    return value


def _integer(value: Any, name: str) -> int:
    """An int, or a string of digits (Feishu sends both)."""
    if isinstance(value, bool):
        raise EventError(name, "must be an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value) <= 20:
        return int(value.strip())
    raise EventError(name, f"must be an integer or a string of digits, got {value!r:.40}")


def _epoch_ms(value: Any, name: str) -> int:
    """Epoch seconds or milliseconds (by magnitude) as milliseconds, range-checked."""
    number = _integer(value, name)
    ms = number if number > MS_THRESHOLD else number * 1000
    if not MIN_MS <= ms <= MAX_MS:
        raise EventError(name, f"{number} is not a plausible timestamp")
    return ms


def _time_field(event: Mapping[str, Any], key: str) -> datetime:
    value = event.get(key)
    if not isinstance(value, Mapping):
        raise EventError(f"event.{key}", f"must be an object with time_stamp, got {_kind(value)}")
    return from_epoch_ms(_epoch_ms(value.get("time_stamp"), f"event.{key}.time_stamp"))


def _rooms(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise EventError("event.meeting_rooms", "must be a non-empty list")
    if len(value) > MAX_ROOMS:
        raise EventError("event.meeting_rooms", f"lists more than {MAX_ROOMS} rooms")
    rooms: list[str] = []
    for i, room in enumerate(value):
        if not isinstance(room, Mapping):
            raise EventError(f"event.meeting_rooms[{i}]", f"must be an object, got {_kind(room)}")
        rooms.append(_text(room, "open_id", f"event.meeting_rooms[{i}].open_id"))
    return tuple(dict.fromkeys(rooms))  # keep order, drop repeats
