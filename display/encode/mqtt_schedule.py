"""The schedule payload the bridge publishes and panel agents validate
(``{p}/v1/rooms/{open_id}/schedule``, retained UTF-8 JSON; documented in ``docs/MQTT.md``).

This module is the one place that builds and checks it, so the two ends cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from display.errors import EventError
from display.model import Booking, check_time

#: Larger schedule payloads are refused unread: a panel agent on a Pi Zero must not be made to
#: parse megabytes because of a misbehaving publisher.
MAX_SCHEDULE_BYTES = 256 * 1024
#: The bridge publishes at most this many bookings per room (the nearest ones), which keeps a
#: payload far below :data:`MAX_SCHEDULE_BYTES` (about 250 bytes per booking).
MAX_BOOKINGS = 500


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
    #: Every bridge of the site (several share the work; any of them online keeps an agent's
    #: ``bridge`` link up). Empty from a bridge that does not say.
    bridges: tuple[str, ...] = ()


def encode_schedule(open_id: str, name: str, bookings: Sequence[Booking], *, version: int,
                    generated_at: datetime, bridge: str,
                    bridges: Sequence[str] = ()) -> bytes:
    """The retained payload of ``{p}/v1/rooms/{open_id}/schedule`` (UTF-8 JSON).

    ``bookings`` should be the room's bookings in start order; only the first
    :data:`MAX_BOOKINGS` are kept (the caller passes those that have not ended).
    """
    doc = {
        "open_id": open_id,
        "name": name,
        "version": version,
        "generated_at": generated_at.isoformat(),
        "bridge": bridge,
        "bookings": [b.to_json() for b in bookings[:MAX_BOOKINGS]],
    }
    if bridges:
        doc["bridges"] = list(bridges)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def decode_schedule(payload: bytes, expected_open_id: str) -> Schedule:
    """Validate a schedule payload received on ``expected_open_id``'s topic.

    Raises :class:`~display.errors.EventError` naming the offending field; nothing is applied
    by the caller then.
    """
    if len(payload) > MAX_SCHEDULE_BYTES:
        raise EventError("payload", f"{len(payload)} bytes, more than the "
                         f"{MAX_SCHEDULE_BYTES} allowed")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("payload", f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EventError("payload", f"must be a JSON object, got {type(doc).__name__}")
    open_id = _str(doc, "open_id")
    if open_id != expected_open_id:
        raise EventError("open_id", f"{open_id!r} arrived on the topic of {expected_open_id!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise EventError("version", f"must be a non-negative integer, got {version!r}")
    bookings = doc.get("bookings")
    if not isinstance(bookings, list):
        raise EventError("bookings", f"must be a list, got {type(bookings).__name__}")
    bridge = _str(doc, "bridge")
    if not valid_topic_level(bridge):
        raise EventError("bridge", f"{bridge!r} is not a node name")
    name = doc.get("name")
    bridges = doc.get("bridges", [])
    if not isinstance(bridges, list) or not all(isinstance(b, str) and valid_topic_level(b)
                                                for b in bridges):
        raise EventError("bridges", f"must be a list of node names, got {bridges!r}")
    return Schedule(
        open_id=open_id,
        name=name if isinstance(name, str) else open_id,
        version=version,
        generated_at=_time(doc, "generated_at", "generated_at"),
        bridge=bridge,
        bookings=tuple(_booking(b, f"bookings[{i}]") for i, b in enumerate(bookings)),
        bridges=tuple(bridges),
    )


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
        raise EventError(f"{where}.original_time", f"must be an integer, got {original!r}")
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
