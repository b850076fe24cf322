"""Bridge -> broker -> agents, with a real Mosquitto and real paho clients on both ends."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from display.config import parse_config
from display.encode.mqtt_schedule import MAX_SCHEDULE_BYTES, decode_schedule
from display.testing.broker import Broker, Recorder
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import AGENT, BRIDGE, START, RunningNode
from display.testing.waiting import wait_for
from display.transport.mqtt_client import probe

P = "room-display/v1"


def bridge_node(tmp: Path, b: Broker, clock: FakeClock, nodes: list[RunningNode],
                name: str = "bridge-1", mqtt_extra: str = "") -> RunningNode:
    n = RunningNode(tmp / name, BRIDGE, name=name, url=b.url, clock=clock,
                    mqtt_extra=mqtt_extra).start()
    nodes.append(n)
    return n


def agent_node(tmp: Path, b: Broker, clock: FakeClock, nodes: list[RunningNode],
               name: str = "agent-1") -> RunningNode:
    n = RunningNode(tmp / name, AGENT, name=name, url=b.url, clock=clock).start()
    nodes.append(n)
    return n


def book(bridge: RunningNode, minutes_from_now: int, length: int, uid: str = "bk1",
         event_time: int = 1) -> None:
    start = bridge.clock.now() + timedelta(minutes=minutes_from_now)
    end = start + timedelta(minutes=length)
    result = bridge.sink.accept(envelope(uid=uid, start=start, end=end, event_time=event_time))
    assert result.changed == {"omm_a"}


def test_bridge_publishes_retained_schedule_state_and_availability(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    rec = Recorder(broker.port)
    try:
        bridge = bridge_node(tmp_path, broker, clock, nodes)
        wait_for(lambda: rec.get(f"{P}/nodes/bridge-1/availability"), what="online")
        assert rec.get(f"{P}/nodes/bridge-1/availability") == (b"online", False)
        book(bridge, -5, 60)
        wait_for(lambda: json.loads((rec.get(f"{P}/rooms/omm_a/state") or (b"{}",))[0])
                 .get("state") == "busy", what="busy state published")
        schedule = decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0], "omm_a")  # type: ignore[index]
        assert schedule.bridge == "bridge-1" and [b.uid for b in schedule.bookings] == ["bk1"]
        assert schedule.bookings[0].start == START - timedelta(minutes=5)
        assert json.loads(rec.get(f"{P}/rooms/omm_b/state")[0])["state"] == "free"  # type: ignore[index]
    finally:
        rec.close()
    # A late subscriber gets everything at once, flagged retained.
    late = Recorder(broker.port)
    try:
        for topic in (f"{P}/rooms/omm_a/schedule", f"{P}/rooms/omm_a/state",
                      f"{P}/rooms/omm_b/schedule", f"{P}/nodes/bridge-1/availability"):
            got = wait_for(lambda t=topic: late.get(t), what=topic)
            assert got[1] is True, f"{topic} not retained"
        doc = json.loads(late.get(f"{P}/rooms/omm_a/schedule")[0])  # type: ignore[index]
        assert set(doc) == {"open_id", "name", "version", "generated_at", "bridge", "bookings"}
        assert set(doc["bookings"][0]) == {"event_id", "uid", "original_time", "start", "end",
                                           "organizer_open_id"}
    finally:
        late.close()
    # A clean stop says offline (retained); the status names the broker link.
    assert bridge.node.status()["node"]["mqtt"]["connected"] is True
    nodes.remove(bridge)
    bridge.close()
    final = Recorder(broker.port)
    try:
        wait_for(lambda: final.get(f"{P}/nodes/bridge-1/availability") == (b"offline", True),
                 what="offline retained")
    finally:
        final.close()


def test_agent_follows_the_bridge_and_two_agents_agree(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes)
    first = agent_node(tmp_path, broker, clock, nodes, "agent-1")
    wait_for(lambda: first.state() == "free", what="agent shows free")
    book(bridge, -5, 60)
    wait_for(lambda: first.state() == "busy", what="agent shows busy")
    # Started later: gets the retained schedule at once.
    second = agent_node(tmp_path, broker, clock, nodes, "agent-2")
    wait_for(lambda: second.state() == "busy", timeout=5, what="late agent busy")
    wait_for(lambda: first.link("bridge").get("up") and second.link("bridge").get("up"),
             what="bridge link up")
    book(bridge, 60, 30, uid="bk2")
    wait_for(lambda: [b["uid"] for b in (second.panel() or {}).get("next", [])] == ["bk2"],
             what="next booking at agent-2")
    wait_for(lambda: first.panel()["next"] == second.panel()["next"],  # type: ignore[index]
             what="agents agree")
    assert {k: v for k, v in first.panel().items() if k != "device"} == {  # type: ignore[union-attr]
        k: v for k, v in second.panel().items() if k != "device"}  # type: ignore[union-attr]
    versions = [n.mqtt.agent.status()["omm_a"]["version"] for n in (first, second)]  # type: ignore[union-attr]
    assert versions[0] == versions[1] is not None
    # The bridge going away (clean close: retained "offline") is seen by the agents.
    nodes.remove(bridge)
    bridge.close()
    wait_for(lambda: first.link("bridge").get("up") is False, what="bridge link down")
    assert first.link("bridge")["error"] == "bridge bridge-1 offline"


def test_an_agent_subscribes_only_to_its_rooms_and_its_bridges_availability(
        tmp_path: Path, clock: FakeClock, nodes: list[RunningNode]) -> None:
    b = Broker(tmp_path / "broker", log_subscriptions=True)
    b.start()
    try:
        bridge_node(tmp_path, b, clock, nodes)
        agent = agent_node(tmp_path, b, clock, nodes)
        wait_for(lambda: agent.link("bridge").get("up"), what="the agent follows the bridge")
        wait_for(lambda: f"room-display-agent-1 1 {P}/nodes/bridge-1/availability"
                 in b.log.read_text(), what="the agent's subscription to its bridge")
        mine = [line.split()[-1] for line in b.log.read_text().splitlines()
                if " room-display-agent-1 " in line]
        assert set(mine) == {f"{P}/rooms/omm_a/schedule", f"{P}/nodes/agent-1/availability",
                             f"{P}/nodes/bridge-1/availability"}, mine
    finally:
        b.kill()


@pytest.mark.slow  # the node's status document follows a lost link within ~10 s today
def test_check_connects_only_when_no_node_runs(
        tmp_path: Path, nodes: list[RunningNode],
        capsys: pytest.CaptureFixture[str]) -> None:
    """With client ids bound to user names (docs/MQTT.md, Trust) a second connection with the
    node's account would replace the node's own: check reads the running node's link then."""
    from display.cli import main
    from display.clock import SystemClock

    b = Broker(tmp_path / "broker")
    b.start()
    try:
        directory = tmp_path / "agent-1"
        directory.mkdir()
        config = directory / "room-display.toml"
        config.write_text(AGENT.format(name="agent-1", url=json.dumps(b.url), mqtt_extra=""))
        main(["check", "-c", str(config)])
        assert f"ok      broker 127.0.0.1:{b.port}: connected (MQTT 3.1.1)\n" \
            in capsys.readouterr().out
        # The real clock: the node rewrites its status document as time passes.
        agent = RunningNode(directory, AGENT, name="agent-1", url=b.url,
                            clock=SystemClock()).start()
        nodes.append(agent)
        wait_for(lambda: agent.link("broker").get("up"), what="the agent connected")

        def check() -> str:
            main(["check", "-c", str(config)])
            return capsys.readouterr().out

        wait_for(lambda: "connected (the running node's own connection)" in check(),
                 timeout=30, what="check reading the running node's link")
        b.kill()
        wait_for(lambda: f"PROBLEM broker 127.0.0.1:{b.port}: the running node is not "
                 "connected (" in check(), timeout=30, what="check reporting the lost link")
    finally:
        b.kill()


