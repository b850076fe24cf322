"""E-ink renderer: golden images, layout properties that catch overflow, fonts, rotation.

Golden PNGs live in tests/unit/render/golden/; regenerate with ``UPDATE_GOLDEN=1 scripts/test
tests/unit/render/test_render_eink.py`` after an intended change,
then look at them before committing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from display.config import DeviceConfig
from display.model import BookingDetails, RoomView, State
from display.outputs import Palette, SignImage
from display.render.eink import Composition, compose, render_sign
from display.render.fonts import FONT_DIRS_ENV, FontMissingError, Fonts, default_fonts
from display.render.samples import booking, busy_day_spans, local, sample_view

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SIZES = [(250, 122), (296, 128), (400, 300), (800, 480)]
LONG_EN = "Grand Conference Room of the Third Floor East Wing, Building 7"  # 60+ characters
LONG_ZH = "北京总部七号楼三层东翼大型多功能国际视频会议室暨董事会议厅及贵宾接待室与培训中心" * 2


def eink(size: tuple[int, int] = (296, 128), palette: str = "bw", rotation: int = 0,
         language: str | None = None) -> DeviceConfig:
    return DeviceConfig(id="sign", kind="eink", url="virtual:out", protocol="panel", size=size,
                        palette=Palette(palette), rotation=rotation, language=language)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def ink_bbox(plane: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounds of the ink (0 pixels) of a mode "1" plane."""
    return ImageChops.invert(plane.convert("L")).getbbox()


# -- golden images ---------------------------------------------------------------------------

# (name, state, size, palette, language, extra): every size in en+bw, every language at
# 296x128 and 800x480, bwr at two sizes, rotation at 250x122, stale at two sizes, a crowded day.
CASES: list[tuple[str, State, tuple[int, int], str, str, dict[str, object]]] = [
    *[(f"{w}x{h}_bw_en_busy", State.BUSY, (w, h), "bw", "en", {}) for w, h in SIZES],
    ("296x128_bw_en_free", State.FREE, (296, 128), "bw", "en", {}),
    ("296x128_bw_zh_busy", State.BUSY, (296, 128), "bw", "zh", {}),
    ("296x128_bw_zh_soon", State.SOON, (296, 128), "bw", "zh", {}),
    ("296x128_bw_zh_ending", State.ENDING, (296, 128), "bw", "zh", {}),
    ("296x128_bw_zh+en_free", State.FREE, (296, 128), "bw", "zh+en", {}),
    ("800x480_bw_zh_busy", State.BUSY, (800, 480), "bw", "zh", {}),
    ("800x480_bw_zh+en_free", State.FREE, (800, 480), "bw", "zh+en", {}),
    ("296x128_bwr_zh+en_ending", State.ENDING, (296, 128), "bwr", "zh+en", {}),
    ("800x480_bwr_zh+en_busy", State.BUSY, (800, 480), "bwr", "zh+en", {}),
    ("800x480_bwr_en_soon", State.SOON, (800, 480), "bwr", "en", {}),
    ("250x122_bw_en_busy_rot90", State.BUSY, (250, 122), "bw", "en", {"rotation": 90}),
    ("250x122_bw_zh_busy_stale", State.BUSY, (250, 122), "bw", "zh", {"stale": True}),
    ("800x480_bwr_en_free_stale", State.FREE, (800, 480), "bwr", "en", {"stale": True}),
    ("800x480_bw_en_crowded", State.BUSY, (800, 480), "bw", "en", {"crowded": True}),
    # Issue 18: every language at 400x300, stale there too, closed signs (quiet hours).
    ("400x300_bw_zh+en_soon", State.SOON, (400, 300), "bw", "zh+en", {}),
    ("400x300_bw_zh_free", State.FREE, (400, 300), "bw", "zh", {}),
    ("400x300_bwr_en_ending_stale", State.ENDING, (400, 300), "bwr", "en", {"stale": True}),
    ("296x128_bw_zh+en_busy", State.BUSY, (296, 128), "bw", "zh+en", {}),
    ("296x128_bw_en_closed", State.FREE, (296, 128), "bw", "en", {"closed": True}),
    ("296x128_bw_zh_closed_booked", State.FREE, (296, 128), "bw", "zh",
     {"closed": True, "booked": True}),
    ("400x300_bw_en_closed_booked", State.FREE, (400, 300), "bw", "en",
     {"closed": True, "booked": True}),
    ("800x480_bw_zh+en_closed", State.FREE, (800, 480), "bw", "zh+en", {"closed": True}),
    # Issue 19: the meeting's title and organizer, at each size in each language; a private
    # booking ("Booked", no organizer); a title too long for its line.
    *[(f"{w}x{h}_bw_{lang}_busy_details", State.BUSY, (w, h), "bw", lang, {"details": True})
      for w, h in ((296, 128), (400, 300), (800, 480)) for lang in ("zh", "en", "zh+en")],
    ("296x128_bwr_zh+en_soon_private", State.SOON, (296, 128), "bwr", "zh+en",
     {"details": True, "private": True}),
    ("400x300_bw_zh+en_busy_private", State.BUSY, (400, 300), "bw", "zh+en",
     {"details": True, "private": True}),
    ("800x480_bwr_en_soon_long_title", State.SOON, (800, 480), "bwr", "en",
     {"details": True, "long": True}),
]

