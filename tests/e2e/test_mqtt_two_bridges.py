"""Two bridges and an agent on one real Mosquitto: the bridges share what they commit, one of them
publishes the rooms, and the other takes over when it dies (docs/MQTT.md, "Several bridges")."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from display.encode.mqtt_schedule import decode_schedule
from display.status import render_text
from display.testing.broker import Broker, Recorder
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode
from display.testing.waiting import wait_for

P = "room-display/v1"


def start(tmp: Path, b: Broker, clock: FakeClock, nodes: list[RunningNode], name: str,
          template: str = BRIDGE) -> RunningNode:
    n = RunningNode(tmp / name, template, name=name, url=b.url, clock=clock).start()
    nodes.append(n)
    return n


def accept(bridge: RunningNode, uid: str, *, kind: str = "created", event_time: int = 1,
           room: str = "omm_a") -> None:
    begin = bridge.clock.now() + timedelta(minutes=30)
    bridge.sink.accept(envelope(kind, uid=uid, start=begin, end=begin + timedelta(minutes=30),
                                rooms=(room,), event_time=event_time))


def uids(node: RunningNode, room: str = "omm_a") -> set[str]:
    return {b.uid for b in node.store.bookings(room)}


def publisher(n: RunningNode) -> str | None:
    assert n.mqtt.peers is not None
    return n.mqtt.peers.status()["publisher"]  # type: ignore[no-any-return]


def agreed(*bridges: RunningNode) -> str | None:
    """The publisher every bridge names, once they know each other and agree."""
    names = {publisher(n) for n in bridges}
    known = all(len(n.mqtt.peers.bridges()) == len(bridges) for n in bridges)  # type: ignore[union-attr]
    return names.pop() if known and len(names) == 1 and None not in names else None


def kill(n: RunningNode) -> None:
    n.kill()
    n.killed = True  # type: ignore[attr-defined]


def test_two_bridges_share_commits_and_one_takes_over_when_the_other_dies(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    rec = Recorder(broker.port)
    try:
        first = start(tmp_path, broker, clock, nodes, "bridge-a")
        second = start(tmp_path, broker, clock, nodes, "bridge-b")
        agent = start(tmp_path, broker, clock, nodes, "agent-1", AGENT)
        # Both agree on one publisher (from the availability and the newest schedule).
        chosen = wait_for(lambda: agreed(first, second), timeout=10, what="one publisher")
        a, b = (first, second) if chosen == "bridge-a" else (second, first)
        assert a.mqtt.peers.is_publisher() and not b.mqtt.peers.is_publisher()  # type: ignore[union-attr]
        name_a, name_b = a.config.node.name, b.config.node.name

        # Feishu hands each event to one bridge: the same room through both, another room too.
        accept(a, "bk1")
        accept(b, "bk2")
        accept(b, "bk3", room="omm_b")
        wait_for(lambda: uids(agent) == {"bk1", "bk2"}, timeout=10,
                 what="the agent shows the bookings of both bridges")
        for n in (a, b):
            wait_for(lambda n=n: uids(n) == {"bk1", "bk2"} and uids(n, "omm_b") == {"bk3"},
                     timeout=10, what=f"{n.config.node.name}'s store converged")
        schedule = wait_for(lambda: (s := decode_schedule(
            rec.get(f"{P}/rooms/omm_b/schedule")[0], "omm_b")).bookings and s,  # type: ignore[index]
            timeout=10, what="room B's schedule")
        assert schedule.bridge == name_a and [x.uid for x in schedule.bookings] == ["bk3"]
        assert schedule.bridges == ("bridge-a", "bridge-b")
        before = decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0], "omm_a")  # type: ignore[index]
        # The quiet bridge wrote no room topic: every retained schedule is the publisher's.
        assert before.bridge == name_a
        lag = b.mqtt.peers.status()["peers"][name_a]  # type: ignore[union-attr]
        wait_for(lambda: b.mqtt.peers.status()["peers"][name_a]["behind"] == 0,  # type: ignore[union-attr]
                 timeout=5, what="no lag shown")
        assert lag["online"] is True

        # The publisher dies without a word: its last will says offline, the other takes over.
        kill(a)
        wait_for(lambda: b.mqtt.peers.is_publisher(), timeout=15,  # type: ignore[union-attr]
                 what="the other bridge publishes")
        wait_for(lambda: agent.mqtt.agent._availability.get(name_a) == "offline",  # type: ignore[union-attr]
                 timeout=10, what="the agent saw the publisher go")
        assert agent.link("bridge")["up"] is True, agent.link("bridge")
        # A booking only the dead bridge received is cancelled through the live one.
        accept(b, "bk1", kind="deleted", event_time=2)
        wait_for(lambda: uids(agent) == {"bk2"}, timeout=10, what="bk1 cancelled on the agent")
        after = decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0], "omm_a")  # type: ignore[index]
        assert after.bridge == name_b and after.version > before.version
        # The takeover's republish and the cancellation are two versions: the agent and the
        # recorder each hear the newest in their own time.
        wait_for(lambda: agent.mqtt.agent.status()["omm_a"]["version"]  # type: ignore[union-attr]
                 == decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0],  # type: ignore[index]
                                    "omm_a").version,
                 timeout=10, what="the agent on the newest version")
        assert agent.link("bridge")["up"] is True and not agent.node.views()["omm_a"].stale
        doc = b.node.status()
        assert doc["node"]["replication"]["publisher"] == name_b
        assert doc["node"]["replication"]["peers"][name_a]["online"] is False
        text = render_text(doc)
        assert f"  publisher: {name_b} (this bridge); sent events up to #3" in text, text
        assert f"  peer {name_a}: OFFLINE, applied #1 of #1 (0 behind)" in text, text

        # The old publisher comes back: it catches up on what the other received meanwhile, and
        # stays quiet (the other published the newest schedule and is online).
        accept(b, "bk4")
        a2 = start(tmp_path, broker, clock, nodes, name_a)
        wait_for(lambda: uids(a2) == {"bk2", "bk4"}, timeout=10, what="the old publisher caught up")
        wait_for(lambda: agreed(a2, b) == name_b, timeout=10, what="it stays quiet")
        assert b.mqtt.peers.is_publisher() and not a2.mqtt.peers.is_publisher()  # type: ignore[union-attr]
        wait_for(lambda: uids(agent) == {"bk2", "bk4"}, timeout=10, what="agent has bk4")
    finally:
        rec.close()


def test_an_event_acknowledged_just_before_a_kill_reaches_the_peer_when_its_bridge_returns(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    a = start(tmp_path, broker, clock, nodes, "bridge-a")
    b = start(tmp_path, broker, clock, nodes, "bridge-b")
    wait_for(lambda: agreed(a, b), timeout=10, what="bridges see each other")
    kill(a)
    # bridge-a's Feishu intake acknowledges one more event while its node process is gone (the
    # intake child commits on its own): it is in bridge-a's outbox, and nowhere else.
    intake = RunningNode(tmp_path / "bridge-a", BRIDGE, name="bridge-a", url=broker.url,
                         clock=clock)  # not started: no broker link
    accept(intake, "late")
    for store in (intake.intake_store, intake.store):
        store.close()
    assert "late" not in uids(b)
    a2 = start(tmp_path, broker, clock, nodes, "bridge-a")
    wait_for(lambda: "late" in uids(b), timeout=10, what="bridge-b got the late event")
    status = a2.mqtt.peers.status()  # type: ignore[union-attr]
    assert status["sequence"] == 1 and status["peers"]["bridge-b"]["online"] is True
    wait_for(lambda: a2.mqtt.peers.status()["peers"]["bridge-b"]["applied_ours"] == 1,  # type: ignore[union-attr]
             timeout=5, what="bridge-b says it applied seq 1")


def test_the_acl_lets_each_bridge_write_only_its_own_replication_topics(tmp_path: Path) -> None:
    """``scripts/mqtt-credentials --bridge bridge-a --bridge bridge-b``: a bridge reads every
    bridge's events and writes only its own; an agent can inject none."""
    from display.cli.mqtt_acl import Site, write_site

    site = tmp_path / "site"
    write_site(Site(bridges=("bridge-a", "bridge-b"), agents=("agent-1",)), site)

    def login(name: str, topic_filter: str = "nothing") -> Recorder:
        password = (site / "credentials" / name / "mqtt-password").read_text().strip()
        return Recorder(acl.port, topic_filter, username=name, password=password)

    acl = Broker(tmp_path / "broker", acl_file=site / "room-display.acl",
                 password_file=site / "passwd")
    acl.start()
    clients = []
    try:
        clients = [login("bridge-a", f"{P}/bridges/#"), login("agent-1", f"{P}/bridges/#"),
                   login("bridge-b")]
        watcher, agent, other = clients
        topic = f"{P}/bridges/bridge-b/events"
        agent.publish(topic, '{"forged": true}')
        watcher.publish(topic, '{"forged": true}')  # bridge-a cannot speak for bridge-b
        other.publish(topic, '{"origin": "bridge-b"}')
        wait_for(lambda: watcher.get(topic), timeout=10, what="bridge-b's own event")
        assert watcher.get(topic) == (b'{"origin": "bridge-b"}', False)
        assert watcher.count(topic) == 1, "a forged event arrived"
        assert agent.get(topic) is None, "an agent reads no bridge's events"
    finally:
        for client in clients:
            client.close()
        acl.stop()


