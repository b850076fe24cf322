"""Validate answers of ``GET /open-apis/meeting_room/freebusy/batch_get`` (re-sync).

The answer (``data``) maps each room id in ``free_busy`` to its busy slots in the window, each
with ``uid``, ``original_time``, ``start_time``/``end_time`` (RFC 3339, any offset) and
``organizer_info`` (``name``, ``open_id``); ``error_room_ids`` lists rooms Feishu could not
answer for, ``time_min``/``time_max`` echo the window. A free room may be missing from
``free_busy`` or map to ``[]``. A malformed answer raises :class:`~display.errors.EventError`
naming the field; nothing of it is applied then.

A recurring series comes expanded: its instances share ``uid`` and ``original_time = 0`` and
differ by start; an exception (a changed occurrence) has ``original_time`` = the occurrence's
original start in epoch seconds. Each becomes one :class:`~display.model.Booking`; the store
tells them apart by ``(uid, original_time, start)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from display.errors import EventError
from display.intake.envelope import MS_THRESHOLD, ascii_integer, checked_original_time
from display.model import Booking, check_time

MAX_ROOMS_PER_CALL = 20  # documented limit of batch_get


def chunks(rooms: Sequence[str], size: int = MAX_ROOMS_PER_CALL) -> Iterator[list[str]]:
    """Room ids in groups the API accepts."""
    for i in range(0, len(rooms), size):
        yield list(rooms[i:i + size])


def rfc3339(when: datetime) -> str:
    """The API's time format, e.g. ``2026-11-25T09:00:00+00:00``."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


def parse_freebusy(answer: Any, rooms: Sequence[str]) -> dict[str, list[Booking]]:
    """Bookings per requested room that Feishu answered for.

    A room missing from ``free_busy`` has none. A room in ``error_room_ids`` is left out of the
    result: its absence from ``free_busy`` says nothing, so it must not empty the room.
    """
    if not isinstance(answer, Mapping):
        raise EventError("body", "must be a JSON object")
    code = answer.get("code")
    if code != 0:
        raise EventError("code", f"API error {code!r}: {answer.get('msg')!r}")
    data = answer.get("data")
    if not isinstance(data, Mapping):
        raise EventError("data", "must be an object")
    free_busy = data.get("free_busy", {})
    if free_busy is None:
        free_busy = {}
    if not isinstance(free_busy, Mapping):
        raise EventError("data.free_busy", "must be an object keyed by room id")
    failed = data.get("error_room_ids") or []
    if not isinstance(failed, list) or not all(isinstance(r, str) for r in failed):
        raise EventError("data.error_room_ids", "must be a list of room ids")
    result: dict[str, list[Booking]] = {}
    for room in rooms:
        if room in failed:
            continue
        slots = free_busy.get(room, [])
        if slots is None:
            slots = []
        if not isinstance(slots, list):
            raise EventError(f"data.free_busy.{room}", "must be a list")
        result[room] = [_slot(s, f"data.free_busy.{room}[{i}]") for i, s in enumerate(slots)]
    return result


def _slot(slot: Any, name: str) -> Booking:
    if not isinstance(slot, Mapping):
        raise EventError(name, "must be an object")
    uid = slot.get("uid")
    if not isinstance(uid, str) or not uid:
        raise EventError(f"{name}.uid", "must be a non-empty string")
    raw = slot.get("original_time")
    original = 0 if raw is None else ascii_integer(raw, f"{name}.original_time")
    if original < 0:
        raise EventError(f"{name}.original_time", "must be a non-negative integer")
    if original > MS_THRESHOLD:  # milliseconds: the same occurrence as its event in seconds
        original //= 1000
    checked_original_time(original, f"{name}.original_time")
    start = _time(slot.get("start_time"), f"{name}.start_time")
    end = _time(slot.get("end_time"), f"{name}.end_time")
    if start >= end:
        raise EventError(f"{name}.end_time", "must be after start_time")
    organizer = slot.get("organizer_info")
    open_id = organizer.get("open_id") if isinstance(organizer, Mapping) else None
    return Booking(event_id=f"{uid}_{original}", uid=uid, original_time=original, start=start,
                   end=end, organizer_open_id=open_id if isinstance(open_id, str) else None)


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise EventError(name, "must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(name, f"{value!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise EventError(name, f"{value!r} has no UTC offset")
    return check_time(parsed.astimezone(UTC), name)
