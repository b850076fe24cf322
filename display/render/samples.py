"""Fixed example views: one room on 2026-11-25 (Asia/Shanghai) in each state.

Shipped in the package (like gpiozero's mock pins) so the tests, the benchmark, ``identify`` and
the demo all draw the same, reproducible signs. Nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from display.model import Booking, Occupancy, RoomView, State

TIMEZONE = "Asia/Shanghai"
DAY = (2026, 11, 25)

# Local (start, end) of the day's bookings, as "HH:MM".
SPANS: tuple[tuple[str, str], ...] = (
    ("09:00", "09:45"),
    ("10:00", "11:00"),
    ("11:30", "12:00"),
    ("14:00", "15:30"),
    ("16:00", "17:00"),
)

# The local instant each state is shown at, with the bookings above.
STATE_TIMES: dict[State, str] = {
    State.BUSY: "10:05",
    State.ENDING: "10:52",
    State.SOON: "11:22",
    State.FREE: "12:30",
}


def local(hm: str, day: tuple[int, int, int] = DAY) -> datetime:
    """``"HH:MM"`` on ``day`` in :data:`TIMEZONE`, as an aware UTC datetime."""
    h, m = (int(p) for p in hm.split(":"))
    return datetime(*day, h, m, tzinfo=ZoneInfo(TIMEZONE)).astimezone(UTC)


def booking(start: str, end: str, n: int = 0) -> Booking:
    """A booking between two local times (no title: Feishu sends none)."""
    return Booking(event_id=f"evt-{n}", uid=f"uid-{n}", original_time=0,
                   start=local(start), end=local(end), organizer_open_id=None)


def occupancy_at(at: datetime, bookings: tuple[Booking, ...], soon_minutes: int = 10,
                 ending_minutes: int = 10) -> Occupancy:
    """A simple occupancy for non-overlapping ``bookings`` (enough for examples; the real,
    merging computation lives in the occupancy module)."""
    ordered = tuple(sorted(bookings, key=lambda b: b.start))
    since: datetime | None
    until: datetime | None
    current = next((b for b in ordered if b.start <= at < b.end), None)
    upcoming = tuple(b for b in ordered if b.start > at)
    past_end = max((b.end for b in ordered if b.end <= at), default=None)
    if current is not None:
        ending_from = current.end - timedelta(minutes=ending_minutes)
        state = State.ENDING if at >= ending_from else State.BUSY
        since = ending_from if state is State.ENDING else current.start
        until = current.end if state is State.ENDING else ending_from
    elif upcoming and upcoming[0].start - at <= timedelta(minutes=soon_minutes):
        state = State.SOON
        since = upcoming[0].start - timedelta(minutes=soon_minutes)
        until = upcoming[0].start
    else:
        state = State.FREE
        since = past_end
        until = upcoming[0].start - timedelta(minutes=soon_minutes) if upcoming else None
    return Occupancy(at=at, state=state, since=since, until=until, current=current,
                     next=upcoming, today=ordered)


def sample_view(state: State = State.BUSY, *, name: str = "3F 大会议室", language: str = "en",
                stale: bool = False, spans: tuple[tuple[str, str], ...] = SPANS,
                at: str | None = None) -> RoomView:
    """The example room in ``state`` (or at local time ``at``); stale views are 25 minutes old."""
    now = local(at or STATE_TIMES[state])
    bookings = tuple(booking(s, e, i) for i, (s, e) in enumerate(spans))
    occ = occupancy_at(now, bookings)
    as_of = now - timedelta(minutes=25) if stale else now
    return RoomView(open_id="omm_sample", name=name, occupancy=occ, stale=stale, as_of=as_of,
                    timezone=TIMEZONE, language=language)


def busy_day_spans(count: int = 14) -> tuple[tuple[str, str], ...]:
    """``count`` half-hour bookings from 07:00, every 45 minutes: a crowded day."""
    out = []
    for i in range(count):
        start = 7 * 60 + i * 45
        out.append((f"{start // 60:02d}:{start % 60:02d}",
                    f"{(start + 30) // 60:02d}:{(start + 30) % 60:02d}"))
    return tuple(out)