def test_a_peers_events_are_checked_like_feishus(tmp_path: Path, broker: Broker,
                                                clock: FakeClock,
                                                nodes: list[RunningNode]) -> None:
    """A bad replicated event is one log line and applied nowhere; a good one is applied with
    the store's own rules, and a second copy of it is a duplicate."""
    from display.intake.envelope import parse_envelope
    from display.outbox import event_to_json

    b = start(tmp_path, broker, clock, nodes, "bridge-b")
    peers = b.mqtt.peers
    assert peers is not None
    # Settled: its subscriptions are in place (the echo of its own progress came back).
    wait_for(lambda: publisher(b) == "bridge-b", timeout=10, what="bridge-b publishing alone")
    sender = Recorder(broker.port, "nothing")
    try:
        topic = f"{P}/bridges/bridge-z/events"
        begin = clock.now() + timedelta(minutes=30)
        event = parse_envelope(envelope(uid="z1", start=begin, end=begin + timedelta(hours=1)))
        good = {"origin": "bridge-z", "seq": 1, "event": event_to_json(event)}
        for bad in (b"not json", b'{"origin": "bridge-y", "seq": 1, "event": {}}',
                    json.dumps({**good, "seq": -1}).encode(),
                    json.dumps({**good, "event": {**good["event"], "start": "soon"}}).encode()):
            sender.publish(topic, bad)
        sender.publish(topic, json.dumps(good))
        sender.publish(topic, json.dumps(good))  # a replay: a duplicate, nothing changes
        wait_for(lambda: uids(b) == {"z1"}, timeout=10, what="the good event applied")
        wait_for(lambda: peers.applied_events == 2, timeout=10, what="the replay handled")
        assert peers.rejected == 4
        assert uids(b) == {"z1"} and peers.status()["sequence"] == 0  # never sent on
    finally:
        sender.close()