def test_broker_killed_panels_keep_changing_and_recover(
        tmp_path: Path, clock: FakeClock, nodes: list[RunningNode]) -> None:
    b = Broker(tmp_path / "broker", persistence=True)
    b.start()
    try:
        bridge = bridge_node(tmp_path, b, clock, nodes)
        agent = agent_node(tmp_path, b, clock, nodes)
        book(bridge, 20, 30)  # 09:20-09:50
        wait_for(lambda: (agent.panel() or {}).get("next"), what="booking at agent")
        assert agent.state() == "free"
        b.kill()
        wait_for(lambda: agent.link("broker").get("up") is False, what="broker down")
        # While the broker is down the agent's own clock moves the panel on.
        clock.advance(timedelta(minutes=12))
        agent.node.wake()
        wait_for(lambda: agent.state() == "soon", what="soon without broker")
        clock.advance(timedelta(minutes=10))
        agent.node.wake()
        wait_for(lambda: agent.state() == "busy", what="busy without broker")
        # Down for 22 min (> stale_after_minutes): still busy, but flagged stale.
        assert agent.panel()["stale"] is True  # type: ignore[index]
        # A booking made at the bridge while the broker is down reaches the agent on return.
        book(bridge, 60, 30, uid="bk2")
        b.start()
        wait_for(lambda: [x["uid"] for x in (agent.panel() or {}).get("next", [])] == ["bk2"],
                 timeout=8, what="new booking after the broker returned")
        wait_for(lambda: agent.link("broker").get("up") and agent.link("bridge").get("up"),
                 what="links up again")
        assert agent.state() == "busy"
        wait_for(lambda: (agent.panel() or {}).get("stale") is False, what="fresh again")
    finally:
        b.kill()