#: The sample meeting's title and organizer in each language.
TITLES = {"zh": ("季度产品评审会", "张伟"), "en": ("Quarterly product review", "Alice Chen"),
          "zh+en": ("季度评审 Quarterly review", "张伟 Wei Zhang")}

MONDAY = (2026, 11, 30)  # the sample day is a Wednesday; a closed sign opens on Monday


def closed_view(language: str, booked: bool = False) -> RoomView:
    """The sample room closed on the evening of its day; ``booked``: a booking on Friday."""
    view = sample_view(language=language, at="21:00")
    if booked:
        later = booking("10:00", "11:30", 9)
        later = dataclasses.replace(later, start=later.start + timedelta(days=2),
                                    end=later.end + timedelta(days=2))
        view = dataclasses.replace(view, occupancy=dataclasses.replace(
            view.occupancy, next=(later,)))
    return dataclasses.replace(view, closed_until=local("08:00", MONDAY))


def details_view(view: RoomView, *, private: bool = False, long: bool = False,
                 title: str | None = None, organizer: str | None = None) -> RoomView:
    """``view`` with details for every booking: the sample title and organizer in its
    language (``private``: "Booked"; ``long``: a title far too long for one line)."""
    sample_title, sample_organizer = TITLES[view.language]
    if long:
        sample_title = LONG_EN + ": quarterly planning, budget and hiring review"
    shown = BookingDetails(private=True) if private else BookingDetails(
        title=title or sample_title, organizer=organizer or sample_organizer)
    occ = view.occupancy
    keys = {b.key for b in (*occ.today, *occ.next)}
    return dataclasses.replace(view, details=dict.fromkeys(keys, shown))


def case_view(state: State, language: str, extra: dict[str, object]) -> RoomView:
    if extra.get("details"):
        return details_view(sample_view(state, language=language),
                            private=bool(extra.get("private")), long=bool(extra.get("long")))
    if extra.get("crowded"):
        return sample_view(language=language, spans=busy_day_spans(14), at="10:05")
    if extra.get("closed"):
        return closed_view(language, bool(extra.get("booked")))
    return sample_view(state, language=language, stale=bool(extra.get("stale")))


@pytest.mark.parametrize(("name", "state", "size", "palette", "language", "extra"), CASES,
                         ids=[c[0] for c in CASES])
def test_golden(name: str, state: State, size: tuple[int, int], palette: str, language: str,
                extra: dict[str, object], tmp_path: Path) -> None:
    device = eink(size, palette, int(str(extra.get("rotation", 0))))
    view = case_view(state, language, extra)
    sign = render_sign(view, device)
    assert sign.size == size
    actual = sign.to_rgb()
    path = GOLDEN / f"{name}.png"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        actual.save(path, optimize=True)
        return
    assert path.exists(), f"missing {path}: run UPDATE_GOLDEN=1 scripts/test {__file__}"
    with Image.open(path) as expected:
        if not same(actual, expected.convert("RGB")):
            actual.save(tmp_path / path.name)
            pytest.fail(f"{name} differs from {path}; new image in {tmp_path / path.name} "
                        "(UPDATE_GOLDEN=1 to accept after looking at it)")