def test_the_web_page_shows_who_publishes_and_each_peers_lag(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    from display.config import Secret, WebConfig
    from display.testing.browser import chromium
    from display.web.server import WebServer

    a = start(tmp_path, broker, clock, nodes, "bridge-a")
    b = start(tmp_path, broker, clock, nodes, "bridge-b")
    chosen = wait_for(lambda: agreed(a, b), timeout=10, what="one publisher")
    quiet = b if chosen == "bridge-a" else a
    accept(a if quiet is b else b, "bk1")
    wait_for(lambda: uids(quiet) == {"bk1"}, timeout=10, what="replicated")
    web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), quiet.node)
    assert web.start()
    try:
        with chromium() as browser:
            browser.get(f"http://{web.address}/")

            def item(name: str) -> str:
                from selenium.webdriver.common.by import By
                for li in browser.find_elements(By.CSS_SELECTOR, "#nodes > li"):
                    if li.find_element(By.TAG_NAME, "strong").text == name:
                        return str(li.text)
                return ""

            text = wait_for(lambda: "events behind: 0 (1/1)" in item(chosen) and item(chosen),
                            timeout=20, what="the publisher's lag on the page")
            assert "★ publishes the rooms" in text
            assert "★" not in item(quiet.config.node.name)
    finally:
        web.close()
