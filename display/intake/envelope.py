"""Validate Feishu's v1 ("p1") envelope of the third-party room event family.

Liberal in what it takes, strict about what it cannot interpret. A rejected event gets one
:class:`~display.errors.EventError` naming the field (``event.start.time_stamp: ...``) and
nothing of it is applied. Unknown ``event.type`` values raise :class:`UnknownEventType` so
callers can acknowledge and ignore them instead of making Feishu retry.

What is taken although the documentation says otherwise, because it can still be interpreted:

- ``event_id`` in any form: Feishu's own published sample has ``"d123a331-..."`` where the field
  table says ``{uid}_{original_time}``. The identity is ``(uid, original_time)``, derived here;
  ``event_id`` is kept as sent (informative) and a mismatch is logged once, at debug level.
- a ``deleted`` event without rooms, or with an empty list: it still names a booking, which is
  removed from every room that has it; its times are not needed either.
- a ``created``/``updated`` naming no room: a version in no room (it leaves the rooms it was in).
- a malformed ``organizer``: informative only, dropped.
- ``original_time`` in milliseconds: normalised to seconds, so both spellings are one booking.

Numbers are ints or strings of ASCII digits only (``"²"`` or fullwidth digits are refused with
a clear error: ``str.isdigit`` would take them and ``int`` would then fail or misread them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from display.clock import from_epoch_ms
from display.errors import EventError
from display.model import MAX_MS, MIN_MS, EventKind, RoomEvent, booking_key

log = logging.getLogger(__name__)

#: Timestamps above this are milliseconds, below it seconds (Feishu: "parse by magnitude").
MS_THRESHOLD = 100_000_000_000
MAX_ROOMS = 200
MAX_ID = 256
_MAX_DIGITS = 20
_ASCII_DIGITS = frozenset("0123456789")
_mismatch_logged = False


class UnknownEventType(EventError):
    """A well-formed envelope of an event type we do not handle."""


def parse_envelope(data: Any) -> RoomEvent:
    """Validate one v1 envelope (already JSON-decoded) into a :class:`RoomEvent`."""
    if not isinstance(data, Mapping):
        raise EventError("envelope", f"must be a JSON object, got {_kind(data)}")
    uuid = _text(data, "uuid", "uuid")
    if data.get("type") != "event_callback":
        raise EventError("type", f"must be 'event_callback', got {data.get('type')!r:.60}")
    event = data.get("event")
    if not isinstance(event, Mapping):
        raise EventError("event", f"must be an object, got {_kind(event)}")
    raw_kind = event.get("type")
    if not isinstance(raw_kind, str):
        raise EventError("event.type", f"must be a string, got {_kind(raw_kind)}")
    try:
        kind = EventKind(raw_kind)
    except ValueError:
        raise UnknownEventType("event.type", f"unknown event type {raw_kind!r:.80}") from None

    uid = _text(event, "uid", "event.uid")
    original_time = _original_time(event.get("original_time", 0))
    key = booking_key(uid, original_time)
    event_id = _event_id(event.get("event_id"), key)
    event_time_ms = _epoch_ms(event.get("event_time"), "event.event_time")
    deleted = kind is EventKind.DELETED
    if deleted and (event.get("start") is None or event.get("end") is None):
        # A delete needs no times; the tombstone is kept from when the event happened.
        start = end = from_epoch_ms(event_time_ms)
    else:
        start = _time_field(event, "start")
        end = _time_field(event, "end")
        if start >= end and not deleted:
            raise EventError("event.end", f"must be after start ({start.isoformat()} >= "
                             f"{end.isoformat()})")
    rooms = _rooms(event.get("meeting_rooms"))
    return RoomEvent(
        uuid=uuid, kind=kind, event_id=event_id, uid=uid, original_time=original_time,
        event_time_ms=event_time_ms, start=start, end=max(start, end), room_ids=rooms,
        organizer_open_id=_organizer(event.get("organizer")),
    )


def _event_id(value: Any, key: str) -> str:
    """Feishu's ``event_id`` as sent, or the key when missing; never a reason to refuse."""
    global _mismatch_logged
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        return key
    if value != key and not _mismatch_logged:
        _mismatch_logged = True  # every event of such a tenant would repeat it
        log.debug("event_id %r is not {uid}_{original_time} (%r): identity taken from uid and "
                  "original_time (logged once)", value, key)
    return value


def _original_time(value: Any) -> int:
    number = 0 if value is None else _integer(value, "event.original_time")
    return checked_original_time(number // 1000 if number > MS_THRESHOLD else number,
                                 "event.original_time")


def checked_original_time(seconds: int, name: str) -> int:
    """``seconds`` if it is 0 (a one-off booking or a whole series) or an instant within the
    store's bound (:data:`~display.model.MIN_MS` .. :data:`~display.model.MAX_MS`): a larger
    value would overflow the store's integer column at commit, failing the whole batch."""
    if seconds != 0 and not MIN_MS // 1000 <= seconds <= MAX_MS // 1000:
        raise EventError(name, f"{seconds} is neither 0 nor a plausible timestamp "
                         "(2000-2100)")
    return seconds


def _organizer(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    open_id = value.get("open_id")
    return open_id if isinstance(open_id, str) and open_id and len(open_id) <= MAX_ID else None


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
    """An int, or a string of ASCII digits (Feishu sends both)."""
    return ascii_integer(value, name)


def ascii_integer(value: Any, name: str) -> int:
    """An int, or a string of at most 20 ASCII digits; :class:`EventError` naming ``name``.

    ``str.isdigit`` is not enough: it takes ``"²"`` (then ``int`` raises) and fullwidth or
    Arabic-Indic digits (then ``int`` reads a number nobody wrote).
    """
    if isinstance(value, bool):
        raise EventError(name, "must be an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text and len(text) <= _MAX_DIGITS and set(text) <= _ASCII_DIGITS:
            return int(text)
        if text and len(text) <= _MAX_DIGITS and all(c.isdigit() for c in text):
            raise EventError(name, f"must use ASCII digits 0-9, got {value!r:.40}")
    raise EventError(name, f"must be an integer or a string of ASCII digits, got {value!r:.40}")


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
    """The rooms a version names; none is a version in no room (it leaves every room)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EventError("event.meeting_rooms", f"must be a list, got {_kind(value)}")
    if len(value) > MAX_ROOMS:
        raise EventError("event.meeting_rooms", f"lists more than {MAX_ROOMS} rooms")
    rooms: list[str] = []
    for i, room in enumerate(value):
        if not isinstance(room, Mapping):
            raise EventError(f"event.meeting_rooms[{i}]", f"must be an object, got {_kind(room)}")
        rooms.append(_text(room, "open_id", f"event.meeting_rooms[{i}].open_id"))
    return tuple(dict.fromkeys(rooms))  # keep order, drop repeats
