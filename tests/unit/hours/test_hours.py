"""Opening hours: the syntax, open/closed instants, a week's wrap and a DST change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from display.hours import ALWAYS, HoursError, parse_open_hours

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def test_several_ranges_and_days() -> None:
    hours = parse_open_hours("Mon-Fri 08:00-12:00 13:00-20:00, Sat 09:00-13:00")
    friday = datetime(2026, 11, 27, tzinfo=SH)
    assert hours.is_open(friday.replace(hour=8), SH)
    assert not hours.is_open(friday.replace(hour=12, minute=30), SH)  # lunch
    assert hours.opens_at(friday.replace(hour=12, minute=30), SH) == friday.replace(hour=13)
    assert hours.next_change(friday.replace(hour=19), SH) == friday.replace(hour=20)
    # Friday night opens on Saturday, Saturday afternoon on Monday.
    assert hours.opens_at(friday.replace(hour=21), SH) == datetime(2026, 11, 28, 9, tzinfo=SH)
    assert hours.opens_at(datetime(2026, 11, 28, 13, tzinfo=SH), SH) == \
        datetime(2026, 11, 30, 8, tzinfo=SH)


def test_wrapping_days_midnight_and_always() -> None:
    hours = parse_open_hours("Fri-Mon 00:00-24:00")
    assert hours.is_open(datetime(2026, 11, 29, 23, 59, tzinfo=SH), SH)  # Sunday
    assert not hours.is_open(datetime(2026, 12, 1, 12, tzinfo=SH), SH)  # Tuesday
    # Fri 00:00 to Tue 00:00 is one interval: no closing at each midnight.
    assert hours.next_change(datetime(2026, 11, 27, 1, tzinfo=SH), SH) == \
        datetime(2026, 12, 1, tzinfo=SH)
    assert parse_open_hours("") is ALWAYS and parse_open_hours(" Always ") is ALWAYS
    assert ALWAYS.is_open(datetime(2026, 1, 1, tzinfo=UTC), SH)
    assert ALWAYS.next_change(datetime(2026, 1, 1, tzinfo=UTC), SH) is None
    assert ALWAYS.closed_until(datetime(2026, 1, 1, tzinfo=UTC), SH, in_use=False) is None


def test_opening_hours_follow_the_wall_clock_across_dst() -> None:
    hours = parse_open_hours("daily 08:00-20:00")
    # Berlin springs forward on 2026-03-29: 08:00 local is 06:00 UTC that day, 07:00 before.
    saturday_night = datetime(2026, 3, 28, 21, tzinfo=BERLIN)
    assert hours.opens_at(saturday_night, BERLIN) == datetime(2026, 3, 29, 6, tzinfo=UTC)
    assert hours.opens_at(saturday_night - timedelta(days=1), BERLIN) == \
        datetime(2026, 3, 28, 7, tzinfo=UTC)


@pytest.mark.parametrize(("text", "problem"), [
    ("Mon-Fri", "needs days and times"),
    ("Mon-Fri 8-20", "is not a time range"),
    ("Mon-Fry 08:00-20:00", "is not a day or day range"),
    ("Mon 20:00-08:00", "ends before it starts"),
    ("Mon 08:60-09:00", "is not a time"),
    ("Mon 08:00-09:00,,Tue 08:00-09:00", "empty entry"),
    ("08:00-20:00", "needs days and times"),
])
def test_bad_hours_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(HoursError, match=problem) as err:
        parse_open_hours(text)
    assert "\n" not in str(err.value)
