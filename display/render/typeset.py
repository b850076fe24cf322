"""The typesetter: measures runs of text and fits them to a box, as a :class:`TextPlan`.

Fitting shrinks a string down to a minimum size, then wraps it (room names), then ellipsises it.
Measuring is most of a render's cost, so a :class:`Typesetter` keeps the lines it has measured,
and one typesetter serves every render with the same :class:`~display.render.fonts.Fonts`.
Nothing here draws: :class:`~display.render.canvas.Canvas` draws the plans.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from display.render.fonts import Font, FontKey, Fonts, load, needs_cjk
from display.render.geometry import Box

ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Seg:
    """A run of text on one line: ``scale`` times the line's size; ``optional`` runs are dropped
    before the line shrinks much."""

    text: str
    scale: float = 1.0
    bold: bool = True
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """A :class:`Seg` as measured: its font, stroke and where it starts on the line.

    It keeps the font's key, not the font: the typesetter caches thousands of lines, and a
    held font keeps its file mapped (see :data:`~display.render.fonts.FONTS_KEPT`).
    """

    text: str
    font_key: FontKey
    stroke: int
    dx: int  # offset of the run's origin from the line's origin

    @property
    def font(self) -> Font:
        """The font to draw the run with."""
        return load(self.font_key)


@dataclass(frozen=True, slots=True)
class Line:
    """Runs laid on one baseline, with their ink bounds and the line's font metrics."""

    runs: tuple[Run, ...]
    ink: tuple[int, int, int, int]  # relative to (line origin x, baseline)
    ascent: int
    descent: int

    @property
    def width(self) -> int:
        """Width of the ink."""
        return self.ink[2] - self.ink[0]

    @property
    def height(self) -> int:
        """Height the line takes in a block of lines."""
        # The taller of the font's line box and the actual ink, so lines keep a steady pitch.
        return max(self.ascent + self.descent, self.ink[3] - self.ink[1])


@dataclass(frozen=True, slots=True)
class TextPlan:
    """A string fitted to a box: its lines, the size used and whether text was cut."""

    lines: tuple[Line, ...]
    size: int
    truncated: bool

    @property
    def width(self) -> int:
        """Width of the widest line."""
        return max((ln.width for ln in self.lines), default=0)

    @property
    def height(self) -> int:
        """Height of all lines stacked."""
        return sum(ln.height for ln in self.lines)


def _stroke(font_is_cjk: bool, bold: bool, size: int) -> int:
    # CJK faces in Debian ship no bold; a stroke thickens big glyphs without smearing small ones.
    return size // 24 if font_is_cjk and bold else 0


class Typesetter:
    """Measures and fits text with one :class:`Fonts`."""

    MAX_CACHED = 20_000  # measured lines kept; a sign needs ~150, so this spans many rooms

    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        # Signs are redrawn with mostly the same strings (room name, spans), and measuring is
        # most of a render's cost, so measured lines are kept. Lines are immutable.
        self._lines: dict[tuple[tuple[Seg, ...], int, str | None], Line] = {}

    def _pick(self, face_text: str, size: int, bold: bool) -> tuple[FontKey, int]:
        return (self.fonts.key(face_text, size, bold=bold),
                _stroke(needs_cjk(face_text), bold, size))

    def line(self, segs: Sequence[Seg], size: int, face_text: str | None = None) -> Line:
        """Lay ``segs`` on one baseline at base ``size``; ``face_text`` picks the font for all
        (so wrapped lines of one string share a face)."""
        key = (tuple(segs), size, face_text)
        found = self._lines.get(key)
        if found is None:
            if len(self._lines) >= self.MAX_CACHED:
                self._lines.clear()
            found = self._lines[key] = self._measure(segs, size, face_text)
        return found

    def _measure(self, segs: Sequence[Seg], size: int, face_text: str | None) -> Line:
        runs: list[Run] = []
        x = 0
        x0 = y0 = 1 << 30
        x1 = y1 = -(1 << 30)
        asc = desc = 0
        for seg in segs:
            s = max(1, round(size * seg.scale))
            key, sw = self._pick(face_text if face_text is not None else seg.text, s, seg.bold)
            font = load(key)
            a, d = font.getmetrics()
            asc, desc = max(asc, a + sw), max(desc, d + sw)
            if seg.text.strip():
                bl, bt, br, bb = font.getbbox(seg.text, anchor="ls", stroke_width=sw)
                x0, y0 = min(x0, x + int(bl)), min(y0, int(bt))
                x1, y1 = max(x1, x + int(br)), max(y1, int(bb))
            runs.append(Run(seg.text, key, sw, x))
            x += round(font.getlength(seg.text)) + sw
        if x1 < x0:  # nothing visible
            x0 = y0 = x1 = y1 = 0
        return Line(tuple(runs), (x0, y0, x1, y1), asc, desc)

    def _fits(self, plan: TextPlan, box: Box) -> bool:
        return plan.width <= box.w and plan.height <= box.h

    def single(self, segs: Sequence[Seg], size: int) -> TextPlan:
        """``segs`` on one line at ``size``, whether or not it fits anywhere."""
        return TextPlan((self.line(segs, size),), size, truncated=False)

    def largest(self, segs: Sequence[Seg], box: Box, lo: int, hi: int) -> TextPlan | None:
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
            wrap: bool = False, drop_below: float = 0.75) -> TextPlan | None:
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

    def _ellipsise(self, segs: Sequence[Seg], box: Box, size: int) -> TextPlan | None:
        # Shorten the last run; drop runs that vanish entirely.
        segs = list(segs)
        while segs:
            last = segs[-1]
            body = last.text.rstrip()
            lo, hi = 0, len(body)  # number of characters kept
            best: Line | None = None
            while lo <= hi:
                mid = (lo + hi) // 2
                cand = [*segs[:-1], Seg(body[:mid].rstrip() + ELLIPSIS, last.scale, last.bold)]
                ln = self.line(cand, size)
                if ln.width <= box.w and ln.height <= box.h:
                    best, lo = ln, mid + 1
                else:
                    hi = mid - 1
            if best is not None:
                return TextPlan((best,), size, truncated=True)
            segs.pop()
        return None

    def _wrap(self, seg: Seg, box: Box, size: int) -> TextPlan | None:
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
        out: list[Line] = []
        for s in lines:
            ln = self.line([Seg(s, seg.scale, seg.bold)], size, face)
            if ln.width > box.w:  # the last line with the rest, or one glyph wider than the box
                p = self._ellipsise([Seg(s, seg.scale, seg.bold)], box, size)
                if p is None:
                    break
                ln, truncated = p.lines[0], True
            out.append(ln)
        return TextPlan(tuple(out), size, truncated) if out else None


@functools.lru_cache(maxsize=8)
def typesetter_for(fonts: Fonts) -> Typesetter:
    """The shared typesetter of ``fonts``, so measurements carry over from render to render."""
    return Typesetter(fonts)


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
