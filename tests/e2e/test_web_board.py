"""The lobby board and the page in a real browser with a site's worth of rooms: every room on
one screen or paged through, in the node's zone and order, readable without colour, and saying
"until" by the same rule as every other surface (display/headline.py)."""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from display.testing.browser import chromium
from display.testing.waiting import wait_for
from display.testing.web_node import WebNode, book_states, node_with_web, site_rooms

NODE_ZONE = "Asia/Shanghai"
BROWSER_ZONE = "America/New_York"  # 12 or 13 hours away from the node: a wrong clock shows
STATE_WORDS = {"free": "Free", "soon": "Starting soon", "busy": "In use", "ending": "Ending soon"}


@pytest.fixture(scope="module", params=[5, 40, 200], ids=lambda n: f"{n}rooms")
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    count: int = request.param
    web = WebNode(tmp_path_factory.mktemp(f"site{count}"), rooms=site_rooms(count),
                  timezone=NODE_ZONE)
    web.start()
    settle(web, book_states(web, [i for i, _ in site_rooms(count)]))
    yield web
    web.stop()


def settle(web: WebNode, meant: dict[str, str]) -> None:
    """Wait until every room is in the state its bookings put it in."""
    wait_for(lambda: {r["open_id"]: r["state"] for r in web.status()["rooms"]} == meant, 15,
             "every booking applied")


def shown(driver: Any) -> list[dict[str, Any]]:
    """What the board shows now: each row's id, text and whether anything in it is cut."""
    rows: list[dict[str, Any]] = driver.execute_script("""
        return Array.from(document.querySelectorAll('#rooms > li')).map(li => ({
          id: li.dataset.id || null, floor: li.classList.contains('floor') ? li.textContent : null,
          text: li.innerText, top: li.getBoundingClientRect().top,
          bottom: li.getBoundingClientRect().bottom,
          cut: li.scrollWidth > li.clientWidth + 1 ||
               Array.from(li.querySelectorAll('.state, .until')).some(
                 e => e.scrollWidth > e.clientWidth + 1 || e.getClientRects().length > 1),
        }));""")
    return rows


