"""Occupancy scenarios: a fake clock walks through whole days, edges checked to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from display.model import Booking, State
from display.occupancy import Thresholds, merge_blocks, occupancy
from display.testing.clock import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
TEN = Thresholds(timedelta(minutes=10), timedelta(minutes=10))


def booking(start: datetime, end: datetime, uid: str = "b") -> Booking:
    return Booking(event_id=f"{uid}_0", uid=uid, original_time=0, start=start.astimezone(UTC),
                   end=end.astimezone(UTC))


def at(h: int, m: int = 0, s: int = 0, tz: ZoneInfo = SHANGHAI, day: int = 25) -> datetime:
    return datetime(2026, 11, day, h, m, s, tzinfo=tz)


def walk(bookings: list[Booking], start: datetime, end: datetime,
         step: timedelta = timedelta(minutes=1)) -> list[tuple[datetime, State]]:
    """The state transitions seen by a fake clock stepping from start to end."""
    clock = FakeClock(start)
    seen: list[tuple[datetime, State]] = []
    while clock.now() < end:
        state = occupancy(bookings, clock.now(), TEN).state
        if not seen or seen[-1][1] is not state:
            seen.append((clock.now(), state))
        clock.advance(step)
    return seen


def test_a_day_with_back_to_back_meetings_is_one_block() -> None:
    day = [booking(at(9), at(10), "a"), booking(at(10), at(11), "b"),
           booking(at(14), at(15), "c")]
    changes = walk(day, at(0), at(23, 59))
    assert [(t.astimezone(SHANGHAI).strftime("%H:%M"), s.value) for t, s in changes] == [
        ("00:00", "free"), ("08:50", "soon"), ("09:00", "busy"), ("10:50", "ending"),
        ("11:00", "free"), ("13:50", "soon"), ("14:00", "busy"), ("14:50", "ending"),
        ("15:00", "free"),
    ]


def test_edges_are_inclusive_at_window_start_to_the_second() -> None:
    day = [booking(at(10), at(11))]
    assert occupancy(day, at(9, 49, 59), TEN).state is State.FREE
    assert occupancy(day, at(9, 50), TEN).state is State.SOON
    assert occupancy(day, at(9, 59, 59), TEN).state is State.SOON
    assert occupancy(day, at(10), TEN).state is State.BUSY
    assert occupancy(day, at(10, 49, 59), TEN).state is State.BUSY
    assert occupancy(day, at(10, 50), TEN).state is State.ENDING
    assert occupancy(day, at(10, 59, 59), TEN).state is State.ENDING
    assert occupancy(day, at(11), TEN).state is State.FREE


def test_overlapping_bookings_merge_and_current_is_the_latest_started() -> None:
    a = booking(at(9), at(10, 30), "a")
    b = booking(at(10), at(11), "b")
    occ = occupancy([a, b], at(10, 15), TEN)
    assert occ.state is State.BUSY
    assert occ.current == b
    assert occ.since == at(9).astimezone(UTC)
    assert occ.until == at(10, 50).astimezone(UTC)
    assert merge_blocks([a, b])[0].end == b.end


def test_gap_shorter_than_soon_goes_straight_from_ending_to_soon() -> None:
    day = [booking(at(9), at(10), "a"), booking(at(10, 5), at(11), "b")]
    changes = walk(day, at(8), at(12))
    states = [s.value for _, s in changes]
    assert states == ["free", "soon", "busy", "ending", "soon", "busy", "ending", "free"]
    occ = occupancy(day, at(10, 1), TEN)
    assert occ.state is State.SOON and occ.since == at(10).astimezone(UTC)


def test_booking_across_midnight() -> None:
    night = [booking(at(23, 30), at(1, 0, day=26))]
    assert occupancy(night, at(23, 59, 59), TEN).state is State.BUSY
    assert occupancy(night, at(0, 0, day=26), TEN).state is State.BUSY
    assert occupancy(night, at(0, 50, day=26), TEN).state is State.ENDING
    occ = occupancy(night, at(0, 10, day=26), TEN, tz=SHANGHAI)
    assert occ.today == tuple(night), "a booking that began yesterday still counts today"


def test_dst_change_in_an_observing_zone() -> None:
    # Europe/Berlin leaves summer time on 2026-10-25 at 03:00 CEST -> 02:00 CET.
    start = datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN)
    end = start.astimezone(UTC) + timedelta(hours=2)  # 02:30 CET local, two real hours
    b = booking(start, end)
    changes = walk([b], start - timedelta(hours=1), start + timedelta(hours=4))
    spans = [(t - start.astimezone(UTC), s) for t, s in changes]
    assert spans == [
        (timedelta(hours=-1), State.FREE), (timedelta(minutes=-10), State.SOON),
        (timedelta(0), State.BUSY), (timedelta(minutes=110), State.ENDING),
        (timedelta(minutes=120), State.FREE),
    ]
    local_day = occupancy([b], end, TEN, tz=BERLIN)
    assert local_day.today == (b,)


def test_zero_thresholds_never_show_soon_or_ending() -> None:
    zero = Thresholds(timedelta(0), timedelta(0))
    day = [booking(at(10), at(11))]
    assert occupancy(day, at(9, 59, 59), zero).state is State.FREE
    assert occupancy(day, at(10, 59, 59), zero).state is State.BUSY
    assert occupancy(day, at(10, 59, 59), zero).until == at(11).astimezone(UTC)


def test_short_meeting_is_ending_from_its_start() -> None:
    day = [booking(at(10), at(10, 5))]
    occ = occupancy(day, at(10), TEN)
    assert occ.state is State.ENDING and occ.since == at(10).astimezone(UTC)


def test_next_lists_upcoming_bookings_in_order() -> None:
    day = [booking(at(h), at(h, 30), f"m{h}") for h in (15, 9, 12)]
    occ = occupancy(day, at(8), TEN)
    assert [b.uid for b in occ.next] == ["m9", "m12", "m15"]
    assert occ.current is None and occ.state is State.FREE and occ.since is None


# -- property: the state agrees with a brute-force reading of the definition -------------------

minutes = st.integers(min_value=0, max_value=600)


@st.composite
def schedules(draw: st.DrawFn) -> list[Booking]:
    base = at(8)
    out = []
    for i in range(draw(st.integers(0, 6))):
        s = draw(minutes)
        length = draw(st.integers(1, 180))
        out.append(booking(base + timedelta(minutes=s), base + timedelta(minutes=s + length),
                           f"p{i}"))
    return out


@given(schedules(), minutes, st.integers(0, 30), st.integers(0, 30))
def test_state_matches_brute_force_definition(day: list[Booking], offset: int, soon: int,
                                              ending: int) -> None:
    th = Thresholds(timedelta(minutes=soon), timedelta(minutes=ending))
    now = at(8) + timedelta(minutes=offset)
    occ = occupancy(day, now, th)
    blocks = merge_blocks(day)
    inside = [b for b in blocks if b.start <= now < b.end]
    if inside:
        expected = State.ENDING if now >= inside[0].end - th.ending else State.BUSY
    elif any(b.start - th.soon <= now < b.start for b in blocks):
        expected = State.SOON
    else:
        expected = State.FREE
    assert occ.state is expected
    if occ.until is not None:
        assert occ.until > now
        # Just before `until` the state is unchanged; at `until` it differs.
        before = occupancy(day, occ.until - timedelta(seconds=1), th).state
        assert before is occ.state
        assert occupancy(day, occ.until, th).state is not occ.state
    if occ.since is not None:
        assert occ.since <= now
        assert occupancy(day, occ.since, th).state is occ.state
