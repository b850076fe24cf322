"""Two brokers joined by Mosquitto's own bridge, as docs/MQTT.md's recipe writes them: a fleet
whose ``[mqtt] url`` lists both keeps working when the one it uses is killed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from display.testing.broker import Broker, Recorder
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode, fake_clock
from display.testing.waiting import wait_for

P = "room-display/v1"


def bridge_lines(name: str, other: Broker) -> tuple[str, ...]:
    """The standby's side of the pair: docs/MQTT.md, "Two brokers"."""
    return (f"connection {name}", f"address 127.0.0.1:{other.port}",
            "topic room-display/# both 1", "topic homeassistant/# both 1",
            "try_private true", "cleansession true", "restart_timeout 1 5")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    primary = Broker(tmp_path / "broker-a")
    primary.start()
    standby = Broker(tmp_path / "broker-b", extra=bridge_lines("to-broker-a", primary))
    standby.start()
    yield primary, standby
    standby.stop()
    primary.stop()


def test_a_fleet_moves_to_the_second_broker_when_the_first_is_killed(
        tmp_path: Path, pair: tuple[Broker, Broker]) -> None:
    primary, standby = pair
    clock: FakeClock = fake_clock()
    urls = [primary.url, standby.url]
    nodes = [RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=urls,
                         clock=clock).start(),
             RunningNode(tmp_path / "agent", AGENT, name="agent-1", url=urls,
                         clock=clock).start()]
    bridge, agent = nodes
    on_standby = Recorder(standby.port)
    try:
        wait_for(lambda: agent.state() == "free", timeout=10, what="agent free")
        start = clock.now() - timedelta(minutes=5)
        bridge.sink.accept(envelope(uid="bk1", start=start, end=start + timedelta(hours=1),
                                    event_time=1))
        wait_for(lambda: agent.state() == "busy", timeout=10, what="agent busy via broker A")
        assert bridge.mqtt.link.broker == f"127.0.0.1:{primary.port}"
        # Mosquitto's bridge carried the retained schedule over to the standby already.
        wait_for(lambda: on_standby.get(f"{P}/rooms/omm_a/schedule"), timeout=10,
                 what="schedule on the standby")

        primary.kill()
        for node in nodes:
            wait_for(lambda n=node: n.mqtt.link.connected
                     and n.mqtt.link.broker == f"127.0.0.1:{standby.port}",
                     timeout=15, what=f"{node.config.node.name} on broker B")
        # The links follow on the node's worker, a moment after paho's connected flag.
        wait_for(lambda: agent.link("broker").get("up") and agent.link("bridge").get("up"),
                 timeout=10, what="the agent's broker and bridge links up on broker B")
        # Bookings keep flowing through the standby alone.
        bridge.sink.accept(envelope("deleted", uid="bk1", start=start,
                                    end=start + timedelta(hours=1), event_time=2))
        wait_for(lambda: agent.state() == "free", timeout=10, what="agent free via broker B")
        # The standby's retained state is complete: a newcomer gets every topic at once.
        late = Recorder(standby.port)
        try:
            for topic in (f"{P}/rooms/omm_a/schedule", f"{P}/rooms/omm_b/schedule",
                          f"{P}/rooms/omm_a/state", f"{P}/nodes/bridge-1/availability",
                          f"{P}/nodes/agent-1/availability"):
                got = wait_for(lambda t=topic: late.get(t), timeout=10, what=topic)
                assert got[1] is True, f"{topic} not retained"
            assert json.loads(late.get(f"{P}/rooms/omm_a/state")[0])["state"] == "free"  # type: ignore[index]
            assert late.get(f"{P}/nodes/bridge-1/availability")[0] == b"online"  # type: ignore[index]
        finally:
            late.close()
        status = bridge.node.status()["node"]["mqtt"]
        assert status["brokers"] == [f"127.0.0.1:{primary.port}", f"127.0.0.1:{standby.port}"]
        assert status["broker"] == f"127.0.0.1:{standby.port}" and status["failovers"] >= 1
    finally:
        on_standby.close()
        for node in reversed(nodes):
            node.close()


def test_a_node_starts_on_the_second_broker_when_the_first_is_down(
        tmp_path: Path, pair: tuple[Broker, Broker]) -> None:
    primary, standby = pair
    primary.kill()
    clock = fake_clock()
    agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1",
                        url=[primary.url, standby.url], clock=clock).start()
    try:
        wait_for(lambda: agent.mqtt.link.connected, timeout=15, what="connected to B")
        assert agent.mqtt.link.broker == f"127.0.0.1:{standby.port}"
    finally:
        agent.close()
