"""The schedule payload the bridge publishes and panel agents validate
(``{p}/v1/rooms/{open_id}/schedule``, retained UTF-8 JSON; documented in ``docs/MQTT.md``).

This module is the one place that builds and checks it, so the two ends cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from display import jsonbound
from display.errors import EventError
from display.model import MAX_MS, MIN_MS, Booking, BookingDetails, check_time

#: Larger schedule payloads are refused unread: a panel agent on a Pi Zero must not be made to
#: parse megabytes because of a misbehaving publisher.
MAX_SCHEDULE_BYTES = 256 * 1024
#: The bridge publishes at most this many bookings per room (the nearest ones), which keeps a
#: payload far below :data:`MAX_SCHEDULE_BYTES` (about 250 bytes per booking).
MAX_BOOKINGS = 500
#: The largest ``version`` taken: what SQLite and every consumer hold as a 64-bit integer.
MAX_VERSION = 2**63 - 1
#: Deepest JSON nesting read (a schedule nests 3 levels); deeper is refused before decoding.
SCHEDULE_DEPTH = 8


def valid_topic_level(value: str) -> bool:
    """True if ``value`` can be one level of a topic we publish (room ids, node names)."""
    return bool(value) and not any(c in value for c in "/+#\x00")


@dataclass(frozen=True)
class Schedule:
    """A validated schedule payload: one room's whole schedule as its bridge knows it."""

    open_id: str
    name: str
    version: int
    generated_at: datetime
    bridge: str
    bookings: tuple[Booking, ...]
    #: ``title``/``organizer``/``private`` of the bookings that carried any, by booking key.
    details: Mapping[str, BookingDetails] = field(default_factory=dict)
    #: Where the room is in Feishu's directory ("Building / Floor"), when the bridge knows.
    path: str | None = None

    #: Every bridge of the site (several share the work; any of them online keeps an agent's
    #: ``bridge`` link up). Empty from a bridge that does not say.
    bridges: tuple[str, ...] = ()


#: Bounds on the details a schedule may carry (a title is one line on a sign).
MAX_TITLE, MAX_ORGANIZER = 200, 100


def encode_schedule(open_id: str, name: str, bookings: Sequence[Booking], *, version: int,
                    generated_at: datetime, bridge: str,
                    details: Mapping[str, BookingDetails] | None = None,
                    path: str | None = None, bridges: Sequence[str] = ()) -> bytes:
    """The retained payload of ``{p}/v1/rooms/{open_id}/schedule`` (UTF-8 JSON).

    ``bookings`` should be the room's bookings in start order; only the first
    :data:`MAX_BOOKINGS` are kept (the caller passes those that have not ended). ``details``
    (what the bridge's ``[details]`` allows, by booking key) adds ``title``, ``organizer`` and
    ``private`` to the bookings they concern; nothing else of them is ever sent.
    """
    shown = details or {}

    def booking(b: Booking) -> dict[str, object]:
        doc = b.to_json()
        d = shown.get(b.key)
        if d is not None:
            doc.update(d.to_json())
        return doc

    doc: dict[str, Any] = {
        "open_id": open_id,
        "name": name,
        "version": version,
        "generated_at": generated_at.isoformat(),
        "bridge": bridge,
        "bookings": [booking(b) for b in bookings[:MAX_BOOKINGS]],
    }
    if path:
        doc["path"] = path
    if bridges:
        doc["bridges"] = list(bridges)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def decode_schedule(payload: bytes, expected_open_id: str) -> Schedule:
    """Validate a schedule payload received on ``expected_open_id``'s topic.

    Raises :class:`~display.errors.EventError` naming the offending field; nothing is applied
    by the caller then.
    """
    doc = jsonbound.loads(payload, what="payload", max_bytes=MAX_SCHEDULE_BYTES,
                          max_depth=SCHEDULE_DEPTH)
    if not isinstance(doc, dict):
        raise EventError("payload", f"must be a JSON object, got {type(doc).__name__}")
    open_id = _str(doc, "open_id")
    if open_id != expected_open_id:
        raise EventError("open_id", f"{open_id!r} arrived on the topic of {expected_open_id!r}")
    version = doc.get("version")
    if (not isinstance(version, int) or isinstance(version, bool)
            or not 0 <= version <= MAX_VERSION):
        raise EventError("version", f"must be an integer 0..{MAX_VERSION}, got {version!r:.40}")
    bookings = doc.get("bookings")
    if not isinstance(bookings, list):
        raise EventError("bookings", f"must be a list, got {type(bookings).__name__}")
    bridge = _str(doc, "bridge")
    if not valid_topic_level(bridge):
        raise EventError("bridge", f"{bridge!r} is not a node name")
    name = doc.get("name")
    parsed = tuple(_booking(b, f"bookings[{i}]") for i, b in enumerate(bookings))
    details = {}
    for i, (raw, b) in enumerate(zip(bookings, parsed, strict=True)):
        d = _details(raw, f"bookings[{i}]")
        if d is not None:
            details[b.key] = d
    bridges = doc.get("bridges", [])
    if not isinstance(bridges, list) or not all(isinstance(b, str) and valid_topic_level(b)
                                                for b in bridges):
        raise EventError("bridges", f"must be a list of node names, got {bridges!r}")
    return Schedule(
        open_id=open_id,
        name=name if isinstance(name, str) and name else open_id,
        version=version,
        generated_at=_time(doc, "generated_at", "generated_at"),
        bridge=bridge,
        bookings=parsed,
        details=details,
        path=_path(doc.get("path")),
        bridges=tuple(bridges),
    )


