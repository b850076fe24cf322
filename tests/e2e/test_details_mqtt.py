"""Titles and names over MQTT (issue 19): an agent shows what its bridge's ``[details]``
allows and nothing else; it shows the bridge's room name unless its own config names the room.
Real Mosquitto, real paho clients, real Node loops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from display.details import StoredDetails
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode, fake_clock
from display.testing.waiting import wait_for

P = "room-display/v1"
ON = "\n[details]\norganizer = true\ntitle = true\n"
#: An agent whose config leaves the room's name to its bridge.
UNNAMED_AGENT = AGENT.replace('name = "Room A"\n', "")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


@pytest.fixture
def nodes() -> Iterator[list[RunningNode]]:
    started: list[RunningNode] = []
    yield started
    for n in reversed(started):
        n.close()


def start(tmp: Path, template: str, name: str, broker: Broker, clock: FakeClock,
          nodes: list[RunningNode]) -> RunningNode:
    node = RunningNode(tmp / name, template, name=name, url=broker.url, clock=clock).start()
    nodes.append(node)
    return node


def book(bridge: RunningNode, uid: str, organizer: str | None = "ou_alice") -> None:
    start_at = bridge.clock.now() - timedelta(minutes=5)
    env = envelope(uid=uid, start=start_at, end=start_at + timedelta(hours=1))
    if organizer is None:
        del env["event"]["organizer"]
    bridge.sink.accept(env)


def fetched(bridge: RunningNode, rows: dict[str, StoredDetails]) -> None:
    """What the intake child stores after fetching (then tells the node)."""
    bridge.store.put_details(rows, bridge.clock.now())
    bridge.node.notify(["omm_a"])


def current(agent: RunningNode) -> dict[str, object]:
    panel = agent.panel() or {}
    return panel.get("current") or {}


@pytest.mark.parametrize("details", [ON, ""], ids=["on", "off"])
def test_agent_shows_only_what_the_bridge_allows(tmp_path: Path, broker: Broker,
                                                 nodes: list[RunningNode], details: str) -> None:
    clock = fake_clock()
    rec = Recorder(broker.port)
    try:
        bridge = start(tmp_path, BRIDGE + details, "bridge-1", broker, clock, nodes)
        agent = start(tmp_path, AGENT, "agent-1", broker, clock, nodes)
        book(bridge, "m1")
        fetched(bridge, {"m1_0": StoredDetails("Quarterly review", "Alice Chen")})
        wait_for(lambda: current(agent).get("uid") == "m1", 10, "the booking on the agent")
        if details:
            got = wait_for(lambda: current(agent).get("title") and current(agent), 10,
                           "the title on the agent")
            assert got["organizer"] == "Alice Chen"
            assert "organizer_open_id" not in got  # the state JSON (Home Assistant) has none
            view = agent.node.views()["omm_a"]
            assert view.detail(view.occupancy.current) is not None
        else:
            bridge.node.tick()
            agent.node.tick()
            assert "title" not in current(agent) and "organizer" not in current(agent)
            # Not on the broker either: neither the schedule nor the state carries them.
            for topic in (f"{P}/rooms/omm_a/schedule", f"{P}/rooms/omm_a/state"):
                payload = wait_for(lambda t=topic: rec.get(t), 10, topic)[0]
                assert b"Quarterly" not in payload and b"Alice Chen" not in payload
    finally:
        rec.close()


def test_private_booking_reaches_the_agent_as_booked(tmp_path: Path, broker: Broker,
                                                     nodes: list[RunningNode]) -> None:
    clock = fake_clock()
    bridge = start(tmp_path, BRIDGE + ON, "bridge-1", broker, clock, nodes)
    agent = start(tmp_path, AGENT, "agent-1", broker, clock, nodes)
    book(bridge, "p1", organizer=None)
    fetched(bridge, {"p1_0": StoredDetails("Should never show", "Nobody")})
    got = wait_for(lambda: current(agent).get("private") and current(agent), 10, "private")
    assert "title" not in got and "organizer" not in got


def test_agent_shows_the_bridge_name_unless_it_names_the_room(tmp_path: Path, broker: Broker,
                                                              nodes: list[RunningNode]) -> None:
    clock = fake_clock()
    start(tmp_path, BRIDGE.replace('name = "Room A"', 'name = "3F 大会议室"'), "bridge-1",
          broker, clock, nodes)
    unnamed = start(tmp_path, UNNAMED_AGENT, "agent-1", broker, clock, nodes)
    named = start(tmp_path, AGENT, "agent-2", broker, clock, nodes)

    def name(agent: RunningNode) -> object:
        agent.node.tick()
        return (agent.panel() or {}).get("name")

    wait_for(lambda: name(unnamed) == "3F 大会议室", 10, "the bridge's name on the agent")
    wait_for(lambda: (named.panel() or {}).get("open_id"), 10, "the named agent's panel")
    assert name(named) == "Room A"  # its own config wins
    assert json.loads(json.dumps(unnamed.node.status()))["rooms"][0]["name"] == "3F 大会议室"