@pytest.mark.parametrize("size", [(32, 2000), (40, 40), (2000, 32)], ids=str)
def test_extreme_panels_terminate_and_fit(size: tuple[int, int]) -> None:
    # A glyph wider than its box once made the wrapper loop forever.
    name = "很长的会议室名称 Long Name " * 3
    for language in ("zh", "en"):
        assert_contained(compose(sample_view(State.BUSY, name=name, language=language),
                                 eink(size)))
        assert_contained(compose(details_view(sample_view(State.BUSY, name=name,
                                                          language=language), long=True),
                                 eink(size)))


def test_golden_dir_has_no_orphans() -> None:
    names = {f"{c[0]}.png" for c in CASES}
    assert {p.name for p in GOLDEN.glob("*.png")} == names


# -- layout properties -----------------------------------------------------------------------


def assert_contained(comp: Composition) -> None:
    w, h = comp.logical_size
    for t in comp.texts:
        assert t.box.contains(t.bbox), f"{t.role} {t.text!r} ink {t.bbox} outside {t.box}"
        x0, y0, x1, y1 = t.bbox
        assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h, t


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", [LONG_EN, LONG_ZH, "Ä" * 80, "W" * 70],
                         ids=["en", "zh", "umlauts", "no-spaces"])
def test_long_room_name_stays_in_its_box(size: tuple[int, int], name: str) -> None:
    device = eink(size, language="zh+en")
    view = sample_view(State.BUSY, name=name)
    comp = compose(view, device)
    assert_contained(comp)
    placed = [t for t in comp.texts if t.role == "name"]
    assert len(placed) == 1 and (placed[0].truncated or "\n" in placed[0].text)
    # The pixels prove it too: only the name box changes between this sign and a nameless one.
    nameless = compose(dataclasses.replace(view, name=""), device)
    diff = ImageChops.difference(comp.sign.black, nameless.sign.black).getbbox()
    assert diff is not None and placed[0].box.contains(diff)


