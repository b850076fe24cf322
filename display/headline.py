"""What a person reads about a room, said once for every surface.

The sign, the web tile, the room page, the lobby board, ``status``, the MQTT state JSON and Home
Assistant all say the same thing:

- ``free``   until the next meeting starts ("all day" when nothing is booked today or
  tomorrow; "until tomorrow 09:00" when the next meeting is tomorrow);
- ``soon``   free until the meeting starts;
- ``busy``   in use until the merged block of back-to-back and overlapping bookings ends;
- ``ending`` in use until that block ends.

This is the person's "until". When the *state* changes next (busy turns ``ending`` ten minutes
before the end; free turns ``soon`` ten minutes before the start) is a different instant, kept
as :attr:`Headline.changes_at` for machines (the node sleeps until then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from display.model import Occupancy, State

#: key: (zh, en, zh+en), in the order of ``display.render.wording.LANGUAGES``. ``{t}`` is HH:MM,
#: ``{d}`` a date (MM-DD).
PHRASES: dict[str, tuple[str, str, str]] = {
    "until": ("至 {t}", "until {t}", "至 / until {t}"),
    "until_tomorrow": ("至明天 {t}", "until tomorrow {t}", "至明天 / until tomorrow {t}"),
    "until_date": ("至 {d} {t}", "until {d} {t}", "至 / until {d} {t}"),
    "all_day": ("全天", "all day", "全天 / all day"),  # under the state word: "free all day"
}
_LANG_INDEX = {"zh": 0, "en": 1, "zh+en": 2}


@dataclass(frozen=True, slots=True)
class Headline:
    """A room's state with the person's ``until`` and the machine's ``changes_at``.

    ``until`` is ``None`` when nothing later is known (a free room with no booking ahead).
    """

    state: State
    until: datetime | None
    changes_at: datetime | None


def block_end(occ: Occupancy) -> datetime | None:
    """The end of the merged block of bookings in progress at ``occ.at`` (None when free)."""
    now = occ.at
    known: set[tuple[datetime, datetime]] = {(b.start, b.end) for b in (*occ.today, *occ.next,
                                        *((occ.current,) if occ.current else ()))}
    end: datetime | None = max((e for s, e in known if s <= now < e), default=None)
    if end is None:
        return None
    # Touching and overlapping bookings are one block: follow the chain.
    for s, e in sorted(known):
        if s <= end < e:
            end = e
    return end


def headline(occ: Occupancy) -> Headline:
    """The rule: free and soon until the next meeting starts, busy and ending until the
    block ends."""
    if occ.state.occupied:
        until = block_end(occ) or occ.until
    else:
        later = [b.start for b in occ.next if b.start > occ.at]
        until = min(later) if later else None
    return Headline(occ.state, until, occ.until)


def until_words(state: State | str, until: datetime | None, now: datetime, tz: tzinfo | None,
                language: str = "en") -> str | None:
    """The person's "until" in words, e.g. "until 16:35", "until tomorrow 09:00", "all day".

    ``tz`` is the room's zone; ``None`` reads each time in its own UTC offset (ISO times of the
    status document, already in the node's zone: a fixed offset would be wrong across DST).
    ``None`` when there is nothing to say (an occupied room whose end is unknown).
    """
    free = State(state) in (State.FREE, State.SOON)
    if until is None:
        return phrase("all_day", language) if free else None
    local = until.astimezone(tz) if tz else until
    today = (now.astimezone(tz) if tz else now).date()
    hm = local.strftime("%H:%M")
    if local.date() == today:
        return phrase("until", language, t=hm)
    if local.date() == today + timedelta(days=1):
        return phrase("until_tomorrow", language, t=hm)
    if free:
        return phrase("all_day", language)
    return phrase("until_date", language, d=local.strftime("%m-%d"), t=hm)


def headline_words(occ: Occupancy, tz: tzinfo, language: str = "en") -> str | None:
    """:func:`until_words` of :func:`headline` of ``occ``: what a sign prints under the state."""
    h = headline(occ)
    return until_words(h.state, h.until, occ.at, tz, language)


def phrase(key: str, language: str, **values: object) -> str:
    """One of :data:`PHRASES` in ``language`` (English when unknown)."""
    return PHRASES[key][_LANG_INDEX.get(language, 1)].format(**values)