def test_broker_restarted_without_persistence_gets_retained_state_back(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes)
    book(bridge, -5, 60)
    publisher = bridge.mqtt.bridge
    assert publisher is not None
    wait_for(lambda: bridge.mqtt.link.connected and publisher.published >= 4,
             what="published")
    before = publisher.published
    broker.kill()
    broker.start()  # persistence false: every retained message is gone
    wait_for(lambda: publisher.published >= before + 4, timeout=8, what="republished")
    assert bridge.mqtt.link.flush(5)  # acknowledged, so the subscriber gets retained copies
    rec = Recorder(broker.port)
    try:
        for topic in (f"{P}/rooms/omm_a/schedule", f"{P}/rooms/omm_a/state",
                      f"{P}/rooms/omm_b/state", f"{P}/nodes/bridge-1/availability"):
            got = wait_for(lambda t=topic: rec.get(t), timeout=5, what=topic)
            assert got[1] is True
        assert json.loads(rec.get(f"{P}/rooms/omm_a/state")[0])["state"] == "busy"  # type: ignore[index]
    finally:
        rec.close()


def test_stale_after_the_broker_stays_down(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes)
    agent = agent_node(tmp_path, broker, clock, nodes)
    wait_for(lambda: agent.link("bridge").get("up"), what="bridge up")
    broker.kill()
    wait_for(lambda: agent.link("broker").get("up") is False, what="broker down")
    clock.advance(timedelta(minutes=10))
    agent.node.wake()
    wait_for(lambda: (agent.panel() or {}).get("stale") is True, what="stale panel")
    status = agent.node.status()
    assert status["node"]["links"]["broker"]["error"].startswith("connection to broker")
    assert status["rooms"][0]["stale"] is True
    # The bridge's data comes from Feishu: a broker outage is in its status, not stale.
    bridge.node.wake()
    wait_for(lambda: bridge.node.status()["node"]["mqtt"]["error"], what="bridge sees it")
    assert "broker" not in bridge.node.freshness.links()
    assert not any(v.stale for v in bridge.node.views().values())


