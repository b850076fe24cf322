"""The parts of an e-ink sign, each drawn into its region of a :class:`Canvas`.

The header (room name, update time, stale warning), the state banner, the "Next" bookings (one
line on compact panels, a grid on large ones) and the day timeline. Where the regions lie is
:func:`display.render.eink.compose`'s business; here each part fits itself to the box it gets.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from display.model import Booking, State
from display.render.canvas import Canvas, Ink
from display.render.facts import DASH, SignFacts
from display.render.geometry import Box
from display.render.typeset import Seg, TextPlan
from display.render.wording import text

DAY_START_HOUR = 7  # the timeline spans at least these hours, more if a booking needs it
DAY_END_HOUR = 21


# -- header ----------------------------------------------------------------------------------


def _stale_icon(canvas: Canvas, box: Box) -> None:
    """A warning triangle with "!" drawn from shapes (no font needed, crisp at any size)."""
    s = min(box.w, box.h)
    x, y = box.x, box.y + (box.h - s) // 2
    canvas.polygon([(x, y + s - 1), (x + s // 2, y), (x + s - 1, y + s - 1)],
                   Ink.RED if canvas.has_red else Ink.BLACK)
    bar_w = max(2, s // 8)
    cx = x + s // 2 - bar_w // 2
    canvas.rect(Box(cx, y + s * 3 // 8, bar_w, s * 5 // 16), Ink.WHITE)
    canvas.rect(Box(cx, y + s * 3 // 4, bar_w, max(2, s // 9)), Ink.WHITE)


#: The smallest type "as of" is drawn in where it can be: DejaVu's digits are 12 px tall at 17 px,
#: legible at a door (the words go before the size does: "as of 10:05", then "10:05").
ASOF_MIN = 17


def _asof_plan(canvas: Canvas, facts: SignFacts, box: Box, size: int,
               bold: bool) -> TextPlan | None:
    """"as of 10:05", or just "10:05" where that does not fit: a time is never ellipsised.

    Each wording is tried at :data:`ASOF_MIN` or more before a shorter one; only the bare time
    shrinks below it, on a panel too small for anything else."""
    hm = facts.hm(facts.as_of)
    floor = min(ASOF_MIN, size)
    for candidate in (facts.t("as_of", t=hm), text("as_of", "en", t=hm)):
        plan = canvas.type.largest([Seg(candidate, bold=bold)], box, floor, size)
        if plan is not None:
            return plan
    return canvas.type.largest([Seg(hm, bold=bold)], box, min(10, size), size)


def draw_header(canvas: Canvas, facts: SignFacts, box: Box, unit: int, *, show_asof: bool) -> None:
    """The room name (wrapped if long) and, with ``show_asof``, the update time on the right."""
    m = unit
    inner = box.inset(m, max(1, m // 2))
    used = 0
    if show_asof:
        # Right: the update time; on a stale view a warning triangle and a bolder "as of".
        small = max(ASOF_MIN, round(inner.h * (0.5 if facts.stale else 0.4)))
        small = min(small, inner.h)
        icon = inner.h if facts.stale else 0
        room = Box(0, 0, max(0, inner.w * 2 // 5 - icon), inner.h)
        plan = _asof_plan(canvas, facts, room, small, facts.stale)
        used = (plan.width if plan else 0) + (icon + m if icon else 0)
        if plan is not None:
            canvas.draw_plan("as_of", plan, Box(inner.right - plan.width, inner.y, plan.width,
                                                inner.h), Ink.BLACK, align="right")
        if icon:
            _stale_icon(canvas, Box(inner.right - used, inner.y, icon, inner.h))
    name_box = Box(inner.x, inner.y, max(0, inner.w - used - 2 * m), inner.h)
    canvas.text("name", [Seg(facts.name)], name_box, inner.h, max(11, inner.h // 3), Ink.BLACK,
                wrap=True)


def draw_stale_line(canvas: Canvas, facts: SignFacts, box: Box, unit: int) -> None:
    """Compact panels when stale: the warning replaces the "Next" line, which may be wrong."""
    icon = box.h
    _stale_icon(canvas, Box(box.x, box.y, icon, box.h))
    rest = Box(box.x + icon + 2 * unit, box.y, max(0, box.w - icon - 2 * unit), box.h)
    plan = _asof_plan(canvas, facts, rest, box.h * 3 // 4, True)
    if plan is not None:
        canvas.draw_plan("as_of", plan, rest, Ink.BLACK)


# -- state banner ----------------------------------------------------------------------------


#: In ``zh+en`` the English state word is this share of the Chinese one: readable beside it,
#: still second to it.
EN_SCALE = 0.62
#: A state line this tall (px) or more puts the English under the Chinese instead of beside it.
STACK_FROM = 70


def _state_segs(facts: SignFacts) -> list[Seg]:
    """The state word; in ``zh+en`` the English after the Chinese, smaller and optional."""
    word = facts.t("closed" if facts.closed else facts.state.value)
    if "|" in word:
        zh, en = word.split("|", 1)
        return [Seg(zh), Seg("  " + en, EN_SCALE, optional=True)]
    return [Seg(word)]


def _detail_segs(facts: SignFacts) -> tuple[list[Seg], tuple[Booking, ...]]:
    """The banner's second line and the bookings still left for the "Next" list."""
    rest = facts.upcoming
    if facts.closed_until is not None:
        until = facts.closed_until
        return [Seg(facts.t("closed_until", zh=facts.when(until, "zh"),
                            en=facts.when(until, "en")))], (*rest, *facts.later)
    if facts.state.occupied and facts.current is not None and facts.block_end is not None:
        return [Seg(facts.until or facts.t("until", t=facts.hm(facts.block_end))),
                Seg("   " + facts.span(facts.current), 0.75, bold=False, optional=True)], rest
    if facts.state is State.SOON and rest:
        # Starting soon is still free: free until the meeting starts (listed under "Next").
        return [Seg(facts.t("free_until", t=facts.hm(rest[0].start)))], rest
    if facts.until:  # free until the next booking (display.headline says which words)
        return [Seg(facts.until)], rest
    return [], rest