def natural(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_board_shows_every_room_on_one_screen_or_in_pages(site: WebNode,
                                                          size: tuple[int, int]) -> None:
    rooms = {r["open_id"]: r for r in site.status()["rooms"]}
    with chromium(*size) as driver:
        driver.get(site.url + "/board?page_seconds=1")
        wait_for(lambda: any(r["id"] for r in shown(driver)), 15, "the board drawn")
        pager = driver.find_element("id", "pager")
        pages = 1
        if pager.is_displayed():
            pages = int(re.fullmatch(r"page \d+/(\d+)", pager.text).group(1))  # type: ignore[union-attr]
        seen: dict[str, str] = {}
        order: list[str] = []
        page_texts: set[str] = set()

        def look() -> bool:
            rows = shown(driver)
            height = driver.execute_script("return window.innerHeight")
            width = driver.execute_script("return document.documentElement.clientWidth")
            assert driver.execute_script(
                "return document.documentElement.scrollHeight") <= height, "the board scrolls"
            assert driver.execute_script(
                "return document.documentElement.scrollWidth") <= width, "it scrolls sideways"
            for row in rows:
                if row["id"]:
                    assert not row["cut"], f"{row['text']!r} is cut or wraps at {size}"
                    assert row["bottom"] <= height + 1, f"{row['text']!r} is below the screen"
                    if row["id"] not in seen:
                        order.append(row["id"])
                    seen[row["id"]] = row["text"]
            page_texts.add(pager.text if pages > 1 else "")
            return len(seen) == len(rooms)

        wait_for(look, 30, f"all {len(rooms)} rooms shown within 30 s")
        if pages > 1:
            assert {f"page {k}/{pages}" for k in range(1, pages + 1)} <= page_texts
        if len(rooms) <= 40 and size == (1920, 1080):
            assert pages == 1, "up to 40 rooms fit on one 1920x1080 screen"
        # Every room in words (state, "until" by the one rule), in natural order by floor.
        for open_id, room in rooms.items():
            assert STATE_WORDS[room["state"]] in seen[open_id]
            assert room["until_text"] in seen[open_id]
        names = [rooms[i]["name"] for i in order]
        assert names == sorted(names, key=natural), "rooms in natural order (1F < 2F < 10F)"
        # Each state has a shape of its own, not only a colour.
        icons = driver.execute_script("""
            const out = {};
            for (const li of document.querySelectorAll('#rooms > li.tile')) {
              out[li.dataset.state] = li.querySelector('svg.icon').innerHTML;
            }
            return out;""")
        assert len(set(icons.values())) == len(icons)


def test_board_in_another_zone_shows_all_40_rooms_and_the_node_time(tmp_path: Path) -> None:
    web = WebNode(tmp_path, rooms=site_rooms(40), timezone=NODE_ZONE)
    web.start()
    try:
        settle(web, book_states(web, [i for i, _ in site_rooms(40)]))
        with chromium(1920, 1080, tz=BROWSER_ZONE) as driver:
            browser_offset = driver.execute_script("return new Date().getTimezoneOffset()")
            node_offset = -datetime.now(ZoneInfo(NODE_ZONE)).utcoffset().total_seconds() / 60  # type: ignore[union-attr]
            assert browser_offset != node_offset, "the browser runs in another zone"
            driver.get(web.url + "/board?page_seconds=2")
            seen: set[str] = set()

            def all_seen() -> bool:
                seen.update(r["id"] for r in shown(driver) if r["id"])
                return len(seen) == 40

            wait_for(all_seen, 30, "all 40 rooms on the board")

            def node_clock() -> bool:
                text = driver.find_element("id", "clock").text
                now = datetime.now(ZoneInfo(NODE_ZONE))
                return text in {now.strftime("%H:%M"),
                                (now - timedelta(minutes=1)).strftime("%H:%M")}

            wait_for(node_clock, 5, "the board's clock shows the node's time")
            # A room's times are the node's wall clock too: the free room's meeting start.
            room = next(r for r in web.status()["rooms"] if r["next"] and r["state"] == "free")
            start = datetime.fromisoformat(room["next"][0]["start"]).astimezone(
                ZoneInfo(NODE_ZONE)).strftime("%H:%M")
            wait_for(lambda: any(r["id"] == room["open_id"] and start in r["text"]
                                 for r in shown(driver)), 30, "the meeting's start, node time")
    finally:
        web.stop()


def test_board_filters_by_floor_and_by_room(tmp_path: Path) -> None:
    web = WebNode(tmp_path, rooms=site_rooms(90))  # floors 1F..12F: "1F" must not match "10F"
    web.start()
    try:
        rooms = {r["open_id"]: r["name"] for r in web.status()["rooms"]}
        with chromium(1280, 720) as driver:
            driver.get(web.url + "/board?floor=1F,10F")
            wait_for(lambda: any(r["id"] for r in shown(driver)), 15, "the board drawn")
            ids = {r["id"] for r in shown(driver) if r["id"]}
            assert ids == {i for i, n in rooms.items() if n.split()[0] in ("1F", "10F")}
            assert [r["floor"] for r in shown(driver) if r["floor"]][:2] == ["1F", "10F"]
            driver.get(web.url + "/board?rooms=omm_003,omm_077")
            wait_for(lambda: {r["id"] for r in shown(driver) if r["id"]} == {
                "omm_003", "omm_077"}, 15, "only the two rooms")
    finally:
        web.stop()


def test_overview_and_board_share_one_order(tmp_path: Path) -> None:
    web = WebNode(tmp_path, rooms=site_rooms(24))
    web.start()
    try:
        with chromium(1920, 1080) as driver:
            orders = []
            for page in ("/", "/board"):
                driver.get(web.url + page)
                wait_for(lambda: len([r for r in shown(driver) if r["id"]]) == 24, 15, page)
                orders.append([r["id"] for r in shown(driver) if r["id"]])
            assert orders[0] == orders[1]
    finally:
        web.stop()


# -- colour: the palette survives red-green colour blindness -----------------------------------

# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB.
CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
}
MIN_DELTA_E = 20.0  # CIE76; ~2.3 is "just noticeable", 20+ is plainly another colour