BAD_PAYLOADS = [
    (b"{not json", "not JSON"),
    (b"x" * (MAX_SCHEDULE_BYTES + 1), "more than"),
    (b"[]", "must be a JSON object"),
    (json.dumps({"open_id": "omm_a", "version": "7", "bridge": "b", "bookings": []}).encode(),
     "version"),
    (json.dumps({"open_id": "omm_a", "version": 1, "generated_at": "2026-11-25T01:00:00+00:00",
                 "bridge": "b", "bookings": [{"event_id": 1}]}).encode(), "bookings[0]"),
    (json.dumps({"open_id": "omm_zzz", "version": 1, "generated_at": "2026-11-25T01:00:00+00:00",
                 "bridge": "b", "bookings": []}).encode(), "omm_zzz"),
    (json.dumps({"open_id": "omm_a", "version": 1, "generated_at": "2026-11-25T01:00:00",
                 "bridge": "b", "bookings": []}).encode(), "no UTC offset"),
]


def test_bad_schedule_payloads_change_nothing(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode],
        caplog: pytest.LogCaptureFixture) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes)
    agent = agent_node(tmp_path, broker, clock, nodes)
    book(bridge, -5, 60)
    wait_for(lambda: agent.state() == "busy", what="busy")
    intake = agent.mqtt.agent
    assert intake is not None
    before = agent.store.bookings("omm_a")
    rec = Recorder(broker.port)
    caplog.set_level(logging.WARNING, logger="display.intake.mqtt_agent")
    try:
        for i, (payload, words) in enumerate(BAD_PAYLOADS):
            rec.publish(f"{P}/rooms/omm_a/schedule", payload)
            wait_for(lambda n=i: intake.rejected == n + 1, what=f"rejected {words}")
            lines = [r.getMessage() for r in caplog.records if r.name == "display.intake.mqtt_agent"
                     and "nothing applied" in r.getMessage()]
            assert len(lines) == i + 1 and "room omm_a" in lines[-1] and words in lines[-1], lines
        assert agent.store.bookings("omm_a") == before
        assert agent.state() == "busy"
        # Still running: a good schedule after all that is applied.
        book(bridge, 90, 30, uid="bk3")
        wait_for(lambda: [x["uid"] for x in (agent.panel() or {}).get("next", [])] == ["bk3"],
                 what="good schedule applied")
    finally:
        rec.close()


def test_refused_credentials_are_a_clear_error_in_status_and_check(
        tmp_path: Path, clock: FakeClock, nodes: list[RunningNode]) -> None:
    b = Broker(tmp_path / "broker", users={"panel": "right"})
    b.start()
    try:
        (tmp_path / "pw").write_text("wrong\n")
        agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1", url=b.url, clock=clock,
                            mqtt_extra='username = "panel"\npassword = "file:../pw"').start()
        nodes.append(agent)
        wait_for(lambda: "refused credentials" in (agent.link("broker").get("error") or ""),
                 what="refused in status")
        assert agent.node.status()["node"]["links"]["broker"]["error"] in (
            "broker refused credentials (not authorised)",
            "broker refused credentials (bad user name or password)")
        assert "wrong" not in json.dumps(agent.node.status())
        assert agent.config.mqtt is not None
        ok, line = probe(agent.config.mqtt, "agent-1", timeout=5)
        assert not ok and "refused credentials" in line and "username / password" in line
        assert "wrong" not in line
        (tmp_path / "pw").write_text("right\n")
        good = parse_config(agent.path.read_text(), agent.path)
        assert good.mqtt is not None
        assert probe(good.mqtt, "agent-1", timeout=5) == (
            True, f"broker 127.0.0.1:{b.port}: connected (MQTT 3.1.1)")
    finally:
        b.kill()


def test_mqtt5_connects_and_carries_the_schedule(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes, mqtt_extra='protocol = "5"')
    agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1", url=broker.url, clock=clock,
                        mqtt_extra='protocol = "5"').start()
    nodes.append(agent)
    book(bridge, -5, 60)
    wait_for(lambda: agent.state() == "busy", what="busy over MQTT 5")


