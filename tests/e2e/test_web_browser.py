"""The web page in a real browser (headless Chromium): live updates, lost node, XSS, layouts."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from display.testing.browser import chromium
from display.testing.waiting import wait_for
from display.testing.web_node import (
    XSS_NAME,
    WebNode,
    book_states,
    node_with_web,
    sign,
    unplugged_led,
)

# Set to a directory (e.g. docs) to keep the screenshots the layout test takes.
SHOTS = os.environ.get("ROOM_DISPLAY_SCREENSHOTS")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    web = WebNode(tmp_path_factory.mktemp("web"))
    web.start()
    yield web
    web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(1280, 900) as driver:
        yield driver


def tile(driver: Any, open_id: str) -> Any:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'#rooms > li[data-id="{open_id}"]')
    return found[0] if found else None


def tile_state(driver: Any, open_id: str) -> str | None:
    from selenium.common.exceptions import StaleElementReferenceException

    element = tile(driver, open_id)
    try:
        return element.get_attribute("data-state") if element is not None else None
    except StaleElementReferenceException:  # the tile was replaced between find and read
        return None


def tile_text(driver: Any, open_id: str) -> str:
    """The tile's text, or "" while it is being replaced (the page redraws tiles on changes)."""
    from selenium.common.exceptions import StaleElementReferenceException

    element = tile(driver, open_id)
    try:
        return str(element.text) if element is not None else ""
    except StaleElementReferenceException:
        return ""


def conn_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    text: str = driver.find_element(By.ID, "conn").text
    return text


def test_page_lists_every_configured_room_with_state_in_words(node: WebNode,
                                                              browser: Any) -> None:
    browser.get(node.url + "/")
    wait_for(lambda: tile(browser, "omm_x") is not None, 15, "tiles drawn")
    names = {r["open_id"]: r["name"] for r in node.status()["rooms"]}
    for open_id, name in names.items():
        element = tile(browser, open_id)
        assert name in element.text
        state = node.room(open_id)["state"]
        assert {"free": "Free", "busy": "In use", "soon": "Starting soon",
                "ending": "Ending soon"}[state] in element.text
    assert "live" in conn_text(browser)
    # Problems first, by cause: the unplugged LED, named with its room's name.
    problems = browser.find_element("id", "problems")
    assert "1 device offline" in problems.text
    problems.find_element("css selector", "summary").click()
    assert "b-led · 5F Focus" in problems.text
    # Rooms by floor, in natural order, as on the board (5F after 3F; no floor last).
    order = [e.get_attribute("data-id") for e in browser.find_elements("css selector",
                                                                       "#rooms > li.tile")]
    assert order == ["omm_a", "omm_b", "omm_x"]
    # Devices: a count, and only the unhealthy one listed.
    assert "2 devices, 1 offline" in browser.find_element("id", "devices-summary").text
    assert [e.text.split("\n")[0] for e in browser.find_elements(
        "css selector", "#devices > li")] == ["b-led"]


def test_xss_room_name_shows_as_text(node: WebNode, browser: Any) -> None:
    browser.get(node.url + "/")
    element = wait_for(lambda: tile(browser, "omm_x"), 15, "the XSS room's tile")
    assert XSS_NAME in element.text
    assert browser.find_elements("css selector", "#rooms script, #rooms img") == []
    for entry in browser.get_log("browser") if hasattr(browser, "get_log") else []:
        assert "Content Security Policy" not in entry.get("message", ""), entry