def _linear(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = rgb
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def simulated_lab(colour: tuple[int, int, int], matrix: Any) -> tuple[float, float, float]:
    lin = [_linear(c) for c in colour]
    out = [min(1.0, max(0.0, sum(m * v for m, v in zip(row, lin, strict=True))))
           for row in matrix]
    return _lab((out[0], out[1], out[2]))


@pytest.mark.parametrize("site", [5], indirect=True, ids=["5rooms"])
def test_state_colours_stay_apart_under_protanopia_and_deuteranopia(site: WebNode) -> None:
    """Each state's tile colour, read from a screenshot, simulated for the two common kinds
    of colour blindness: every pair stays far apart."""
    with chromium(1280, 900) as driver:
        driver.get(site.url + "/")
        wait_for(lambda: {r["id"] for r in shown(driver) if r["id"]} == {
            r["open_id"] for r in site.status()["rooms"]}, 15, "tiles drawn")
        boxes = driver.execute_script("""
            const out = {};
            for (const li of document.querySelectorAll('#rooms > li.tile')) {
              const r = li.getBoundingClientRect();
              out[li.dataset.state] = [r.left, r.top, r.right, r.bottom];
            }
            return out;""")
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    assert set(boxes) == {"free", "soon", "busy", "ending"}
    colours = {}
    for state, (left, top, right, bottom) in boxes.items():
        tile = shot.crop((math.ceil(left), math.ceil(top), int(right), int(bottom)))
        # The background is the tile's most common colour (text and icon are a minority).
        colours[state] = max(tile.getcolors(tile.width * tile.height) or [], key=lambda c: c[0])[1]
    for vision, matrix in CVD.items():
        for a, b in itertools.combinations(colours, 2):
            delta = math.dist(simulated_lab(colours[a], matrix), simulated_lab(colours[b], matrix))
            assert delta >= MIN_DELTA_E, f"{a} and {b} look alike under {vision}: ΔE {delta:.1f}"


# -- the one "until" rule, as the page shows it ------------------------------------------------


@pytest.mark.parametrize("site", [5], indirect=True, ids=["5rooms"])
def test_every_page_says_until_by_the_one_rule(site: WebNode) -> None:
    """Free: the next meeting's start; busy and ending: the block's end; never the instant the
    state changes next (changes_at), on the overview, the room page and the board."""
    rooms = {r["open_id"]: r for r in site.status()["rooms"]}
    zone = ZoneInfo(NODE_ZONE)

    def hm(iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(zone).strftime("%H:%M")

    expected = {}
    for open_id, room in rooms.items():
        if room["state"] in ("busy", "ending"):
            expected[open_id] = hm(room["current"]["end"])  # one booking: the block's end
        elif room["next"]:
            expected[open_id] = hm(room["next"][0]["start"])
        else:
            expected[open_id] = "all day"
    assert set(r["state"] for r in rooms.values()) == {"free", "soon", "busy", "ending"}
    with chromium(1280, 900, tz=BROWSER_ZONE) as driver:
        for page in ("/", "/board", *(f"/rooms/{i}" for i in rooms)):
            driver.get(site.url + page)
            wait_for(lambda: any(r["id"] for r in shown(driver)), 15, page)
            for row in shown(driver):
                if not row["id"]:
                    continue
                room = rooms[row["id"]]
                assert expected[row["id"]] in row["text"], (page, row["text"])
                assert room["until_text"] in row["text"]
                if room["changes_at"] and hm(room["changes_at"]) != expected[row["id"]]:
                    assert hm(room["changes_at"]) not in row["text"], (page, row["text"])


# -- whatever a node status holds, the page is drawn ----------------------------------------------


def test_malformed_fleet_entries_never_break_the_overview(tmp_path: Path) -> None:
    from display.node import Node

    text = ('[node]\nname = "bridge-1"\ntimezone = "UTC"\nstate_dir = "state"\nclock = "trust"\n'
            '[[rooms]]\nopen_id = "omm_a"\nname = "3F East"\n')

    def fleet(node: Node, _clock: object) -> None:
        node.add_status_source("fleet", lambda: {
            "pi-none": None, "pi-text": "garbage", "pi-list": [1, 2],
            "pi-devices": {"online": True, "devices": "not a list", "version": 3},
            "pi-odd": {"online": False, "last_seen": 12,
                       "devices": [None, 5, {"id": "d1", "room": "omm_a"}]},
            "pi-good": {"online": True, "version": "1.0", "clock_synced": True, "devices": []}})

    with node_with_web(tmp_path, text, datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
                       setup=fleet) as served, chromium(1280, 900) as driver:
        driver.get(f"{served.url}/")
        wait_for(lambda: any(r["id"] == "omm_a" for r in shown(driver)), 15, "room drawn")
        nodes = wait_for(lambda: (t := driver.find_element("id", "nodes").text) and
                         "pi-good" in t and t, 5, "the nodes listed")
        for name in ("bridge-1", "pi-none", "pi-text", "pi-list", "pi-odd", "pi-good"):
            assert name in nodes
        # The offline Pi's panel, named with its room's name (not its id), among the few
        # devices listed (only the unhealthy ones).
        devices = driver.find_element("id", "devices").text
        assert "d1" in devices and "3F East" in devices and "omm_a" not in devices
        errors = [e for e in driver.get_log("browser")
                  if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")]
        assert errors == [], errors
