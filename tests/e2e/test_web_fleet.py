"""The fleet on the bridge's page: agents publish their status, the bridge gathers it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from display.config import Secret, WebConfig
from display.status import render_text
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode, fake_clock
from display.testing.waiting import wait_for
from display.web.server import WebServer


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def get(server: WebServer, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{server.address}{path}", timeout=10) as answer:
        body: bytes = answer.read()
        return body


def test_agents_status_reaches_the_bridges_page(tmp_path: Path, broker: Broker) -> None:
    clock = fake_clock()
    bridge = RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=broker.url,
                         clock=clock).start()
    agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1", url=broker.url,
                        clock=clock).start()
    web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), bridge.node)
    assert web.start()
    try:
        def fleet() -> dict[str, Any]:
            doc: dict[str, Any] = json.loads(get(web, "/api/status"))
            result: dict[str, Any] = doc["node"].get("fleet", {})
            return result

        # Its panel comes online after its first draw; the bridge's page follows within seconds.
        wait_for(lambda: fleet().get("agent-1", {}).get("online")
                 and [d["online"] for d in fleet()["agent-1"]["devices"]] == [True], 15,
                 "the agent and its panel online on the bridge's page")
        seen = fleet()["agent-1"]
        assert seen["role"] == "agent" and seen["clock_synced"] is True
        assert seen["devices"][0]["id"] == "agent-1-led"
        assert seen["last_seen"] is not None
        assert fleet()["bridge-1"]["online"] is True  # the bridge lists itself too
        text = render_text(bridge.node.status()).splitlines()  # `room-display status`
        agent_line = next(line for line in text if line.startswith("    agent-1 (agent): "))
        assert agent_line.startswith(f"    agent-1 (agent): online, version {seen['version']}, "
                                     "clock synced, last seen ")
        assert any(line.startswith("      device agent-1-led [led] online  room ")
                   for line in text), text
        metrics = get(web, "/metrics").decode()
        assert 'room_display_node_online{node="agent-1"} 1' in metrics

        # Retained on the broker: a subscriber arriving now gets it at once, as a retained
        # copy (what a bridge started after its agents sees).
        recorder = Recorder(broker.port, "room-display/v1/nodes/+/status")
        try:
            message, retained = wait_for(
                lambda: recorder.get("room-display/v1/nodes/agent-1/status"), 15,
                "the agent's retained status")
        finally:
            recorder.close()
        assert retained
        payload: dict[str, Any] = json.loads(message)
        assert payload["role"] == "agent" and payload["version"]
        assert payload["devices"][0]["id"] == "agent-1-led"
        assert set(payload["links"]) == {"broker", "bridge"}

        agent.close()  # a clean stop says offline (a crash: the will says it)
        wait_for(lambda: fleet()["agent-1"]["online"] is False, 15, "the agent offline")
        assert fleet()["agent-1"]["last_seen"] is not None  # when it was last heard of
        metrics = get(web, "/metrics").decode()
        assert 'room_display_node_online{node="agent-1"} 0' in metrics
    finally:
        web.close()
        bridge.close()