def test_booking_turns_its_tile_busy_within_a_second_without_reload(node: WebNode,
                                                                    browser: Any) -> None:
    browser.get(node.url + "/")
    wait_for(lambda: tile_state(browser, "omm_a") == "free", 15, "room A free")
    browser.execute_script("window.__sameDocument = true")
    posted = time.monotonic()
    node.book("omm_a", uid="live-1")
    wait_for(lambda: tile_state(browser, "omm_a") == "busy", 5, "room A busy on the page")
    elapsed = time.monotonic() - posted
    assert elapsed < 1.0, f"tile turned busy {elapsed:.2f} s after the webhook post"
    assert browser.execute_script("return window.__sameDocument") is True, "page was reloaded"
    wait_for(lambda: "In use" in tile_text(browser, "omm_a"), 5, "tile omm_a in words")
    # "until" is when the room is free again, as the door sign says (the meeting's end), not
    # when the status's "busy" turns "ending soon" ten minutes before it (changes_at).
    room = node.room("omm_a")
    meeting_end, state_change = room["current"]["end"][11:16], room["changes_at"][11:16]
    assert meeting_end != state_change and room["until"][11:16] == meeting_end
    wait_for(lambda: f"until {meeting_end}" in tile_text(browser, "omm_a"), 5, "free-at time")
    assert state_change not in tile_text(browser, "omm_a")
    node.book("omm_a", kind="deleted", uid="live-1")
    wait_for(lambda: tile_state(browser, "omm_a") == "free", 5, "room A free again")


def test_room_page_shows_timeline_bookings_devices_and_the_sign(node: WebNode,
                                                                browser: Any) -> None:
    node.book("omm_a", uid="room-page")
    browser.get(node.url + "/rooms/omm_a")
    wait_for(lambda: browser.find_elements("css selector", "#timeline .block"), 15, "timeline")
    assert "a-sign" in browser.find_element("id", "devices").text
    wait_for(lambda: browser.execute_script(
        "const i = document.getElementById('sign'); return i.complete && i.naturalWidth"),
        15, "the sign image loaded")
    assert browser.execute_script("return document.getElementById('sign').naturalWidth") == 296
    node.book("omm_a", kind="deleted", uid="room-page")


def test_lost_node_is_shown_then_recovers_after_restart(node: WebNode, browser: Any) -> None:
    browser.get(node.url + "/")
    wait_for(lambda: "live" in conn_text(browser), 15, "live")
    node.kill()
    wait_for(lambda: "Lost the node" in conn_text(browser), 10, "the page says it lost the node")
    assert "reconnecting" in conn_text(browser)
    node.start()
    wait_for(lambda: "live" in conn_text(browser), 30, "the page reconnected by itself")
    node.book("omm_b", uid="after-restart")
    wait_for(lambda: tile_state(browser, "omm_b") == "busy", 5, "updates flow again")
    node.book("omm_b", kind="deleted", uid="after-restart")


SHOWCASE = [  # a realistic site for the screenshots: floors, mixed languages, signs, one LED
    ("omm_3f_east", "3F 大会议室 East", sign("3f-east-sign")),
    ("omm_3f_focus", "3F Focus 2", sign("3f-focus-sign")),
    ("omm_5f_board", "5F Board Room", sign("5f-board-sign"), unplugged_led("5f-board-led")),
    ("omm_5f_phone", "5F Phone Booth", sign("5f-phone-sign")),
    ("omm_2f_train", "2F 培训室", sign("2f-train-sign")),
    ("omm_10f_studio", "10F Studio", sign("10f-studio-sign")),
    ("omm_10f_huddle", "10F Huddle", sign("10f-huddle-sign")),
    ("omm_1f_lobby", "1F 洽谈室 Lobby", sign("1f-lobby-sign")),
    ("omm_2f_quiet", "2F Quiet Room", sign("2f-quiet-sign")),
    ("omm_3f_west", "3F 小会议室 West", sign("3f-west-sign")),
    ("omm_10f_board", "10F Board Room", sign("10f-board-sign")),
    ("omm_1f_visitor", "1F Visitor Room", sign("1f-visitor-sign")),
]


def daytime_zone() -> str:
    """A zone where it is office hours now: screenshots look like a working day."""
    zones = ("Europe/London", "Asia/Shanghai", "America/New_York", "Asia/Tokyo",
             "America/Los_Angeles", "Asia/Kolkata", "Pacific/Auckland", "America/Sao_Paulo",
             "Europe/Berlin", "Asia/Dubai", "Pacific/Honolulu")
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return next((z for z in zones if 9 <= datetime.now(ZoneInfo(z)).hour <= 15), "UTC")


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebNode, dict[str, str]]]:
    from datetime import UTC, datetime, timedelta

    web = WebNode(tmp_path_factory.mktemp("showcase"), rooms=SHOWCASE, timezone=daytime_zone(),
                  node_name="hq-bridge")
    web.start()
    ids = [r[0] for r in SHOWCASE]
    meant = book_states(web, ids)
    earlier = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    web.book(tuple(ids[:6]), uid="earlier", start=earlier, minutes=45)  # a past booking today
    wait_for(lambda: {r["open_id"]: r["state"] for r in web.status()["rooms"]} == meant, 15,
             "the showcase in every state")
    yield web, meant
    web.stop()


