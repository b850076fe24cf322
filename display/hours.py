"""Opening hours: when a room is open, from ``"Mon-Fri 08:00-20:00, Sat 09:00-13:00"``.

Outside them a room is in *quiet hours*: its LED goes dark (or a dim colour) and its sign says
"closed until Mon 08:00" once and is left alone, unless a booking needs it. Pure: every answer is
a function of the hours, an instant and a time zone.

The syntax is small on purpose (a one-line error names what is wrong): comma-separated entries,
each a day or a day range (``Mon``, ``Mon-Fri``, ``Fri-Mon`` wraps, ``daily``) followed by one
or more ``HH:MM-HH:MM`` ranges (``24:00`` ends at midnight; a range ends after it starts).
``"always"`` (the default) means no quiet hours at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS_TEXT = "always"
_DAYS = r"(mon|tue|wed|thu|fri|sat|sun)"
_DAY_PART = re.compile(rf"^(?:daily|{_DAYS}(?:\s*-\s*{_DAYS})?)$", re.I)
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


class HoursError(ValueError):
    """Opening hours that cannot be read; the message is one line naming the bad part."""


@dataclass(frozen=True, slots=True)
class OpenHours:
    """Weekly opening hours as ``(weekday, start minute, end minute)`` spans, Monday = 0.

    ``text`` is what the config said (shown back to people); no spans means always open.
    """

    text: str = ALWAYS_TEXT
    spans: tuple[tuple[int, int, int], ...] = ()

    @property
    def always(self) -> bool:
        """True when the room has no quiet hours."""
        return not self.spans

    def intervals(self, around: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The open intervals (UTC, merged where they touch) from the day before ``around`` to
        eight days after it: enough to find the next opening of any weekly schedule."""
        day = around.astimezone(tz).date()
        raw: list[tuple[datetime, datetime]] = []
        for offset in range(-1, 9):
            d = day + timedelta(days=offset)
            for weekday, start, end in self.spans:
                if d.weekday() != weekday:
                    continue
                raw.append((_at(d, start, tz), _at(d, end, tz)))
        raw.sort()
        merged: list[tuple[datetime, datetime]] = []
        for s, e in raw:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return merged

    def is_open(self, now: datetime, tz: ZoneInfo) -> bool:
        """True when ``now`` lies in the opening hours (always, without any)."""
        return self.always or any(s <= now < e for s, e in self.intervals(now, tz))

    def opens_at(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """When the room next opens: ``now`` while it is open, None without quiet hours."""
        if self.always:
            return None
        for s, e in self.intervals(now, tz):
            if s <= now < e:
                return now
            if s > now:
                return s
        return None  # unreachable for hours with a span (a week always holds one)

    def closed_until(self, now: datetime, tz: ZoneInfo, *, in_use: bool) -> datetime | None:
        """When a room closed at ``now`` opens again; None while it is open, and while a
        booking needs it (``in_use``: a meeting in progress or about to start), so bookings in
        quiet hours show as ever."""
        if in_use or self.is_open(now, tz):
            return None
        return self.opens_at(now, tz)

    def next_change(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The next opening or closing instant after ``now`` (None without quiet hours)."""
        if self.always:
            return None
        edges = [t for s, e in self.intervals(now, tz) for t in (s, e) if t > now]
        return min(edges, default=None)


ALWAYS = OpenHours()


def _at(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """Local ``minute`` of ``day`` (1440: the next midnight) as a UTC instant."""
    if minute >= 24 * 60:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz).astimezone(UTC)


def _days(part: str, entry: str) -> list[int]:
    m = _DAY_PART.match(part)
    if not m:
        raise HoursError(f"{entry!r}: {part!r} is not a day or day range (Mon, Mon-Fri, daily)")
    if part.lower() == "daily":
        return list(range(7))
    first = DAYS.index(m[1].lower())
    last = DAYS.index(m[2].lower()) if m[2] else first
    return [(first + i) % 7 for i in range((last - first) % 7 + 1)]


def _minutes(h: str, m: str, entry: str) -> int:
    hours, minutes = int(h), int(m)
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise HoursError(f"{entry!r}: {h}:{m} is not a time (00:00 to 24:00)")
    return hours * 60 + minutes


def parse_open_hours(text: str) -> OpenHours:
    """``text`` as :class:`OpenHours`; :class:`HoursError` (one line) when it cannot be read."""
    cleaned = " ".join(text.split())
    if cleaned.lower() in ("", ALWAYS_TEXT):
        return ALWAYS
    spans: set[tuple[int, int, int]] = set()
    for entry in (e.strip() for e in cleaned.split(",")):
        if not entry:
            raise HoursError(f"{cleaned!r} has an empty entry between commas")
        words = entry.split(" ")
        # The day part may be written "Mon - Fri": join words until a time range starts.
        split = next((i for i, w in enumerate(words) if w[:1].isdigit()), len(words))
        day_part, ranges = "".join(words[:split]), words[split:]
        if not day_part or not ranges:
            raise HoursError(f"{entry!r} needs days and times, e.g. \"Mon-Fri 08:00-20:00\"")
        days = _days(day_part, entry)
        for r in " ".join(ranges).replace(" - ", "-").split(" "):
            m = _RANGE.match(r)
            if not m:
                raise HoursError(f"{entry!r}: {r!r} is not a time range like 08:00-20:00")
            start, end = _minutes(m[1], m[2], entry), _minutes(m[3], m[4], entry)
            if end <= start:
                raise HoursError(f"{entry!r}: {r} ends before it starts (split a range past "
                                 "midnight in two, e.g. \"Fri 20:00-24:00, Sat 00:00-02:00\")")
            spans.update((d, start, end) for d in days)
    return OpenHours(cleaned, tuple(sorted(spans)))
