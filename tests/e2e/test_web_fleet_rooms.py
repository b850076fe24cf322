"""The fleet on the bridge's page, in a real browser: another Pi's devices by room name."""

from __future__ import annotations

from pathlib import Path

from display.testing.browser import chromium
from display.testing.waiting import wait_for


def test_an_agents_devices_name_their_room_as_the_bridge_knows_it(tmp_path: Path) -> None:
    """The fleet's devices carry room ids; the page shows the room's name where it has one."""
    import threading
    from datetime import UTC, datetime

    from selenium.webdriver.common.by import By

    from display.config import Secret, WebConfig, parse_config
    from display.devices.factory import make_device
    from display.node import Node
    from display.store import ScheduleStore
    from display.testing.clock import FakeClock
    from display.web.server import WebServer

    text = ('[node]\nname = "bridge-1"\ntimezone = "UTC"\nstate_dir = "state"\nclock = "trust"\n'
            '[[rooms]]\nopen_id = "omm_a"\nname = "3F 大会议室"\n')
    config = parse_config(text, tmp_path / "room-display.toml")
    store = ScheduleStore(tmp_path / "schedule.db", durable=False)
    node = Node(config, store, FakeClock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC)), make_device)
    # Offline, so that a page listing only unhealthy devices lists them too.
    device = {"kind": "led", "online": False, "last_update": None, "error": "port gone"}
    node.add_status_source("fleet", lambda: {"agent-3f": {
        "online": True, "role": "agent", "version": "1.0", "clock_synced": True,
        "last_seen": None, "links": {}, "rooms": ["omm_a"],
        "devices": [dict(device, id="3f-led", room="omm_a"),
                    dict(device, id="far-led", room="omm_elsewhere")]}})
    stop = threading.Event()
    loop = threading.Thread(target=node.run, args=(stop,), daemon=True)
    loop.start()
    web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), node)
    assert web.start()
    try:
        with chromium(1280, 900) as driver:
            driver.get(f"http://{web.address}/")
            rows = wait_for(lambda: len(items := driver.find_elements(
                By.CSS_SELECTOR, "#devices > li")) == 2 and [i.text for i in items], 15,
                "the agent's two devices listed")
            row = next(r for r in rows if r.startswith("3f-led"))
            assert "3F 大会议室 · agent-3f" in row and "omm_a" not in row
            # A room this node does not list keeps its id: there is no name to show.
            assert "omm_elsewhere · agent-3f" in next(r for r in rows if "far-led" in r)
    finally:
        web.close()
        stop.set()
        node.wake()
        loop.join(timeout=5)
        node.close()
        store.close()