def _path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TITLE:
        raise EventError("path", f"must be a string of at most {MAX_TITLE} characters")
    return value or None


def _details(raw: dict[str, Any], where: str) -> BookingDetails | None:
    """The optional ``title``/``organizer``/``private`` of a booking object."""
    if not any(k in raw for k in ("title", "organizer", "private")):
        return None
    private = raw.get("private", False)
    if not isinstance(private, bool):
        raise EventError(f"{where}.private", f"must be true or false, got {private!r}")
    values: list[str | None] = []
    for key, bound in (("title", MAX_TITLE), ("organizer", MAX_ORGANIZER)):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > bound):
            raise EventError(f"{where}.{key}", f"must be a string of at most {bound} "
                             f"characters, got {str(value)[:40]!r}")
        values.append(value)
    return BookingDetails(title=values[0], organizer=values[1], private=private)


def _str(doc: dict[str, Any], key: str, where: str | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(where or key, f"must be a non-empty string, got {value!r}")
    return value


def _time(doc: dict[str, Any], key: str, where: str) -> datetime:
    raw = _str(doc, key, where)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise EventError(where, f"{raw!r} is not an ISO-8601 time") from None
    if value.tzinfo is None:
        raise EventError(where, f"{raw!r} has no UTC offset")
    return check_time(value, where)


def _booking(raw: Any, where: str) -> Booking:
    if not isinstance(raw, dict):
        raise EventError(where, f"must be an object, got {type(raw).__name__}")
    original = raw.get("original_time")
    if not isinstance(original, int) or isinstance(original, bool):
        raise EventError(f"{where}.original_time", f"must be an integer, got {original!r:.40}")
    if original != 0 and not MIN_MS // 1000 <= original <= MAX_MS // 1000:
        raise EventError(f"{where}.original_time", f"{original!r:.40} is neither 0 nor a "
                         "plausible timestamp (2000-2100)")
    organizer = raw.get("organizer_open_id")
    if organizer is not None and not isinstance(organizer, str):
        raise EventError(f"{where}.organizer_open_id", f"must be a string or null, "
                         f"got {organizer!r}")
    start = _time(raw, "start", f"{where}.start")
    end = _time(raw, "end", f"{where}.end")
    if end <= start:
        raise EventError(f"{where}.end", "must be after start")
    return Booking(event_id=_str(raw, "event_id", f"{where}.event_id"),
                   uid=_str(raw, "uid", f"{where}.uid"), original_time=original,
                   start=start.astimezone(UTC), end=end.astimezone(UTC),
                   organizer_open_id=organizer)


def bookings_window(bookings: Iterable[Booking]) -> list[Booking]:
    """The bookings worth publishing, in start order, capped at :data:`MAX_BOOKINGS`."""
    return sorted(bookings, key=lambda b: (b.start, b.event_id))[:MAX_BOOKINGS]
