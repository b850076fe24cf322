"""Occupancy as a pure function of (schedule, now): the heart of the sign.

Bookings are half-open ``[start, end)``; overlapping and back-to-back bookings merge into one
*block*. With ``soon`` and ``ending`` thresholds (README):

- ``busy``    now is in a block, and ``now < block.end - ending``;
- ``ending``  now is in ``[block.end - ending, block.end)``;
- ``soon``    not busy, and now is in ``[next.start - soon, next.start)``;
- ``free``    otherwise.

The edges are inclusive at the start of each window, so at exactly ``start - soon`` the room is
already ``soon`` and at exactly ``end`` it is no longer busy. The answer also carries when the
state began (``since``) and when it will change (``until``), so the node can sleep until then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from display.model import Booking, Occupancy, State

UTC_ZONE = ZoneInfo("UTC")
MAX_NEXT = 10


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How early a room counts as ``soon`` and how late as ``ending``."""

    soon: timedelta = timedelta(minutes=10)
    ending: timedelta = timedelta(minutes=10)

    @classmethod
    def from_minutes(cls, soon_minutes: int, ending_minutes: int) -> Thresholds:
        return cls(timedelta(minutes=soon_minutes), timedelta(minutes=ending_minutes))


@dataclass(frozen=True, slots=True)
class Block:
    """A run of overlapping or back-to-back bookings, ``[start, end)``."""

    start: datetime
    end: datetime


def merge_blocks(bookings: Iterable[Booking]) -> list[Block]:
    """Merge bookings into disjoint blocks in time order (touching ones merge too)."""
    blocks: list[Block] = []
    for b in sorted(bookings, key=lambda b: (b.start, b.end)):
        if blocks and b.start <= blocks[-1].end:
            if b.end > blocks[-1].end:
                blocks[-1] = Block(blocks[-1].start, b.end)
        else:
            blocks.append(Block(b.start, b.end))
    return blocks


def occupancy(bookings: Iterable[Booking], now: datetime,
              thresholds: Thresholds = Thresholds(), tz: ZoneInfo = UTC_ZONE) -> Occupancy:
    """The room's state at ``now`` given its bookings. Pure: no clock, no I/O."""
    items = sorted(bookings, key=lambda b: (b.start, b.end, b.event_id))
    blocks = merge_blocks(items)
    state, since, until = _state(blocks, now, thresholds)
    in_progress = [b for b in items if b.start <= now < b.end]
    # Of overlapping bookings, the one that began last is "the meeting now".
    current = max(in_progress, key=lambda b: (b.start, b.end)) if in_progress else None
    upcoming = tuple(b for b in items if b.start > now)[:MAX_NEXT]
    day_start = datetime.combine(now.astimezone(tz).date(), time(0), tz)
    day_end = day_start + timedelta(days=1)
    today = tuple(b for b in items if b.start < day_end and b.end > day_start)
    return Occupancy(at=now, state=state, since=since, until=until, current=current,
                     next=upcoming, today=today)


def next_change(bookings: Iterable[Booking], now: datetime,
                thresholds: Thresholds = Thresholds(), tz: ZoneInfo = UTC_ZONE) -> datetime:
    """The first instant after ``now`` at which :func:`occupancy` may answer differently (its
    ``at`` aside): a booking's start or end, either shifted by a threshold, or the next local
    midnight (``today`` moves on). Until then the node need not recompute the room."""
    day_start = datetime.combine(now.astimezone(tz).date(), time(0), tz)
    # The next midnight by the calendar, not +24 h (a DST day is 23 or 25 hours long).
    first = datetime.combine(day_start.date() + timedelta(days=1), time(0), tz)
    soon, ending = thresholds.soon, thresholds.ending
    for b in bookings:
        for t in (b.start, b.end, b.start - soon, b.end - ending):
            if now < t < first:
                first = t
    return first


def _state(blocks: list[Block], now: datetime,
           th: Thresholds) -> tuple[State, datetime | None, datetime | None]:
    previous_end: datetime | None = None
    for block in blocks:
        if block.end <= now:
            previous_end = block.end
            continue
        if block.start <= now:  # in this block
            ending_from = block.end - th.ending
            if now >= ending_from:
                return State.ENDING, max(block.start, ending_from), block.end
            return State.BUSY, block.start, ending_from
        # ``block`` is the next one
        soon_from = block.start - th.soon
        if now >= soon_from:
            since = soon_from if previous_end is None else max(soon_from, previous_end)
            return State.SOON, since, block.start
        return State.FREE, previous_end, soon_from
    return State.FREE, previous_end, None
