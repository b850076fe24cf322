"""Two brokers joined by Mosquitto's own bridge, as docs/MQTT.md's recipe writes them: a fleet
whose ``[mqtt] url`` lists both keeps working when the one it uses is killed.

The last test rehearses the recipe as deployed: both brokers are Debian's mosquitto with the files
``scripts/mqtt-credentials --broker-bridge`` writes (accounts, ACL, the standby's bridge file), each
on an address of its own outside loopback; the bridges and the agent are whole ``room-display
run`` processes logging in with their own credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from display.cli.mqtt_acl import BrokerBridge, Site, bridge_conf_text, hash_password
from display.testing.broker import Broker, DeployedBroker, Recorder
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode, fake_clock
from display.testing.node_process import NodeProcess, agent_text, bridge_text
from display.testing.waiting import wait_for

P = "room-display/v1"
ROOT = Path(__file__).resolve().parents[2]


def bridge_lines(other: Broker) -> tuple[str, ...]:
    """The standby's side of the pair, as ``scripts/mqtt-credentials --broker-bridge`` writes it
    (docs/MQTT.md, "Two brokers"); these brokers take any login."""
    text = bridge_conf_text(Site(bridges=("bridge-1",)),
                            BrokerBridge("broker-b", f"127.0.0.1:{other.port}"), "unused")
    return tuple(text.splitlines())


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    primary = Broker(tmp_path / "broker-a")
    primary.start()
    standby = Broker(tmp_path / "broker-b", extra=bridge_lines(primary))
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


# -- the recipe as deployed ------------------------------------------------------------------------

ROOMS = ("omm_a", "omm_b")
#: A WLED light of room B on the broker of its own choice, driven by agent-1 over MQTT.
WLED = ('\n[[rooms.devices]]\nid = "b-wled"\nkind = "led"\nprotocol = "wled"\n'
        'url = "mqtt:lights/b"\n')
OBSERVER = "user observer\ntopic read #\n"


def mqtt_credentials(*args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([str(ROOT / "scripts" / "mqtt-credentials"), *args], capture_output=True,
                   text=True, timeout=60, env=env, check=True)


def password(out: Path, user: str) -> str:
    return (out / "credentials" / user / "mqtt-password").read_text().strip()


def on_broker(node: NodeProcess, broker: DeployedBroker) -> bool:
    doc = node.status()
    mqtt = doc["node"].get("mqtt", {}) if doc["node"].get("running") else {}
    return bool(mqtt.get("connected") and mqtt.get("broker") == f"{broker.host}:{broker.port}")


def shown(node: NodeProcess) -> dict[str, set[str]]:
    doc = node.status()
    return {r["open_id"]: {b["uid"] for b in r["next"]} for r in doc["rooms"]} \
        if doc["node"].get("running") else {}


def publisher(node: NodeProcess) -> str | None:
    doc = node.status()
    replication = doc["node"].get("replication") or {} if doc["node"].get("running") else {}
    peers = replication.get("peers", {})
    return replication.get("publisher") if peers and all(
        p["online"] for p in peers.values()) else None


@pytest.fixture
def deployed() -> Iterator[tuple[DeployedBroker, DeployedBroker]]:
    primary, standby = DeployedBroker(), DeployedBroker()
    try:
        yield primary, standby
    finally:
        standby.close()
        primary.close()


@pytest.mark.slow
def test_two_deployed_brokers_with_the_generated_accounts_survive_a_killed_broker(
        tmp_path: Path, deployed: tuple[DeployedBroker, DeployedBroker]) -> None:
    primary, standby = deployed
    out = primary.etc
    mqtt_credentials("--out", str(out), "--bridge", "bridge-a", "--bridge", "bridge-b",
                     "--agent", "agent-1", "--device", "agent-1=lights/b=wled-b",
                     "--broker-bridge", f"broker-b={primary.host}")
    # An administrator's read-only account, below the ACL's keep-line, to look at each broker.
    with (out / "room-display.acl").open("a") as acl:
        acl.write(OBSERVER)
    with (out / "passwd").open("a") as passwd:
        passwd.write(f"observer:{hash_password('observer-secret')}\n")
    # The same folder on both brokers, owners and modes kept (docs/MQTT.md: rsync -a as root);
    # on two machines it has the same path on both, here each tree has its own.
    subprocess.run(["cp", "-a", f"{out}/.", str(standby.etc)], check=True)
    conf = standby.etc / "room-display.conf"
    conf.write_text(conf.read_text().replace(str(out), str(standby.etc)))
    primary.link(standby)
    primary.start(out / "room-display.conf")
    standby.start(conf, standby.etc / "room-display-bridge-broker-b.conf")
    urls = [primary.url, standby.url]

    def node(name: str, text: str) -> NodeProcess:
        return NodeProcess(tmp_path / name, text, secret=password(out, name))

    # bridge-b prefers the standby: replication and availability cross Mosquitto's bridge.
    nodes = [node("bridge-a", bridge_text("bridge-a", urls, ROOMS, login=True)),
             node("bridge-b", bridge_text("bridge-b", urls[::-1], ROOMS, login=True)),
             node("agent-1", agent_text("agent-1", urls, ROOMS, login=True,
                                        last_room_devices=WLED))]
    a, b, agent = nodes
    try:
        for n in nodes:
            n.start()
        for n, broker in ((a, primary), (b, standby), (agent, primary)):
            wait_for(lambda n=n, broker=broker: on_broker(n, broker), timeout=90,
                     what=f"{n.name} on its first broker")
        wait_for(lambda: publisher(a) and publisher(a) == publisher(b), timeout=30,
                 what="the bridges see each other across the two brokers")
        for n in (a, b):
            wait_for(n.webhook_up, timeout=60, what=f"{n.name}'s webhook")
        begin = datetime.now().astimezone() + timedelta(hours=2)

        def send(to: NodeProcess, uid: str, room: str, kind: str = "created") -> None:
            assert to.deliver(envelope(kind, uid=uid, start=begin, end=begin + timedelta(
                minutes=30), rooms=(room,), event_time=2 if kind == "deleted" else 1)) == 200

        send(b, "bk1", "omm_a")  # through the standby
        send(a, "bk2", "omm_b")  # through the primary
        wait_for(lambda: shown(agent) == {"omm_a": {"bk1"}, "omm_b": {"bk2"}}, timeout=30,
                 what="the agent shows what both bridges received")
        # The WLED light logs in to the standby with its own account: it gets what the agent on
        # the primary drives it with (its device topics cross the bridge too).
        light = Recorder(standby.port, "lights/b/api", username="wled-b",
                         password=password(out, "wled-b"), host=standby.host)
        try:
            wait_for(lambda: light.get("lights/b/api"), timeout=15,
                     what="the agent's WLED state on the standby")
        finally:
            light.close()
        for n in (a, b):
            wait_for(lambda n=n: shown(n) == shown(agent), timeout=30,
                     what=f"{n.name}'s store converged")

        primary.kill()
        killed = time.monotonic()
        for n in (a, agent):
            wait_for(lambda n=n: on_broker(n, standby), timeout=30,
                     what=f"{n.name} moved to the standby")
        moved = time.monotonic() - killed
        assert moved < 15, f"the fleet took {moved:.1f} s to move"
        wait_for(lambda: agent.status()["node"]["links"].get("bridge", {}).get("up"),
                 timeout=15, what="the agent's bridge link up on the standby")
        # Bookings keep flowing: a cancellation through one bridge, a booking through the other.
        send(a, "bk1", "omm_a", "deleted")
        send(b, "bk3", "omm_b")
        wait_for(lambda: shown(agent) == {"omm_a": set(), "omm_b": {"bk2", "bk3"}},
                 timeout=30, what="the agent follows through the standby alone")
        assert not any(r["stale"] for r in agent.status()["rooms"])

        # The standby's retained state is complete: a newcomer gets every topic at once.
        late = Recorder(standby.port, username="observer", password="observer-secret",
                        host=standby.host)
        try:
            wanted = {f"{P}/rooms/{r}/{t}" for r in ROOMS for t in ("schedule", "state")} | {
                f"{P}/nodes/{n}/availability" for n in ("bridge-a", "bridge-b", "agent-1")}
            for topic in sorted(wanted):
                got = wait_for(lambda t=topic: late.get(t), timeout=15, what=topic)
                assert got[1] is True, f"{topic} not retained"
            for n in ("bridge-a", "bridge-b", "agent-1"):
                assert late.get(f"{P}/nodes/{n}/availability")[0] == b"online"  # type: ignore[index]
            wait_for(lambda: [b["uid"] for b in json.loads(
                late.get(f"{P}/rooms/omm_b/schedule")[0])["bookings"]]  # type: ignore[index]
                == ["bk2", "bk3"], timeout=15, what="room B's newest schedule retained")
            assert json.loads(late.get(f"{P}/rooms/omm_a/schedule")[0])[  # type: ignore[index]
                "bookings"] == []
        finally:
            late.close()
        # The standby's bridge logged in to the primary with its own generated account.
        log = primary.log_text()
        assert "Connecting bridge" in standby.log_text()
        assert "u'broker-b')" in log and "as broker-b (" in log, log
    finally:
        for n in nodes:
            n.stop()
