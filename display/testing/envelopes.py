"""Feishu v1 envelopes of the third-party room event family, built for tests, bench/ and demos."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from display.clock import to_epoch_ms

_uuids = itertools.count(1)
#: ``event_time`` given to :func:`envelope` is seconds after this instant (2025-11-24).
EVENT_TIME_BASE_MS = 1_764_000_000_000


def envelope(kind: str = "created", *, uid: str = "bk1", original_time: int = 0,
             start: datetime, end: datetime, rooms: tuple[str, ...] = ("omm_a",),
             event_time: int | None = None, uuid: str | None = None,
             token: str = "vtoken", organizer: str = "ou_alice") -> dict[str, Any]:
    """A v1 envelope of the third-party room event family, as Feishu sends it."""
    return {
        "ts": "1764064800.123",
        "uuid": uuid or f"uuid-{next(_uuids)}",
        "token": token,
        "type": "event_callback",
        "event": {
            "app_id": "cli_test",
            "tenant_key": "tenant",
            "type": f"third_party_meeting_room_event_{kind}",
            "event_id": f"{uid}_{original_time}",
            "event_time": str(EVENT_TIME_BASE_MS + event_time * 1000 if event_time is not None
                              else to_epoch_ms(datetime.now(UTC))),
            "uid": uid,
            "original_time": original_time,
            "start": {"time_stamp": str(to_epoch_ms(start))},
            "end": {"time_stamp": str(to_epoch_ms(end))},
            "meeting_rooms": [{"open_id": r} for r in rooms],
            "organizer": {"open_id": organizer, "user_id": "u1", "union_id": "on_1"},
        },
    }