def _save(driver: Any, shot: str, tmp_path: Path) -> Path:
    out = Path(SHOTS) / shot if SHOTS else tmp_path / shot
    driver.save_screenshot(str(out))
    assert out.stat().st_size > 10_000
    return out


def _fits(driver: Any, what: str) -> None:
    width = driver.execute_script("return document.documentElement.clientWidth")
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{what} scrolls sideways: {scroll} > {width}"
    spill = driver.execute_script("""
        return Array.from(document.querySelectorAll('#rooms > li.tile, #rooms > li.tile *'))
          .filter(e => e.getBoundingClientRect().right > e.closest('li.tile')
                         .getBoundingClientRect().right + 0.5).map(e => e.textContent);""")
    assert spill == [], f"{what}: text spills out of its tile: {spill}"


@pytest.mark.parametrize(("page", "size", "shot"), [
    ("/board", (1920, 1080), "web-board.png"),
    ("/", (390, 844), "web-phone.png"),
    ("/", (1280, 900), "web-overview.png"),
])
def test_layouts_fit_and_are_saved_as_screenshots(showcase: tuple[WebNode, dict[str, str]],
                                                  page: str, size: tuple[int, int], shot: str,
                                                  tmp_path: Path) -> None:
    node, meant = showcase
    with chromium(*size) as driver:
        driver.get(node.url + page)
        wait_for(lambda: all(tile_state(driver, i) == s for i, s in meant.items()), 15,
                 "every room in its state")
        _fits(driver, f"{page} at {size}")
        if page == "/board":
            size_px = driver.execute_script(
                "return parseFloat(getComputedStyle(document.querySelector('.tile .state'))"
                ".fontSize)")
            assert size_px >= 24, "the board's state words are large"
        else:
            wait_for(lambda: "1 device offline" in driver.find_element("id", "problems").text,
                     5, "the unplugged LED as a problem")
        _save(driver, shot, tmp_path)


