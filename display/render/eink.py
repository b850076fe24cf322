"""E-ink renderer: a :class:`~display.model.RoomView` as the bit planes of a sign.

Pure and deterministic: everything drawn comes from the view (``occupancy.at`` is "now") and the
device config; nothing reads the clock or touches a device. Drawing happens directly on mode
``"1"`` images with ``fontmode = "1"``, so text is crisp 1-bit with no dithering.

Layout, in the *logical* orientation (the panel's size, transposed for rotation 90/270):

* compact (height < 200 px, e.g. 250x122, 296x128): room name and update time; a state banner
  (state in large type and the current span / "until"); the next bookings on one line.
* large (e.g. 400x300, 800x480): the same, plus the rest of the day's bookings in columns and a
  day timeline (07:00-21:00, widened to cover the day's bookings) with a now-marker.

Banners: free is an outlined banner (white), soon a thick outline (red on ``bwr``), busy and
ending a solid banner with white type (red on ``bwr``, black on ``bw``), so "dark or red = taken"
reads from a distance. A stale view gets a warning triangle and "as of HH:MM" in the header.

Every string is fitted to its box: shrunk down to a minimum size, then wrapped (room names), then
ellipsised; :func:`compose` reports where each string went so tests can check nothing overflows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw

from display.config import DeviceConfig
from display.model import Booking, RoomView, State
from display.render.fonts import Font, Fonts, default_fonts, needs_cjk
from display.render.types import Palette, SignImage

ELLIPSIS = "…"
DASH = "–"  # en dash between the two times of a span
COMPACT_BELOW = 200  # logical heights below this get the compact layout
DAY_START_HOUR = 7
DAY_END_HOUR = 21

# key: (zh, en, zh+en). "{t}" is a time, "{n}" a count.
TEXTS: dict[str, tuple[str, str, str]] = {
    "free": ("空闲", "Free", "空闲|Free"),
    "soon": ("即将开始", "Starting soon", "即将开始|Starting soon"),
    "busy": ("使用中", "In use", "使用中|In use"),
    "ending": ("即将结束", "Ending soon", "即将结束|Ending soon"),
    "until": ("至 {t}", "until {t}", "至 / until {t}"),
    "from": ("{t} 开始", "from {t}", "{t} 开始 / from {t}"),
    "next": ("下一场", "Next", "下一场 Next"),
    "as_of": ("更新于 {t}", "as of {t}", "更新于 / as of {t}"),
    "none": ("今日无更多预订", "No more bookings today", "今日无更多预订 · No more bookings today"),
    "more": ("另有 {n} 场", "+{n} more", "另有 {n} 场 / +{n} more"),
}
_LANG_INDEX = {"zh": 0, "en": 1, "zh+en": 2}


def text(key: str, language: str, **values: object) -> str:
    """The sign's wording for ``key`` in ``language`` (``zh``, ``en`` or ``zh+en``).

    State words in ``zh+en`` come back as ``"中文|English"``: the renderer draws the English part
    smaller after the Chinese one.
    """
    return TEXTS[key][_LANG_INDEX.get(language, 1)].format(**values)


class Ink(Enum):
    """What a drawn pixel becomes on the panel."""

    WHITE = 0
    BLACK = 1
    RED = 2  # black on a bw panel


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in logical pixels; ``right``/``bottom`` are exclusive."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """First column to the right of the box."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """First row below the box."""
        return self.y + self.h

    def inset(self, dx: int, dy: int | None = None) -> Box:
        """The box shrunk by ``dx`` left and right and ``dy`` (default ``dx``) top and bottom."""
        dy = dx if dy is None else dy
        return Box(self.x + dx, self.y + dy, max(0, self.w - 2 * dx), max(0, self.h - 2 * dy))

    def contains(self, bbox: tuple[int, int, int, int]) -> bool:
        """True if ``(x0, y0, x1, y1)`` (exclusive ends) lies inside this box."""
        x0, y0, x1, y1 = bbox
        return self.x <= x0 and self.y <= y0 and x1 <= self.right and y1 <= self.bottom


@dataclass(frozen=True, slots=True)
class Seg:
    """A run of text on one line: ``scale`` times the line's size; ``optional`` runs are dropped
    before the line shrinks much."""

    text: str
    scale: float = 1.0
    bold: bool = True
    optional: bool = False


@dataclass(frozen=True, slots=True)
class PlacedText:
    """A string as drawn: the box it had to fit, its ink bounds, the text after wrapping or
    ellipsis (lines joined by newlines) and the font size used."""

    role: str
    box: Box
    bbox: tuple[int, int, int, int]
    text: str
    size: int
    truncated: bool


@dataclass(frozen=True)
class Composition:
    """A rendered sign with the layout that produced it (logical coordinates, pre-rotation)."""

    sign: SignImage
    logical_size: tuple[int, int]
    regions: dict[str, Box]
    texts: tuple[PlacedText, ...]


# -- fitting text ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Run:
    text: str
    font: Font
    stroke: int
    dx: int  # offset of the run's origin from the line's origin


@dataclass(frozen=True, slots=True)
class _Line:
    runs: tuple[_Run, ...]
    ink: tuple[int, int, int, int]  # relative to (line origin x, baseline)
    ascent: int
    descent: int

    @property
    def width(self) -> int:
        return self.ink[2] - self.ink[0]

    @property
    def height(self) -> int:
        # The taller of the font's line box and the actual ink, so lines keep a steady pitch.
        return max(self.ascent + self.descent, self.ink[3] - self.ink[1])


@dataclass(frozen=True, slots=True)
class _Plan:
    lines: tuple[_Line, ...]
    size: int
    truncated: bool

    @property
    def width(self) -> int:
        return max((ln.width for ln in self.lines), default=0)

    @property
    def height(self) -> int:
        return sum(ln.height for ln in self.lines)


def _stroke(font_is_cjk: bool, bold: bool, size: int) -> int:
    # CJK faces in Debian ship no bold; a stroke thickens big glyphs without smearing small ones.
    return size // 24 if font_is_cjk and bold else 0


class _Typesetter:
    """Measures and fits text with one :class:`Fonts`."""

    MAX_CACHED = 20_000  # measured lines kept; a sign needs ~150, so this spans many rooms

    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        # Signs are redrawn with mostly the same strings (room name, spans), and measuring is
        # most of a render's cost, so measured lines are kept. Lines are immutable.
        self._lines: dict[tuple[tuple[Seg, ...], int, str | None], _Line] = {}

    def _pick(self, face_text: str, size: int, bold: bool) -> tuple[Font, int]:
        return (self.fonts.font(face_text, size, bold=bold),
                _stroke(needs_cjk(face_text), bold, size))

    def line(self, segs: Sequence[Seg], size: int, face_text: str | None = None) -> _Line:
        """Lay ``segs`` on one baseline at base ``size``; ``face_text`` picks the font for all
        (so wrapped lines of one string share a face)."""
        key = (tuple(segs), size, face_text)
        found = self._lines.get(key)
        if found is None:
            if len(self._lines) >= self.MAX_CACHED:
                self._lines.clear()
            found = self._lines[key] = self._measure(segs, size, face_text)
        return found

    def _measure(self, segs: Sequence[Seg], size: int, face_text: str | None) -> _Line:
        runs: list[_Run] = []
        x = 0
        x0 = y0 = 1 << 30
        x1 = y1 = -(1 << 30)
        asc = desc = 0
        for seg in segs:
            s = max(1, round(size * seg.scale))
            font, sw = self._pick(face_text if face_text is not None else seg.text, s, seg.bold)
            a, d = font.getmetrics()
            asc, desc = max(asc, a + sw), max(desc, d + sw)
            if seg.text.strip():
                bl, bt, br, bb = font.getbbox(seg.text, anchor="ls", stroke_width=sw)
                x0, y0 = min(x0, x + int(bl)), min(y0, int(bt))
                x1, y1 = max(x1, x + int(br)), max(y1, int(bb))
            runs.append(_Run(seg.text, font, sw, x))
            x += round(font.getlength(seg.text)) + sw
        if x1 < x0:  # nothing visible
            x0 = y0 = x1 = y1 = 0
        return _Line(tuple(runs), (x0, y0, x1, y1), asc, desc)

    def _fits(self, plan: _Plan, box: Box) -> bool:
        return plan.width <= box.w and plan.height <= box.h

    def single(self, segs: Sequence[Seg], size: int) -> _Plan:
        return _Plan((self.line(segs, size),), size, truncated=False)

    def largest(self, segs: Sequence[Seg], box: Box, lo: int, hi: int) -> _Plan | None:
        """The largest single-line plan with size in ``[lo, hi]`` that fits, by bisection
        (text grows with size, so fitting is monotonic)."""
        if lo > hi:
            return None
        top = self.single(segs, hi)
        if self._fits(top, box):
            return top
        hi -= 1
        # Text scales about linearly with size, so the estimate is within a size or two of the
        # answer: bisect on whichever side of it the answer lies.
        ratio = min(box.w / max(1, top.width), box.h / max(1, top.height))
        guess = max(lo, min(hi, int((hi + 1) * ratio)))
        if self._fits(best := self.single(segs, guess), box):
            lo = guess
        elif guess == lo:
            return None
        else:
            hi = guess - 1
            if not self._fits(best := self.single(segs, lo), box):
                return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            plan = self.single(segs, mid)
            if self._fits(plan, box):
                lo, best = mid, plan
            else:
                hi = mid - 1
        return best

    def fit(self, segs: Sequence[Seg], box: Box, max_size: int, min_size: int, *,
            wrap: bool = False, drop_below: float = 0.75) -> _Plan | None:
        """Fit ``segs`` in ``box``: shrink (optional runs go first, once the size would fall
        below ``drop_below`` of ``max_size``), then wrap (if ``wrap``), then ellipsise. ``None``
        if not even an ellipsis fits."""
        segs = [s for s in segs if s.text]
        if not segs or box.w <= 0 or box.h <= 0:
            return None
        max_size = max(min_size, max_size)
        if any(s.optional for s in segs):
            plan = self.largest(segs, box, max(min_size, int(max_size * drop_below)), max_size)
            if plan is not None:
                return plan
            segs = [s for s in segs if not s.optional]
        plan = self.largest(segs, box, min_size, max_size)
        if plan is not None:
            return plan
        if wrap and len(segs) == 1:
            return self._wrap(segs[0], box, min_size)
        return self._ellipsise(segs, box, min_size)

    def _ellipsise(self, segs: Sequence[Seg], box: Box, size: int) -> _Plan | None:
        # Shorten the last run; drop runs that vanish entirely.
        segs = list(segs)
        while segs:
            last = segs[-1]
            body = last.text.rstrip()
            lo, hi = 0, len(body)  # number of characters kept
            best: _Line | None = None
            while lo <= hi:
                mid = (lo + hi) // 2
                cand = [*segs[:-1], Seg(body[:mid].rstrip() + ELLIPSIS, last.scale, last.bold)]
                ln = self.line(cand, size)
                if ln.width <= box.w and ln.height <= box.h:
                    best, lo = ln, mid + 1
                else:
                    hi = mid - 1
            if best is not None:
                return _Plan((best,), size, truncated=True)
            segs.pop()
        return None

    def _wrap(self, seg: Seg, box: Box, size: int) -> _Plan | None:
        face = seg.text

        def fits(s: str) -> bool:
            return self.line([Seg(s, seg.scale, seg.bold)], size, face).width <= box.w

        probe = self.line([Seg(seg.text, seg.scale, seg.bold)], size, face)
        room = box.h // max(1, probe.height)
        if room == 0:
            return self._ellipsise([seg], box, size)
        lines: list[str] = []
        tokens = _tokens(seg.text)[::-1]  # a stack: next token last
        cur = ""
        while tokens and len(lines) < room:
            tok = tokens.pop()
            if fits(cur + tok):
                cur += tok
            elif cur.strip():
                lines.append(cur.rstrip())
                cur = ""
                tokens.append(tok.lstrip())
            else:  # a token wider than the box on its own: break it by characters
                lo, hi = 1, len(tok) - 1  # keep at least one character per line
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if fits(tok[:mid]) else (lo, mid - 1)
                lines.append(tok[:lo])
                if tok[lo:]:
                    tokens.append(tok[lo:])
        rest = cur + "".join(reversed(tokens))
        if rest.strip() and len(lines) < room:
            lines.append(rest.strip())
            rest = ""
        truncated = bool(rest.strip())
        if truncated:
            lines[-1] = lines[-1] + rest
        out: list[_Line] = []
        for s in lines:
            ln = self.line([Seg(s, seg.scale, seg.bold)], size, face)
            if ln.width > box.w:  # the last line with the rest, or one glyph wider than the box
                p = self._ellipsise([Seg(s, seg.scale, seg.bold)], box, size)
                if p is None:
                    break
                ln, truncated = p.lines[0], True
            out.append(ln)
        return _Plan(tuple(out), size, truncated) if out else None


@functools.lru_cache(maxsize=8)
def _typesetter(fonts: Fonts) -> _Typesetter:
    return _Typesetter(fonts)


def _tokens(s: str) -> list[str]:
    """Break points for wrapping: words with their trailing spaces; each CJK character alone."""
    out: list[str] = []
    cur = ""
    for ch in s:
        if needs_cjk(ch):
            if cur:
                out.append(cur)
            out.append(ch)
            cur = ""
        elif ch == " ":
            cur += ch
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


# -- the canvas ------------------------------------------------------------------------------


class _Canvas:
    """The black (and red) planes, drawn together so a pixel is never both black and red."""

    def __init__(self, size: tuple[int, int], palette: Palette, fonts: Fonts) -> None:
        self.size = size
        self.black = Image.new("1", size, 1)
        self.red = Image.new("1", size, 1) if palette is Palette.BWR else None
        self._draws = [ImageDraw.Draw(self.black)]
        if self.red is not None:
            self._draws.append(ImageDraw.Draw(self.red))
        for d in self._draws:
            d.fontmode = "1"  # crisp 1-bit glyphs, no anti-alias threshold artefacts
        self.type = _typesetter(fonts)
        self.placed: list[PlacedText] = []

    @property
    def has_red(self) -> bool:
        return self.red is not None

    def _fills(self, ink: Ink) -> list[tuple[ImageDraw.ImageDraw, int]]:
        if ink is Ink.RED and self.red is None:
            ink = Ink.BLACK
        values = [0 if ink is Ink.BLACK else 1]
        if self.red is not None:
            values.append(0 if ink is Ink.RED else 1)
        return list(zip(self._draws, values, strict=True))

    def rect(self, box: Box, ink: Ink) -> None:
        if box.w <= 0 or box.h <= 0:
            return
        for d, v in self._fills(ink):
            d.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), fill=v)

    def frame(self, box: Box, ink: Ink, width: int) -> None:
        """An outline of ``width`` pixels just inside ``box``."""
        for d, v in self._fills(ink):
            d.rectangle((box.x, box.y, box.right - 1, box.bottom - 1), outline=v, width=width)

    def polygon(self, points: Sequence[tuple[int, int]], ink: Ink) -> None:
        for d, v in self._fills(ink):
            d.polygon(list(points), fill=v)

    def text(self, role: str, segs: Sequence[Seg], box: Box, max_size: int, min_size: int,
             ink: Ink, *, align: str = "left", valign: str = "center", wrap: bool = False,
             drop_below: float = 0.75) -> PlacedText | None:
        """Fit and draw ``segs`` in ``box``; returns where the ink went."""
        plan = self.type.fit(segs, box, max_size, min_size, wrap=wrap, drop_below=drop_below)
        if plan is None:
            return None
        return self.draw_plan(role, plan, box, ink, align=align, valign=valign)

    def text_first(self, role: str, candidates: Sequence[Sequence[Seg]], box: Box, max_size: int,
                   min_size: int, ink: Ink, *, align: str = "left",
                   valign: str = "center") -> PlacedText | None:
        """Draw the first candidate that fits whole at ``min_size`` or more (e.g. "as of 10:05",
        then "10:05"); the last one is ellipsised if nothing fits."""
        for segs in candidates[:-1]:
            plan = self.type.largest(segs, box, min_size, max(min_size, max_size))
            if plan is not None:
                return self.draw_plan(role, plan, box, ink, align=align, valign=valign)
        return self.text(role, candidates[-1], box, max_size, min_size, ink, align=align,
                         valign=valign)

    def draw_plan(self, role: str, plan: _Plan, box: Box, ink: Ink, *, align: str = "left",
                  valign: str = "center") -> PlacedText:
        total = plan.height
        if valign == "top":
            y = box.y
        elif valign == "bottom":
            y = box.bottom - total
        else:
            y = box.y + (box.h - total) // 2
        ux0 = uy0 = 1 << 30
        ux1 = uy1 = -(1 << 30)
        for ln in plan.lines:
            x0, y0, x1, y1 = ln.ink
            if align == "center":
                left = box.x + (box.w - ln.width) // 2
            elif align == "right":
                left = box.right - ln.width
            else:
                left = box.x
            ox = left - x0
            # Baseline at the font's ascent below the line top, nudged so ink stays in the line.
            base = y + ln.ascent
            base = max(base, y - y0)
            base = min(base, y + ln.height - y1)
            for run in ln.runs:
                for d, v in self._fills(ink):
                    d.text((ox + run.dx, base), run.text, font=run.font, fill=v, anchor="ls",
                           stroke_width=run.stroke, stroke_fill=v)
            ux0, uy0 = min(ux0, ox + x0), min(uy0, base + y0)
            ux1, uy1 = max(ux1, ox + x1), max(uy1, base + y1)
            y += ln.height
        shown = "\n".join("".join(r.text for r in ln.runs) for ln in plan.lines)
        placed = PlacedText(role, box, (ux0, uy0, ux1, uy1), shown, plan.size, plan.truncated)
        self.placed.append(placed)
        return placed


# -- what the sign says ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
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

    def hm(self, dt: datetime) -> str:
        return dt.astimezone(self.tz).strftime("%H:%M")

    def span(self, b: Booking) -> str:
        return f"{self.hm(b.start)}{DASH}{self.hm(b.end)}"

    def t(self, key: str, **values: object) -> str:
        return text(key, self.language, **values)


def _facts(view: RoomView, device: DeviceConfig) -> _Facts:
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
        # Back-to-back and overlapping bookings are one block (DESIGN.md): "until" is its end.
        block_end = cur.end
        for b in day:
            if b.start <= block_end < b.end:
                block_end = b.end
    upcoming = tuple(b for b in day if b.start > now and b is not cur
                     and (block_end is None or b.start >= block_end))
    language = device.language or view.language
    return _Facts(state=occ.state, language=language if language in _LANG_INDEX else "en", tz=tz,
                  now=now, day_start=day_start, day_end=day_end, current=cur,
                  block_end=block_end, upcoming=upcoming, day=day, as_of=view.as_of,
                  stale=view.stale, name=view.name)


def _state_segs(f: _Facts) -> list[Seg]:
    word = f.t(f.state.value)
    if "|" in word:
        zh, en = word.split("|", 1)
        return [Seg(zh), Seg("  " + en, 0.45, optional=True)]
    return [Seg(word)]


def _detail_segs(f: _Facts) -> tuple[list[Seg], tuple[Booking, ...]]:
    """The banner's second line and the bookings still left for the "Next" list."""
    rest = f.upcoming
    if f.state.occupied and f.current is not None and f.block_end is not None:
        return [Seg(f.t("until", t=f.hm(f.block_end))),
                Seg("   " + f.span(f.current), 0.75, bold=False, optional=True)], rest
    if f.state is State.SOON and rest:
        return [Seg(f.span(rest[0]))], rest[1:]
    if rest:  # free until the next booking
        return [Seg(f.t("until", t=f.hm(rest[0].start)))], rest
    return [], rest


