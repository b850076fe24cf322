"""The fleet on the bridge's page, in a real browser: another Pi's devices by room name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from display.testing.browser import chromium
from display.testing.waiting import wait_for
from display.testing.web_node import node_with_web


def test_an_agents_devices_name_their_room_as_the_bridge_knows_it(tmp_path: Path) -> None:
    """The fleet's devices carry room ids; the page shows the room's name where it has one."""
    from selenium.webdriver.common.by import By

    from display.node import Node

    text = ('[node]\nname = "bridge-1"\ntimezone = "UTC"\nstate_dir = "state"\nclock = "trust"\n'
            '[[rooms]]\nopen_id = "omm_a"\nname = "3F 大会议室"\n')
    # Offline, so that a page listing only unhealthy devices lists them too.
    device = {"kind": "led", "online": False, "last_update": None, "error": "port gone"}

    def fleet(node: Node, _clock: object) -> None:
        node.add_status_source("fleet", lambda: {"agent-3f": {
            "online": True, "role": "agent", "version": "1.0", "clock_synced": True,
            "last_seen": None, "links": {}, "rooms": ["omm_a"],
            "devices": [dict(device, id="3f-led", room="omm_a"),
                        dict(device, id="far-led", room="omm_elsewhere")]}})

    with node_with_web(tmp_path, text, datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
                       setup=fleet) as served, chromium(1280, 900) as driver:
        driver.get(f"{served.url}/")
        rows = wait_for(lambda: len(items := driver.find_elements(
            By.CSS_SELECTOR, "#devices > li")) == 2 and [i.text for i in items], 15,
            "the agent's two devices listed")
        row = next(r for r in rows if r.startswith("3f-led"))
        assert "3F 大会议室 · agent-3f" in row and "omm_a" not in row
        # A room this node does not list keeps its id: there is no name to show.
        assert "omm_elsewhere · agent-3f" in next(r for r in rows if "far-led" in r)
