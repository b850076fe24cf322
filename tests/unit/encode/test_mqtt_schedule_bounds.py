"""Integers in a schedule payload are range-checked: a value no store can hold is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from display.encode.mqtt_schedule import decode_schedule, encode_schedule
from display.errors import EventError
from display.model import Booking

START = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _payload(**booking: object) -> bytes:
    good = Booking("b_0", "b", 0, START, START + timedelta(hours=1))
    doc = json.loads(encode_schedule("omm_a", "A", [good], version=1, generated_at=START,
                                     bridge="br"))
    doc["bookings"][0].update(booking)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("field", "value"), [
    ("original_time", 10**30), ("original_time", -1), ("original_time", 2**63)])
def test_an_implausible_original_time_is_one_error_naming_it(field: str, value: int) -> None:
    with pytest.raises(EventError, match=r"bookings\[0\]\.original_time"):
        decode_schedule(_payload(**{field: value}), "omm_a")


def test_a_version_beyond_64_bits_is_refused() -> None:
    doc = json.loads(_payload())
    doc["version"] = 10**30
    with pytest.raises(EventError, match="version"):
        decode_schedule(json.dumps(doc).encode(), "omm_a")


def test_an_exception_occurrence_is_taken() -> None:
    stamp = int(START.timestamp())
    schedule = decode_schedule(_payload(original_time=stamp), "omm_a")
    assert schedule.bookings[0].original_time == stamp