def _banner(canvas: Canvas, facts: SignFacts, box: Box, unit: int) -> tuple[Ink, Ink]:
    """Draw the state banner's background; returns (text ink, detail ink)."""
    if facts.closed:  # quiet hours: a plain frame with a second, inner rule
        canvas.frame(box, Ink.BLACK, max(1, unit // 2))
        canvas.frame(box.inset(unit, unit), Ink.BLACK, max(1, unit // 2))
        return Ink.BLACK, Ink.BLACK
    if facts.state is State.FREE:
        canvas.frame(box, Ink.BLACK, max(1, unit // 2))
        return Ink.BLACK, Ink.BLACK
    if facts.state is State.SOON:
        colour = Ink.RED if canvas.has_red else Ink.BLACK
        canvas.frame(box, colour, max(3, unit * 2))
        return colour, Ink.BLACK
    canvas.rect(box, Ink.RED)  # busy / ending: solid (black where there is no red)
    return Ink.WHITE, Ink.WHITE


def draw_state_block(canvas: Canvas, facts: SignFacts, box: Box, unit: int) -> tuple[Booking, ...]:
    """The state banner: the state, and under it "until" or the next span; returns the
    bookings left for the "Next" part."""
    text_ink, detail_ink = _banner(canvas, facts, box, unit)
    inner = box.inset(unit * 3, unit * 2)
    detail, rest = _detail_segs(facts)
    segs = _state_segs(facts)
    side = inner.h * 62 // 100
    # Tall enough, and the two words do not fit side by side near full size: the English goes
    # under the Chinese on a line of its own, so neither shrinks to make room for the other.
    stack = False
    keep_en = 0.75  # the English goes once the pair would shrink below this share of the box
    if len(segs) == 2:
        probe = Box(0, 0, inner.w, side)
        alone = canvas.type.largest(segs[:1], probe, 12, side)
        if alone is not None:
            keep_en = alone.size * 85 / 100 / side  # side by side down to 85 % of the Chinese
            stack = side >= STACK_FROM and canvas.type.largest(
                segs, probe, alone.size * 85 // 100, side) is None
    if detail:
        state_h = inner.h * 72 // 100 if stack else side
        detail_box = Box(inner.x, inner.y + state_h, inner.w, inner.h - state_h)
        canvas.text("detail", detail, detail_box, detail_box.h, 10, detail_ink, align="center")
    else:
        state_h = inner.h
    state_box = Box(inner.x, inner.y, inner.w, state_h)
    if stack:
        zh_h = state_h * 64 // 100
        canvas.text("state", segs[:1], Box(inner.x, inner.y, inner.w, zh_h), zh_h, 12, text_ink,
                    align="center")
        en_box = Box(inner.x, inner.y + zh_h, inner.w, state_h - zh_h)
        canvas.text("state_en", [Seg(segs[1].text.strip())], en_box, en_box.h, 10, text_ink,
                    align="center")
        return rest
    canvas.text("state", segs, state_box, state_h, 12, text_ink, align="center",
                drop_below=keep_en)
    return rest


# -- next bookings ---------------------------------------------------------------------------


def draw_next_line(canvas: Canvas, facts: SignFacts, box: Box, rest: tuple[Booking, ...]) -> None:
    """Compact panels: "Next 11:30–12:00 · 14:00–15:30 +2" on one line, as many as fit."""
    size = box.h * 3 // 4
    if not rest:
        if not facts.closed:  # a closed sign says when it opens; "no more today" is noise
            canvas.text("next", [Seg(facts.t("none"), bold=False)], box, size, 10, Ink.BLACK)
        return
    spans = [facts.span(b) for b in rest]
    label = Seg(facts.t("next") + "  ")
    min_size = max(10, box.h * 3 // 5)  # fewer bookings, legible, before more, tiny
    for k in range(len(spans), 0, -1):
        more = len(spans) - k
        # The count matters more than its words: "+2" where "+2 more" does not fit.
        for tail in ((f"  {facts.t('more', n=more)}", f"  +{more}") if more else ("",)):
            body = "  ".join(spans[:k]) + tail
            plan = canvas.type.largest([label, Seg(body, bold=False)], box, min_size, size)
            if plan is not None:
                canvas.draw_plan("next", plan, box, Ink.BLACK)
                return
    canvas.text("next", [label, Seg(spans[0], bold=False)], box, size, 10, Ink.BLACK)


def draw_next_grid(canvas: Canvas, facts: SignFacts, box: Box, rest: tuple[Booking, ...],
                   unit: int) -> None:
    """Large panels: a heading, then the rest of the day's bookings in columns."""
    widest = "00:00" + DASH + "00:00"
    if any(b.start >= facts.day_end for b in rest):  # later days carry their weekday
        widest = facts.weekday(facts.day_end, facts.language) + " " + widest
    # The largest rows that still list every booking (or the smallest, with "+N more"): a day
    # with two meetings left shows them in large type, a crowded one in more, smaller rows.
    top = max(14, min(box.h // 2, unit * 10))
    for row in range(top, 13, -2):
        rows = max(1, (box.h - row) // row)
        size = row * 3 // 4
        sample = canvas.type.line([Seg(widest, bold=False)], size)
        col_w = max(1, sample.width + unit * 6)
        cols = max(1, min(box.w // col_w, len(rest)))
        if rows * cols >= len(rest):
            break
    label_box = Box(box.x, box.y, box.w, row)
    if not rest:
        if not facts.closed:
            canvas.text("next", [Seg(facts.t("none"))], label_box, row * 4 // 5, 10, Ink.BLACK)
        return
    canvas.text("next_label", [Seg(facts.t("next"))], label_box, row * 4 // 5, 10, Ink.BLACK)
    grid = Box(box.x, box.y + row, box.w, box.h - row)
    col_w = min(col_w, grid.w)  # a panel narrower than one span: the text shrinks to fit
    cap = rows * cols
    items = [facts.span(b) for b in rest]
    more = 0
    if len(items) > cap:
        more = len(items) - (cap - 1)
        items = items[: cap - 1]
    for i, s in enumerate([*items, ""] if more else items):
        r, col = divmod(i, cols)  # row-major: read across, then down, in time order
        cell = Box(grid.x + col * col_w, grid.y + r * row, col_w - unit, row)
        if s:
            canvas.text("next_item", [Seg(s, bold=False)], cell, size, 10, Ink.BLACK)
        else:  # the count matters more than the words: "+9" when "+9 more" does not fit
            canvas.text_first("more", [[Seg(facts.t("more", n=more))], [Seg(f"+{more}")]], cell,
                              size, 10, Ink.BLACK)


# -- timeline --------------------------------------------------------------------------------


def draw_timeline(canvas: Canvas, facts: SignFacts, box: Box, unit: int) -> None:
    """A day bar (07-21 h, widened to the day's bookings) with booked blocks and a now-marker."""
    start_h, end_h = DAY_START_HOUR, DAY_END_HOUR
    for b in facts.day:
        s = b.start.astimezone(facts.tz)
        e = b.end.astimezone(facts.tz)
        start_h = min(start_h, s.hour if s.date() == facts.day_start.date() else 0)
        e_hours = 24 if e >= facts.day_end else e.hour + (1 if e.minute or e.second else 0)
        end_h = max(end_h, e_hours)
    t0 = facts.day_start + timedelta(hours=start_h)
    t1 = facts.day_start + timedelta(hours=end_h)
    span_s = (t1 - t0).total_seconds()
    inner = box.inset(unit, 0)
    label_h = max(10, box.h * 30 // 100)
    marker_h = max(4, box.h * 22 // 100)
    bar = Box(inner.x, box.y + marker_h, inner.w, max(4, box.h - marker_h - label_h - unit))

    def x_at(t: datetime) -> int:
        frac = min(1.0, max(0.0, (t - t0).total_seconds() / span_s))
        return bar.x + round(frac * (bar.w - 1))

    for b in facts.day:
        x0, x1 = x_at(b.start), x_at(b.end)
        ink = Ink.RED if b is facts.current else Ink.BLACK
        canvas.rect(Box(x0, bar.y, max(1, x1 - x0), bar.h), ink)
    canvas.frame(bar, Ink.BLACK, max(1, unit // 2))
    # Hour ticks every hour, labels as often as they fit.
    big_tick = max(2, unit)
    label_room = Box(0, 0, box.w, box.bottom - bar.bottom - big_tick)
    probe = canvas.type.largest([Seg("00", bold=False)], label_room, 8, label_h)
    hours = end_h - start_h
    px_per_h = bar.w / max(1, hours)
    width = probe.width if probe else box.w
    step = next((s for s in (1, 2, 3, 4, 6, 12) if s * px_per_h >= width * 1.6), 24)
    for h in range(start_h, end_h + 1):
        x = x_at(facts.day_start + timedelta(hours=h))
        labelled = (h - start_h) % step == 0
        tick = big_tick if labelled else max(1, unit // 2)
        canvas.rect(Box(x, bar.bottom, 1, tick), Ink.BLACK)
        if labelled and probe is not None:
            # One size for all labels (measured once above); digits share one advance width.
            plan = canvas.type.single([Seg(f"{h:02d}", bold=False)], probe.size)
            lx = min(max(box.x, x - plan.width // 2), box.right - plan.width)
            canvas.draw_plan("hour", plan, Box(lx, bar.bottom + big_tick, plan.width, label_room.h),
                             Ink.BLACK, valign="top")
    if t0 <= facts.now <= t1:
        x = x_at(facts.now)
        half = max(3, marker_h * 2 // 3)
        top = box.y
        canvas.polygon([(x - half, top), (x + half, top), (x, top + marker_h - 1)],
                       Ink.RED if canvas.has_red else Ink.BLACK)
        canvas.rect(Box(x - max(0, unit // 2 - 1), bar.y, max(1, unit // 2), bar.h), Ink.WHITE)