@pytest.mark.parametrize("size", [*SIZES, (128, 296), (640, 384), (1000, 200)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("count", [14, 40])
def test_many_bookings_do_not_overflow(size: tuple[int, int], count: int) -> None:
    spans = tuple((f"{7 + i // 4:02d}:{i % 4 * 15:02d}", f"{7 + i // 4:02d}:{i % 4 * 15 + 10:02d}")
                  for i in range(count))
    view = sample_view(language="zh+en", spans=spans, at="07:05")
    comp = compose(view, eink(size))
    assert_contained(comp)
    if size[1] >= 200:
        # Every later booking is either listed or counted in "+N more".
        listed = sum(t.role == "next_item" for t in comp.texts)
        counted = sum(int(m[0]) for t in comp.texts if t.role == "more"
                      if (m := re.search(r"\d+", t.text)))
        assert listed + counted == count - 1  # the first one is in progress


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_state_looks_different(size: tuple[int, int], language: str) -> None:
    device = eink(size)
    images = [render_sign(sample_view(s, language=language), device).black for s in State]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not same(images[i], images[j])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stale_adds_a_visible_marker(size: tuple[int, int]) -> None:
    fresh = sample_view(State.BUSY)
    stale = dataclasses.replace(fresh, stale=True)  # same data, same as_of: only the flag
    a = compose(fresh, eink(size, "bwr"))
    b = compose(stale, eink(size, "bwr"))
    assert not same(a.sign.black, b.sign.black)
    assert a.sign.red is not None and b.sign.red is not None
    # The warning triangle is red on a bwr panel, and the "as of" time is spelled out.
    red_added = ImageChops.logical_and(b.sign.red, ImageChops.invert(
        a.sign.red.convert("L")).convert("1"))
    assert ink_bbox(red_added) is not None
    assert any(t.role == "as_of" and "as of" in t.text for t in b.texts)


def test_busy_shows_until_and_span_in_local_time() -> None:
    comp = compose(sample_view(State.BUSY), eink((800, 480)))
    detail = next(t for t in comp.texts if t.role == "detail")
    assert detail.text == "until 11:00   10:00–11:00"
    # Shown in the view's zone: 10:00 Shanghai is 02:00 UTC.
    utc = dataclasses.replace(sample_view(State.BUSY), timezone="UTC")
    assert next(t for t in compose(utc, eink((800, 480))).texts
                if t.role == "detail").text == "until 03:00   02:00–03:00"


def test_back_to_back_bookings_are_one_block() -> None:
    view = sample_view(spans=(("10:00", "11:00"), ("11:00", "12:30"), ("14:00", "15:00")),
                       at="10:05")
    texts = {t.role: t.text for t in compose(view, eink((800, 480))).texts}
    assert texts["detail"].startswith("until 12:30")
    assert texts["next_item"] == "14:00–15:00"


def test_soon_reads_free_until_the_meeting_which_is_listed_next() -> None:
    for size in [(296, 128), (800, 480)]:
        texts = [(t.role, t.text) for t in compose(sample_view(State.SOON), eink(size)).texts]
        assert ("detail", "free until 11:30") in texts
        listed = " ".join(text for role, text in texts if role in ("next", "next_item"))
        assert "11:30–12:00" in listed
    zh = {t.role: t.text for t in compose(sample_view(State.SOON), eink(language="zh")).texts}
    assert zh["detail"] == "空闲至 11:30"


def glyph_height(comp: Composition, role: str) -> int:
    placed = next(t for t in comp.texts if t.role == role)
    return placed.bbox[3] - placed.bbox[1]


@pytest.mark.parametrize("language", ["zh", "en", "zh+en"])
def test_as_of_is_legible_on_the_small_sign(language: str) -> None:
    """Issue 18: "as of" was ~7 px tall on 296x128; its type is now at least 17 px (DejaVu's
    digits 12 px) in every language, the words kept where they fit."""
    comp = compose(sample_view(State.BUSY, language=language), eink((296, 128)))
    placed = next(t for t in comp.texts if t.role == "as_of")
    assert placed.size >= 17 and glyph_height(comp, "as_of") >= 12
    assert "as of" in placed.text or "更新于" in placed.text


@pytest.mark.parametrize("size", [(296, 128), (400, 300), (800, 480)], ids=str)
@pytest.mark.parametrize("state", list(State))
def test_english_beside_chinese_is_not_dropped(size: tuple[int, int], state: State) -> None:
    comp = compose(sample_view(state, language="zh+en"), eink(size))
    english = {State.FREE: "Free", State.SOON: "Starting soon", State.BUSY: "In use",
               State.ENDING: "Ending soon"}[state]
    assert any(english in t.text for t in comp.texts if t.role in ("state", "state_en"))


@pytest.mark.parametrize("size", [(400, 300), (800, 480)], ids=str)
def test_large_signs_give_half_to_the_state_and_list_the_day(size: tuple[int, int]) -> None:
    comp = compose(sample_view(State.BUSY), eink(size))
    assert comp.regions["banner"].h >= size[1] * 0.45
    listed = [t.text for t in comp.texts if t.role == "next_item"]
    assert listed == ["11:30–12:00", "14:00–15:30", "16:00–17:00"]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("language", ["zh", "en", "zh+en"])
def test_closed_sign_says_until_when_and_shows_no_clock(size: tuple[int, int],
                                                        language: str) -> None:
    comp = compose(closed_view(language), eink(size))
    assert_contained(comp)
    texts = {t.role: t.text for t in comp.texts}
    assert {"as_of", "hour", "next", "next_item"}.isdisjoint(texts)
    assert texts["detail"] == {"en": "until Mon 08:00", "zh": "至 周一 08:00",
                               "zh+en": "至 周一 08:00 / until Mon 08:00"}[language]
    # Nothing on it moves: drawn later in the night, it is the same sign (no redraw needed).
    later = dataclasses.replace(closed_view(language), occupancy=dataclasses.replace(
        closed_view(language).occupancy, at=local("23:59")))
    assert same(comp.sign.black, render_sign(later, eink(size)).black)


def test_closed_sign_lists_a_booking_before_the_opening_and_closes_until_it() -> None:
    comp = compose(closed_view("en", booked=True), eink((400, 300)))
    texts = {t.role: t.text for t in comp.texts}
    assert texts["detail"] == "until Fri 10:00"
    assert texts["next_item"] == "Fri 10:00–11:30"
    assert texts["state"] == "Closed"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_stale_closed_sign_still_says_as_of(size: tuple[int, int]) -> None:
    view = dataclasses.replace(closed_view("en"), stale=True)
    comp = compose(view, eink(size))
    assert_contained(comp)
    texts = {t.role: t.text for t in comp.texts}
    assert texts["as_of"].startswith("as of") and texts["state"] == "Closed"


def test_free_with_nothing_left_says_so() -> None:
    view = sample_view(at="18:00")
    for size in [(296, 128), (800, 480)]:
        texts = {t.role: t.text for t in compose(view, eink(size, language="zh")).texts}
        assert texts["state"] == "空闲"
        assert texts["next"] == "今日无更多预订"


def test_device_language_overrides_view() -> None:
    view = sample_view(State.BUSY, language="en")
    texts = {t.role: t.text for t in compose(view, eink(language="zh")).texts}
    assert texts["state"] == "使用中"
    both = {t.role: t.text for t in compose(view, eink((800, 480), language="zh+en")).texts}
    assert both["state"].startswith("使用中") and "In use" in both["state"]


def test_render_is_deterministic() -> None:
    view = sample_view(State.ENDING, language="zh+en")
    a = render_sign(view, eink((800, 480), "bwr"))
    b = render_sign(view, eink((800, 480), "bwr"))
    assert a.red is not None and b.red is not None
    assert a.black.tobytes() == b.black.tobytes() and a.red.tobytes() == b.red.tobytes()


def test_text_is_pure_1bit_and_planes_exclusive() -> None:
    sign = render_sign(sample_view(State.BUSY, language="zh+en"), eink((800, 480), "bwr"))
    assert sign.black.mode == "1" and sign.red is not None and sign.red.mode == "1"
    both = ImageChops.logical_or(sign.black, sign.red)  # 0 only where both planes have ink
    assert ink_bbox(both) is None
    assert ink_bbox(sign.red) is not None  # the busy banner is red
    bw = render_sign(sample_view(State.BUSY), eink((800, 480), "bw"))
    assert bw.red is None


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_turns_the_logical_sign_clockwise(rotation: int) -> None:
    view = sample_view(State.BUSY)
    native = (250, 122)
    turned = render_sign(view, eink(native, rotation=rotation))
    assert turned.size == native
    logical = native if rotation == 180 else (native[1], native[0])
    upright = render_sign(view, eink(logical)).black
    op = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
          270: Image.Transpose.ROTATE_90}[rotation]
    assert same(turned.black, upright.transpose(op))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(alphabet=st.sampled_from(list("Room 会议室大小ABCWwjgy-·()3F东西")), max_size=70),
    w=st.integers(32, 900),
    h=st.integers(32, 600),
    rotation=st.sampled_from([0, 90]),
    state=st.sampled_from(list(State)),
    language=st.sampled_from(["zh", "en", "zh+en"]),
    stale=st.booleans(),
    closed=st.booleans(),
    details=st.sampled_from(["none", "shown", "private", "long"]),
)
def test_any_size_and_name_fits(name: str, w: int, h: int, rotation: int, state: State,
                                language: str, stale: bool, closed: bool, details: str) -> None:
    view = sample_view(state, name=name, language=language, stale=stale)
    if details != "none":  # a title and an organizer line, or "Booked", must fit too
        view = details_view(view, private=details == "private", long=details == "long",
                            organizer=name if details == "long" else None)
    if closed:
        view = dataclasses.replace(view, closed_until=local("08:00", MONDAY))
    comp = compose(view, eink((w, h), rotation=rotation))
    assert comp.sign.size == (w, h)
    assert_contained(comp)


