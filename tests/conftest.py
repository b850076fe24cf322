"""Shared fixtures and builders for the tests."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from display.clock import to_epoch_ms

T = TypeVar("T")

# Property tests run beside subprocess-heavy tests on two cores: timing is not what they check.
# In CI the examples are derandomized, so a run is repeatable and never flaky by chance.
settings.register_profile("default", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True,
                          print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

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


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition",
             *, interval: float = 0.005) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    The one way tests wait for something to happen (never a bare ``time.sleep``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # polling interval, not a wait for something to happen