def test_missing_tls_files_keep_the_node_running(
        tmp_path: Path, clock: FakeClock, nodes: list[RunningNode],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="display.transport.mqtt_client")
    agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1",
                        url="mqtts://127.0.0.1:1", clock=clock,
                        mqtt_extra='ca_file = "missing-ca.pem"').start()
    nodes.append(agent)
    wait_for(lambda: agent.state() == "free", what="panel drawn without a broker")
    error = wait_for(lambda: agent.link("broker").get("error"), what="broker error")
    assert error.startswith("mqtt.ca_file: cannot read ") and "missing-ca.pem" in error
    assert any("mqtt.ca_file" in r.getMessage() for r in caplog.records)
    assert agent.config.mqtt is not None
    ok, line = probe(agent.config.mqtt, "agent-1")
    assert not ok and "mqtt.ca_file" in line


def test_agent_never_imports_lark_oapi(tmp_path: Path, broker: Broker) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(AGENT.format(name="agent-x", url=json.dumps(broker.url), mqtt_extra=""))
    script = textwrap.dedent(f"""
        import sys, threading
        from display.clock import SystemClock
        from display.config import load_config
        from display.devices.factory import make_device
        from display.mqtt_roles import MqttServices
        from display.node import Node
        from display.store import ScheduleStore
        config = load_config({str(config)!r})
        clock = SystemClock()
        store = ScheduleStore(config.node.state_dir / "schedule.db")
        node = Node(config, store, clock, make_device)
        services = MqttServices(config, node, store, clock)
        services.start()
        assert services.link.wait_connected(10)
        node.tick()
        services.close(); node.close(); store.close()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("lark_oapi", "display")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True)
    modules: list[Any] = eval(out.stdout.strip().splitlines()[-1])
    assert "display.intake.mqtt_agent" in modules
    assert not [m for m in modules if m.startswith("lark_oapi")]


def test_rooms_added_and_removed_at_runtime(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    bridge = bridge_node(tmp_path, broker, clock, nodes)
    agent = agent_node(tmp_path, broker, clock, nodes)
    start = clock.now()
    bridge.sink.accept(envelope(uid="b1", start=start, end=start + timedelta(hours=1),
                                rooms=("omm_b",), event_time=1))
    wait_for(lambda: agent.state() == "free", what="agent running")
    # The agent is given room B (``map`` + reload): it subscribes and gets B's retained schedule.
    with_b = agent.path.read_text() + '[[rooms]]\nopen_id = "omm_b"\nname = "Room B"\n'
    new = parse_config(with_b, agent.path)
    agent.node.reconfigure(new)
    agent.mqtt.reconfigure(new)
    wait_for(lambda: [b.uid for b in agent.store.bookings("omm_b")] == ["b1"],
             what="room B's schedule at the agent")
    # The bridge drops room B: its retained topics are deleted from the broker.
    only_a = parse_config(bridge.path.read_text().split('[[rooms]]\nopen_id = "omm_b"')[0],
                          bridge.path)
    bridge.node.reconfigure(only_a)
    bridge.mqtt.reconfigure(only_a)
    wait_for(lambda: bridge.store.meta("mqtt.published_rooms") == '["omm_a"]',
             what="record updated")
    assert bridge.mqtt.link.flush(5)  # the deletions reached the broker
    late = Recorder(broker.port)
    try:
        wait_for(lambda: late.get(f"{P}/rooms/omm_a/state"), what="room A stays")
        assert late.get(f"{P}/rooms/omm_b/state") is None
        assert late.get(f"{P}/rooms/omm_b/schedule") is None
    finally:
        late.close()
    # The agent keeps B's last schedule (logged), rather than guessing the room is free.
    assert [b.uid for b in agent.store.bookings("omm_b")] == ["b1"]