# -- layout ----------------------------------------------------------------------------------


def _banner(c: _Canvas, f: _Facts, box: Box, unit: int) -> tuple[Ink, Ink]:
    """Draw the state banner's background; returns (text ink, detail ink)."""
    if f.state is State.FREE:
        c.frame(box, Ink.BLACK, max(1, unit // 2))
        return Ink.BLACK, Ink.BLACK
    if f.state is State.SOON:
        colour = Ink.RED if c.has_red else Ink.BLACK
        c.frame(box, colour, max(3, unit * 2))
        return colour, Ink.BLACK
    c.rect(box, Ink.RED)  # busy / ending: solid (black where there is no red)
    return Ink.WHITE, Ink.WHITE


def _stale_icon(c: _Canvas, box: Box) -> None:
    """A warning triangle with "!" drawn from shapes (no font needed, crisp at any size)."""
    s = min(box.w, box.h)
    x, y = box.x, box.y + (box.h - s) // 2
    c.polygon([(x, y + s - 1), (x + s // 2, y), (x + s - 1, y + s - 1)],
              Ink.RED if c.has_red else Ink.BLACK)
    bar_w = max(2, s // 8)
    cx = x + s // 2 - bar_w // 2
    c.rect(Box(cx, y + s * 3 // 8, bar_w, s * 5 // 16), Ink.WHITE)
    c.rect(Box(cx, y + s * 3 // 4, bar_w, max(2, s // 9)), Ink.WHITE)


def _asof_plan(c: _Canvas, f: _Facts, box: Box, size: int, bold: bool) -> _Plan | None:
    """"as of 10:05", or just "10:05" where that does not fit: a time is never ellipsised."""
    hm = f.hm(f.as_of)
    for candidate in (f.t("as_of", t=hm), text("as_of", "en", t=hm), hm):
        plan = c.type.largest([Seg(candidate, bold=bold)], box, min(10, size), size)
        if plan is not None:
            return plan
    return None


def _header(c: _Canvas, f: _Facts, box: Box, unit: int, *, show_asof: bool) -> None:
    m = unit
    inner = box.inset(m, max(1, m // 2))
    used = 0
    if show_asof:
        # Right: the update time; on a stale view a warning triangle and a bolder "as of".
        small = max(10, round(inner.h * (0.42 if f.stale else 0.34)))
        icon = inner.h if f.stale else 0
        room = Box(0, 0, max(0, inner.w * 2 // 5 - icon), inner.h)
        plan = _asof_plan(c, f, room, small, f.stale)
        used = (plan.width if plan else 0) + (icon + m if icon else 0)
        if plan is not None:
            c.draw_plan("as_of", plan, Box(inner.right - plan.width, inner.y, plan.width,
                                           inner.h), Ink.BLACK, align="right")
        if icon:
            _stale_icon(c, Box(inner.right - used, inner.y, icon, inner.h))
    name_box = Box(inner.x, inner.y, max(0, inner.w - used - 2 * m), inner.h)
    c.text("name", [Seg(f.name)], name_box, inner.h, max(11, inner.h // 3), Ink.BLACK,
           wrap=True)


def _stale_line(c: _Canvas, f: _Facts, box: Box, unit: int) -> None:
    """Compact panels when stale: the warning replaces the "Next" line, which may be wrong."""
    icon = box.h
    _stale_icon(c, Box(box.x, box.y, icon, box.h))
    rest = Box(box.x + icon + 2 * unit, box.y, max(0, box.w - icon - 2 * unit), box.h)
    plan = _asof_plan(c, f, rest, box.h * 3 // 4, True)
    if plan is not None:
        c.draw_plan("as_of", plan, rest, Ink.BLACK)


def _state_block(c: _Canvas, f: _Facts, box: Box, unit: int) -> tuple[Booking, ...]:
    text_ink, detail_ink = _banner(c, f, box, unit)
    inner = box.inset(unit * 3, unit * 2)
    detail, rest = _detail_segs(f)
    if detail:
        state_h = inner.h * 62 // 100
        detail_box = Box(inner.x, inner.y + state_h, inner.w, inner.h - state_h)
        c.text("detail", detail, detail_box, detail_box.h, 10, detail_ink, align="center")
    else:
        state_h = inner.h
    c.text("state", _state_segs(f), Box(inner.x, inner.y, inner.w, state_h), state_h, 12,
           text_ink, align="center")
    return rest


def _next_line(c: _Canvas, f: _Facts, box: Box, rest: tuple[Booking, ...]) -> None:
    """Compact panels: "Next 11:30–12:00 · 14:00–15:30 +2" on one line, as many as fit."""
    size = box.h * 3 // 4
    if not rest:
        c.text("next", [Seg(f.t("none"), bold=False)], box, size, 10, Ink.BLACK)
        return
    spans = [f.span(b) for b in rest]
    label = Seg(f.t("next") + "  ")
    min_size = max(10, box.h * 2 // 5)
    for k in range(len(spans), 0, -1):
        more = len(spans) - k
        body = "  ".join(spans[:k]) + (f"  {f.t('more', n=more)}" if more else "")
        plan = c.type.largest([label, Seg(body, bold=False)], box, min_size, size)
        if plan is not None:
            c.draw_plan("next", plan, box, Ink.BLACK)
            return
    c.text("next", [label, Seg(spans[0], bold=False)], box, size, 10, Ink.BLACK)


def _next_grid(c: _Canvas, f: _Facts, box: Box, rest: tuple[Booking, ...], unit: int) -> None:
    """Large panels: a heading, then the rest of the day's bookings in columns."""
    row = max(14, min(box.h // 4, unit * 8))
    label_box = Box(box.x, box.y, box.w, row)
    if not rest:
        c.text("next", [Seg(f.t("none"))], label_box, row * 4 // 5, 10, Ink.BLACK)
        return
    c.text("next_label", [Seg(f.t("next"))], label_box, row * 4 // 5, 10, Ink.BLACK)
    grid = Box(box.x, box.y + row, box.w, box.h - row)
    rows = max(1, grid.h // row)
    size = row * 3 // 4
    sample = c.type.line([Seg("00:00" + DASH + "00:00", bold=False)], size)
    col_w = max(1, sample.width + unit * 6)
    cols = max(1, min(grid.w // col_w, len(rest)))
    col_w = min(col_w, grid.w)  # a panel narrower than one span: the text shrinks to fit
    cap = rows * cols
    items = [f.span(b) for b in rest]
    more = 0
    if len(items) > cap:
        more = len(items) - (cap - 1)
        items = items[: cap - 1]
    for i, s in enumerate([*items, ""] if more else items):
        r, col = divmod(i, cols)  # row-major: read across, then down, in time order
        cell = Box(grid.x + col * col_w, grid.y + r * row, col_w - unit, row)
        if s:
            c.text("next_item", [Seg(s, bold=False)], cell, size, 10, Ink.BLACK)
        else:  # the count matters more than the words: "+9" when "+9 more" does not fit
            c.text_first("more", [[Seg(f.t("more", n=more))], [Seg(f"+{more}")]], cell, size,
                         10, Ink.BLACK)


def _timeline(c: _Canvas, f: _Facts, box: Box, unit: int) -> None:
    """A day bar (07-21 h, widened to the day's bookings) with booked blocks and a now-marker."""
    start_h, end_h = DAY_START_HOUR, DAY_END_HOUR
    for b in f.day:
        s = b.start.astimezone(f.tz)
        e = b.end.astimezone(f.tz)
        start_h = min(start_h, s.hour if s.date() == f.day_start.date() else 0)
        e_hours = 24 if e >= f.day_end else e.hour + (1 if e.minute or e.second else 0)
        end_h = max(end_h, e_hours)
    t0 = f.day_start + timedelta(hours=start_h)
    t1 = f.day_start + timedelta(hours=end_h)
    span_s = (t1 - t0).total_seconds()
    inner = box.inset(unit, 0)
    label_h = max(10, box.h * 30 // 100)
    marker_h = max(4, box.h * 22 // 100)
    bar = Box(inner.x, box.y + marker_h, inner.w, max(4, box.h - marker_h - label_h - unit))

    def x_at(t: datetime) -> int:
        frac = min(1.0, max(0.0, (t - t0).total_seconds() / span_s))
        return bar.x + round(frac * (bar.w - 1))

    for b in f.day:
        x0, x1 = x_at(b.start), x_at(b.end)
        ink = Ink.RED if b is f.current else Ink.BLACK
        c.rect(Box(x0, bar.y, max(1, x1 - x0), bar.h), ink)
    c.frame(bar, Ink.BLACK, max(1, unit // 2))
    # Hour ticks every hour, labels as often as they fit.
    big_tick = max(2, unit)
    label_room = Box(0, 0, box.w, box.bottom - bar.bottom - big_tick)
    probe = c.type.largest([Seg("00", bold=False)], label_room, 8, label_h)
    hours = end_h - start_h
    px_per_h = bar.w / max(1, hours)
    width = probe.width if probe else box.w
    step = next((s for s in (1, 2, 3, 4, 6, 12) if s * px_per_h >= width * 1.6), 24)
    for h in range(start_h, end_h + 1):
        x = x_at(f.day_start + timedelta(hours=h))
        labelled = (h - start_h) % step == 0
        tick = big_tick if labelled else max(1, unit // 2)
        c.rect(Box(x, bar.bottom, 1, tick), Ink.BLACK)
        if labelled and probe is not None:
            # One size for all labels (measured once above); digits share one advance width.
            plan = c.type.single([Seg(f"{h:02d}", bold=False)], probe.size)
            lx = min(max(box.x, x - plan.width // 2), box.right - plan.width)
            c.draw_plan("hour", plan, Box(lx, bar.bottom + big_tick, plan.width, label_room.h),
                        Ink.BLACK, valign="top")
    if t0 <= f.now <= t1:
        x = x_at(f.now)
        half = max(3, marker_h * 2 // 3)
        top = box.y
        c.polygon([(x - half, top), (x + half, top), (x, top + marker_h - 1)],
                  Ink.RED if c.has_red else Ink.BLACK)
        c.rect(Box(x - max(0, unit // 2 - 1), bar.y, max(1, unit // 2), bar.h), Ink.WHITE)


def _regions(w: int, h: int) -> tuple[dict[str, Box], int]:
    unit = max(1, min(w, h) // 100 + 1)  # stroke/margin unit: 2 px at 128, 5 px at 480
    if h < COMPACT_BELOW:
        hh = round(h * 0.21)
        hb = round(h * 0.50)
        return {
            "header": Box(0, 0, w, hh),
            "banner": Box(0, hh, w, hb),
            "next": Box(unit * 2, hh + hb + unit, w - unit * 4, h - hh - hb - 2 * unit),
        }, unit
    hh = round(h * 0.14)
    hb = round(h * 0.34)
    ht = round(h * 0.16)
    gap = unit * 2
    return {
        "header": Box(0, 0, w, hh),
        "banner": Box(0, hh, w, hb),
        "next": Box(unit * 3, hh + hb + gap, w - unit * 6, h - hh - hb - ht - 2 * gap),
        "timeline": Box(unit * 2, h - ht, w - unit * 4, ht - unit),
    }, unit


def compose(view: RoomView, device: DeviceConfig, *, fonts: Fonts | None = None) -> Composition:
    """Render ``view`` for ``device`` and report the layout (for tests and ``preview``).

    Raises :class:`~display.render.fonts.FontMissingError` if Chinese is to be drawn and no CJK
    font is installed.
    """
    fonts = fonts or default_fonts()
    rotation = device.rotation % 360
    pw, ph = device.size
    w, h = (ph, pw) if rotation in (90, 270) else (pw, ph)
    f = _facts(view, device)
    if f.language != "en":
        fonts.require_cjk()  # fail with the package name even if this view happens to be ASCII
    c = _Canvas((w, h), device.palette, fonts)
    regions, unit = _regions(w, h)
    compact = "timeline" not in regions
    # A compact stale sign puts the warning on its own line, where it is big enough to notice.
    _header(c, f, regions["header"], unit, show_asof=not (compact and f.stale))
    rest = _state_block(c, f, regions["banner"], unit)
    if not compact:
        _next_grid(c, f, regions["next"], rest, unit)
        _timeline(c, f, regions["timeline"], unit)
    elif f.stale:
        _stale_line(c, f, regions["next"], unit)
    else:
        _next_line(c, f, regions["next"], rest)
    black, red = c.black, c.red
    if rotation:
        # ``rotation`` is clockwise, as luma.core counts it; transposes are exact on 1-bit.
        op = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_90}[rotation]
        black = black.transpose(op)
        red = red.transpose(op) if red is not None else None
    return Composition(SignImage(black=black, red=red), (w, h), regions, tuple(c.placed))


def render_sign(view: RoomView, device: DeviceConfig, *, fonts: Fonts | None = None) -> SignImage:
    """The e-ink image of ``view`` for ``device``: bit planes in the panel's native orientation.

    Size, palette (``bw``/``bwr``), rotation (0/90/180/270, clockwise) and language (the
    device's, else the view's) come from ``device``; fonts from ``fonts`` or
    :func:`~display.render.fonts.default_fonts`.
    """
    return compose(view, device, fonts=fonts).sign