# -- fonts -----------------------------------------------------------------------------------


def test_missing_cjk_font_names_the_package(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FONT_DIRS_ENV, str(tmp_path))
    with pytest.raises(FontMissingError, match=r"apt-get install fonts-wqy-microhei"):
        render_sign(sample_view(State.BUSY, language="zh"), eink())
    # Even an ASCII-only zh view fails early, so a missing font is found at the first render.
    with pytest.raises(FontMissingError, match="fonts-noto-cjk"):
        render_sign(sample_view(State.BUSY, name="3F", language="zh"), eink())
    # English still renders (Pillow's own font when DejaVu is missing too).
    sign = render_sign(sample_view(State.BUSY, name="Room 3", language="en"), eink())
    assert isinstance(sign, SignImage) and ink_bbox(sign.black) is not None


def test_font_dirs_find_a_font_placed_directly(tmp_path: Path) -> None:
    src = default_fonts().cjk
    assert src is not None, "scripts/bootstrap installs fonts-wqy-microhei"
    shutil.copy(src[0], tmp_path / Path(src[0]).name)
    fonts = Fonts([tmp_path])
    assert fonts.cjk == (str(tmp_path / Path(src[0]).name), src[1])
    sign = render_sign(sample_view(State.FREE, language="zh"), eink(), fonts=fonts)
    assert ink_bbox(sign.black) is not None