@pytest.mark.parametrize("state", ["free", "soon", "busy", "ending"])
@pytest.mark.parametrize("size", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_room_page_in_every_state(showcase: tuple[WebNode, dict[str, str]], state: str,
                                  size: tuple[int, int], tmp_path: Path) -> None:
    node, meant = showcase
    open_id = next(i for i, s in meant.items() if s == state)
    with chromium(*size) as driver:
        driver.get(node.url + f"/rooms/{open_id}")
        wait_for(lambda: tile_state(driver, open_id) == state, 15, f"the room {state}")
        wait_for(lambda: driver.execute_script(
            "const i = document.getElementById('sign'); return i.complete && i.naturalWidth"),
            15, "sign loaded")
        wait_for(lambda: driver.find_elements("css selector", "#today > li"), 15, "today")
        _fits(driver, f"the room page at {size}")
        # The state card spans the page, and no hour label is cut at the timeline's edges.
        card = driver.execute_script("return document.querySelector('#rooms > li').offsetWidth")
        main = driver.execute_script("return document.querySelector('#rooms').offsetWidth")
        assert card >= main - 1, "the state card takes the page's width"
        cut = driver.execute_script("""
            const line = document.getElementById('timeline').getBoundingClientRect();
            return Array.from(document.querySelectorAll('#timeline .tick:not(.minor)'))
              .map(t => t.getBoundingClientRect())
              .filter(r => r.left < line.left - 0.5 || r.right > line.right + 0.5).length;""")
        assert cut == 0, "an hour label is cut"
        labels = driver.execute_script("""
            return Array.from(document.querySelectorAll('#timeline .tick:not(.minor)'))
              .map(t => t.getBoundingClientRect());""")
        for a, b in itertools.pairwise(labels):
            assert a["right"] <= b["left"], "hour labels overlap"
        past = driver.find_elements("css selector", "#today > li.past")
        if open_id in [r[0] for r in SHOWCASE[:6]]:
            assert past, "the morning's booking is shown as past"
            assert past[0].value_of_css_property("color") != driver.find_element(
                "css selector", "#today > li:not(.past)").value_of_css_property("color")
        if size[0] > 1000:
            _save(driver, f"web-room-{state}.png", tmp_path)


def test_kiosk_board_with_token_in_the_url_speaks_the_configured_language(
        tmp_path: Path) -> None:
    kiosk = WebNode(tmp_path, token="tv-lobby", language="zh+en")
    kiosk.start()
    try:
        kiosk.book("omm_a", uid="kiosk")
        with chromium(1920, 1080) as driver:
            driver.get(kiosk.url + "/board")  # no token: nothing to show
            assert "unauthorized" in driver.page_source
            driver.get(kiosk.url + "/board?token=tv-lobby")
            wait_for(lambda: tile_state(driver, "omm_a") == "busy", 15, "room A busy")
            wait_for(lambda: "使用中 · In use" in tile_text(driver, "omm_a"), 5, "tile A in words")
            wait_for(lambda: "空闲 · Free" in tile_text(driver, "omm_b"), 5, "tile omm_b in words")
            assert "实时 live" in conn_text(driver)
            # The overview's tiles hold the long zh+en words without spilling over.
            driver.get(kiosk.url + "/?token=tv-lobby")
            wait_for(lambda: tile_state(driver, "omm_a") == "busy", 15, "overview drawn")
            spill = driver.execute_script("""
                return Array.from(document.querySelectorAll('#rooms > li.tile')).filter(
                  li => li.scrollWidth > li.clientWidth + 1).map(li => li.innerText);""")
            assert spill == []
            driver.get(kiosk.url + "/board?token=tv-lobby")
            wait_for(lambda: tile_state(driver, "omm_a") == "busy", 15, "board again")
            # The token travels with the page's own requests (the live stream answered).
            kiosk.book("omm_b", uid="kiosk-b")
            wait_for(lambda: tile_state(driver, "omm_b") == "busy", 5, "room B busy")
    finally:
        kiosk.stop()


def test_stale_rooms_say_as_of_and_lead_with_the_link_problem(tmp_path: Path) -> None:
    """A node whose Feishu link is down past ``stale_after_minutes`` (clock moved on)."""
    from datetime import UTC, datetime, timedelta

    from display.node import Node
    from display.testing.clock import FakeClock

    text = ('[node]\nname = "stale-test"\ntimezone = "UTC"\nstate_dir = "state"\nclock = "trust"\n'
            '[[rooms]]\nopen_id = "omm_a"\nname = "Room A"\n')

    def link_up(node: Node, clock: FakeClock) -> None:
        node.freshness.expect("feishu", clock.now())
        node.set_link("feishu", True)

    with node_with_web(tmp_path, text, datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
                       setup=link_up) as served, chromium(1280, 900) as driver:
        node, clock = served.node, served.clock
        driver.get(f"{served.url}/")
        wait_for(lambda: tile_state(driver, "omm_a") == "free", 15, "room A free")
        assert "stale" not in tile_text(driver, "omm_a")
        clock.advance(timedelta(minutes=5))
        node.set_link("feishu", False, "connection lost; reconnecting")  # down at 09:05
        clock.advance(timedelta(minutes=11))
        node.wake()
        wait_for(lambda: "as of 09:05" in tile_text(driver, "omm_a"), 10,
                 "the tile says stale as of when the link went down")
        wait_for(lambda: "stale" in tile_text(driver, "omm_a"), 5, "tile omm_a in words")
        # The link's state is not a room's: it follows within the page's 1 s comparison.
        problems = wait_for(lambda: "link down" in (text := driver.find_element(
            "id", "problems").text) and text, 5, "the link problem listed")
        # One cause, and what it explains: the link down since 09:05 left Room A stale.
        assert ("Feishu link down since 09:05 (connection lost; reconnecting): 1 room stale"
                in problems)
        driver.find_element("css selector", "#problems summary").click()
        assert "Room A: stale — as of 09:05" in driver.find_element("id", "problems").text
