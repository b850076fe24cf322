"""Quiet hours on the web page (headless Chromium): a room's tile says closed, and until when."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from display.testing.browser import chromium
from display.testing.waiting import wait_for
from display.testing.web_node import node_with_web


def test_a_closed_room_says_so_on_its_tile_and_in_the_api(tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    text = ('[node]\nname = "quiet"\ntimezone = "UTC"\nstate_dir = "state"\nclock = "trust"\n'
            'open_hours = "Mon-Fri 08:00-20:00"\n'
            '[[rooms]]\nopen_id = "omm_a"\nname = "Room A"\n'
            '[[rooms]]\nopen_id = "omm_b"\nname = "Room B"\nopen_hours = "always"\n')
    friday = datetime(2026, 11, 27, 19, 59, tzinfo=UTC)

    def tile_text(driver: Any, open_id: str) -> str:
        try:
            found = driver.find_elements(By.CSS_SELECTOR, f'#rooms > li[data-id="{open_id}"]')
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:
            return ""

    with node_with_web(tmp_path, text, friday) as served:
        with chromium(1280, 900) as driver:
            driver.get(f"{served.url}/")
            wait_for(lambda: "Room A" in tile_text(driver, "omm_a"), 15, "room A shown")
            assert "Closed" not in tile_text(driver, "omm_a")
            served.clock.advance(timedelta(minutes=1))
            served.node.wake()
            wait_for(lambda: "Closed — until 2026-11-30 08:00" in tile_text(driver, "omm_a"), 10,
                     "room A closed until Monday")
            assert "Closed" not in tile_text(driver, "omm_b")
            classes = driver.find_element(By.CSS_SELECTOR,
                                          '#rooms > li[data-id="omm_a"]').get_attribute("class")
            assert "closed" in classes.split()
        with urllib.request.urlopen(f"{served.url}/api/status", timeout=5) as answer:
            rooms = {r["open_id"]: r for r in json.load(answer)["rooms"]}
    assert rooms["omm_a"]["closed"] is True
    assert rooms["omm_a"]["opens_at"] == "2026-11-30T08:00:00+00:00"
    assert rooms["omm_b"]["closed"] is False and rooms["omm_b"]["opens_at"] is None