def test_fonts_are_cached_per_size() -> None:
    fonts = default_fonts()
    assert fonts.font("使用中", 30) is fonts.font("空闲", 30)
    assert fonts.font("Free", 30, bold=True) is not fonts.font("使用中", 30)


# -- titles and organizers (issue 19) --------------------------------------------------------


@pytest.mark.parametrize("size", [(296, 128), (400, 300), (800, 480), (250, 122)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("language", ["zh", "en", "zh+en"])
def test_title_and_organizer_are_on_the_sign_whole_or_ellipsised(size: tuple[int, int],
                                                                   language: str) -> None:
    comp = compose(details_view(sample_view(State.BUSY, language=language)),
                   eink(size, language=language))
    assert_contained(comp)
    texts = {t.role: t for t in comp.texts}
    title, organizer = TITLES[language]
    assert texts["title"].text.startswith(title[:2])
    shown = texts["title"].text + (texts["organizer"].text if "organizer" in texts else "")
    if not texts["title"].truncated:
        assert title in shown and organizer in shown
    # Never at the cost of the state or "until": they are still there, as large as before.
    assert "state" in texts and "detail" in texts


@pytest.mark.parametrize("size", [(296, 128), (400, 300), (800, 480)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_long_title_is_ellipsised_in_its_line(size: tuple[int, int]) -> None:
    comp = compose(details_view(sample_view(State.BUSY), long=True), eink(size))
    assert_contained(comp)
    title = next(t for t in comp.texts if t.role == "title")
    assert title.truncated and title.text.endswith("…")


@pytest.mark.parametrize(("language", "word"), [("zh", "已预约"), ("en", "Booked"),
                                                 ("zh+en", "已预约 Booked")])
def test_a_private_booking_says_booked_and_names_nobody(language: str, word: str) -> None:
    comp = compose(details_view(sample_view(State.BUSY, language=language), private=True),
                   eink((400, 300), language=language))
    texts = {t.role: t.text for t in comp.texts}
    assert texts["title"] == word
    assert "organizer" not in texts


def test_without_details_the_sign_is_as_before() -> None:
    """Details off (the default): no title line, the same image as without the feature."""
    for size in ((296, 128), (400, 300), (800, 480)):
        view = sample_view(State.BUSY)
        comp = compose(view, eink(size))
        assert not any(t.role in ("title", "organizer") for t in comp.texts)
        assert same(comp.sign.black, render_sign(dataclasses.replace(view, details={}),
                                                 eink(size)).black)


def test_free_sign_names_no_meeting_and_soon_names_the_next() -> None:
    free = compose(details_view(sample_view(State.FREE)), eink((400, 300)))
    assert not any(t.role == "title" for t in free.texts)
    soon = compose(details_view(sample_view(State.SOON)), eink((400, 300)))
    assert [t.text for t in soon.texts if t.role == "title"] == ["Quarterly product review"]


def test_closed_sign_names_no_meeting() -> None:
    view = details_view(closed_view("en", booked=True))
    comp = compose(view, eink((400, 300)))
    assert not any(t.role in ("title", "organizer") for t in comp.texts)
