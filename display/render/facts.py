"""What a sign says: a :class:`~display.model.RoomView` reduced to the facts drawn, in local time.

The state, the booking in progress and the end of its block, the bookings still to come today,
and the language: worked out once per render, so the layout only places them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from display.config import DeviceConfig
from display.headline import headline_words
from display.model import Booking, RoomView, State
from display.render.wording import LANGUAGES, text

DASH = "–"  # en dash between the two times of a span


@dataclass(frozen=True)
class SignFacts:
    """The view reduced to what is drawn, in local time."""

    state: State
    language: str
    tz: ZoneInfo
    now: datetime
    day_start: datetime
    day_end: datetime
    current: Booking | None
    block_end: datetime | None  # end of the merged block now in progress
    upcoming: tuple[Booking, ...]  # later today, current excluded
    day: tuple[Booking, ...]  # everything to draw on the timeline
    as_of: datetime
    stale: bool
    name: str
    closed_until: datetime | None = None  # quiet hours: when the sign changes next
    later: tuple[Booking, ...] = ()  # bookings after today (a closed sign lists them)
    until: str | None = None  # the person's "until" (display.headline), in the sign's language

    @property
    def closed(self) -> bool:
        """True in quiet hours (the sign shows "closed until ...")."""
        return self.closed_until is not None

    def hm(self, dt: datetime) -> str:
        """``dt`` as local ``HH:MM``."""
        return dt.astimezone(self.tz).strftime("%H:%M")

    def span(self, b: Booking) -> str:
        """``b`` as local ``HH:MM–HH:MM``, after its weekday when it is not today."""
        span = f"{self.hm(b.start)}{DASH}{self.hm(b.end)}"
        if b.start >= self.day_end:
            return f"{self.weekday(b.start, self.language)} {span}"
        return span

    def weekday(self, dt: datetime, language: str) -> str:
        """The local weekday of ``dt``, short (``Mon``, ``周一``)."""
        return text("weekdays", language).split()[dt.astimezone(self.tz).weekday()]

    def when(self, dt: datetime, language: str) -> str:
        """``HH:MM`` today, else ``Mon 08:00`` (``周一 08:00``)."""
        if self.day_start <= dt < self.day_end:
            return self.hm(dt)
        return f"{self.weekday(dt, language)} {self.hm(dt)}"

    def t(self, key: str, **values: object) -> str:
        """The wording for ``key`` in the sign's language."""
        return text(key, self.language, **values)


def sign_facts(view: RoomView, device: DeviceConfig) -> SignFacts:
    """``view`` as ``device`` shows it: in its language, else the view's, else in English."""
    tz = ZoneInfo(view.timezone)
    occ = view.occupancy
    now = occ.at
    local_day = now.astimezone(tz).date()
    day_start = datetime.combine(local_day, time(0), tzinfo=tz)
    day_end = datetime.combine(local_day + timedelta(days=1), time(0), tzinfo=tz)
    seen: dict[tuple[str, datetime], Booking] = {}
    for b in (*occ.today, *((occ.current,) if occ.current else ()), *occ.next):
        if b.end > day_start and b.start < day_end:
            seen.setdefault((b.event_id, b.start), b)
    day = tuple(sorted(seen.values(), key=lambda b: (b.start, b.end)))
    cur = occ.current
    block_end: datetime | None = None
    if cur is not None:
        # Back-to-back and overlapping bookings are one block (README): "until" is its end.
        block_end = cur.end
        for b in day:
            if b.start <= block_end < b.end:
                block_end = b.end
    upcoming = tuple(b for b in day if b.start > now and b is not cur
                     and (block_end is None or b.start >= block_end))
    language = device.language or view.language
    closed_until = view.closed_until
    later = tuple(b for b in occ.next if b.start >= day_end)
    if closed_until is not None and (upcoming or later):
        # Closed until it opens, or until the next booking if that comes first.
        closed_until = min(closed_until, (upcoming or later)[0].start)
    return SignFacts(state=occ.state, language=language if language in LANGUAGES else "en",
                     tz=tz, now=now, day_start=day_start, day_end=day_end, current=cur,
                     block_end=block_end, upcoming=upcoming, day=day, as_of=view.as_of,
                     stale=view.stale, name=view.name, closed_until=closed_until, later=later,
                     until=headline_words(occ, tz, language if language in LANGUAGES else "en"))

