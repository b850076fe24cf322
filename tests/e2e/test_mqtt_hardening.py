"""MQTT as a trust boundary: what any client on the broker can publish must not take a panel
agent down, leave half a schedule, or (with the shipped ACL) reach a room topic at all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.clock import from_epoch_ms, to_epoch_ms
from display.config import parse_config
from display.devices.factory import make_device
from display.encode.mqtt_schedule import encode_schedule
from display.intake.mqtt_agent import AgentIntake
from display.model import EARLIEST, LATEST
from display.node import Node
from display.store import ScheduleStore
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.clock import FakeClock
from display.testing.waiting import wait_for
from display.transport.mqtt_client import MqttLink, MqttMessage
from display.transport.mqtt_schema import Topics

AGENT = """
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
[occupancy]
stale_after_minutes = 1440
[mqtt]
url = "{url}"
{extra}
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "{name}-led"
kind = "led"
url = "virtual:panels"
"""

TOPICS = Topics("room-display")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def schedule_doc(start: datetime, end: datetime, *, event: str = "bk_0",
                 version: int = 1) -> dict[str, Any]:
    return {"open_id": "omm_a", "name": "Room A", "version": version,
            "generated_at": datetime.now(UTC).isoformat(), "bridge": "bridge-1",
            "bookings": [{"event_id": event, "uid": event.split("_")[0], "original_time": 0,
                          "start": start.isoformat(), "end": end.isoformat(),
                          "organizer_open_id": None}]}


class AgentProcess:
    """``room-display run`` of a panel agent in a subprocess."""

    def __init__(self, directory: Path, url: str, name: str = "agent-1", extra: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "room-display.toml"
        self.config.write_text(AGENT.format(name=name, url=url, extra=extra))
        self.err = directory / "stderr.txt"
        self.proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c",
                                      str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        self.panel = directory / "panels" / f"{name}-led.json"

    def log(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def state(self) -> str | None:
        assert self.proc.poll() is None, self.log()
        try:
            value = json.loads(self.panel.read_text()).get("state")
        except (OSError, ValueError):
            return None
        return str(value) if value is not None else None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def test_a_retained_year_9999_schedule_does_not_kill_an_agent(broker: Broker,
                                                              tmp_path: Path) -> None:
    now = datetime.now(UTC)
    bad = schedule_doc(now - timedelta(minutes=5),
                       datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    publisher = Recorder(broker.port, "nothing/#")
    try:
        publisher.publish(TOPICS.schedule("omm_a"), json.dumps(bad), retain=True)
        agent = AgentProcess(tmp_path / "agent", broker.url)
        try:
            wait_for(lambda: "schedule rejected" in agent.log(), timeout=60,
                     what="the agent rejecting the retained schedule")
            assert "bookings[0].end: 9999-12-31" in agent.log()
            # The panel is drawn after the rejection is logged: wait for its first state.
            wait_for(lambda: agent.state() is not None, timeout=30, what="the panel's first state")
            assert agent.state() == "free", "nothing of the bad schedule was applied"
            # Alive and still listening: the next good schedule is applied.
            good = schedule_doc(now - timedelta(minutes=5), now + timedelta(hours=1), version=2)
            publisher.publish(TOPICS.schedule("omm_a"), json.dumps(good), retain=True)
            wait_for(lambda: agent.state() == "busy", timeout=30, what="busy after good one")
            assert agent.stop() == 0, agent.log()
            assert "Traceback" not in agent.log()
        finally:
            agent.stop()
        # A restart with the bad message gone from the broker but the good one stored: fine.
    finally:
        publisher.close()


# -- fuzz: the agent's schedule handler, from raw payload bytes to the store -----------------------

_NOW = datetime(2030, 6, 1, 2, 0, tzinfo=UTC)
_GOOD = schedule_doc(_NOW - timedelta(minutes=10), _NOW + timedelta(minutes=50), event="keep_0")

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00+00:00",
                       "2030-06-01T02:00:00", "2030-06-01T03:00:00+00:00", "omm_a", "",
                       "x/+#"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)


@st.composite
def mutated_schedules(draw: st.DrawFn) -> bytes:
    """A valid schedule with one or more fields replaced, or raw bytes now and then."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    doc = json.loads(json.dumps(_GOOD))
    for _ in range(draw(st.integers(0, 3))):
        target = doc if draw(st.booleans()) else (
            doc["bookings"][0] if isinstance(doc.get("bookings"), list) and doc["bookings"]
            and isinstance(doc["bookings"][0], dict) else doc)
        key = draw(st.sampled_from([*sorted(target), "extra"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(_json)
    if draw(st.booleans()) and isinstance(doc.get("bookings"), list):
        doc["bookings"].append(draw(_json))
    if draw(st.booleans()) and isinstance(doc.get("bookings"), list) and doc["bookings"] \
            and isinstance(doc["bookings"][0], dict):
        # Any earlier start or later end, up to years 1 and 9999: the date bound's edges.
        naive = _NOW.replace(tzinfo=None)
        if draw(st.booleans()):
            doc["bookings"][0]["start"] = draw(st.datetimes(
                max_value=naive, timezones=st.just(UTC))).isoformat()
        else:
            doc["bookings"][0]["end"] = draw(st.datetimes(
                min_value=naive + timedelta(hours=1), timezones=st.just(UTC))).isoformat()
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def fuzz_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[AgentIntake, Node, ScheduleStore]]:
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "room-display.toml"
    text = AGENT.format(name="fuzz", url="mqtt://127.0.0.1:1", extra="")
    path.write_text(text)
    config = parse_config(text, path)
    assert config.mqtt is not None
    store = ScheduleStore(directory / "schedule.db", durable=False)
    clock = FakeClock(_NOW)
    node = Node(config, store, clock, make_device)
    link = MqttLink(config.mqtt, "fuzz")  # never started: the handler only needs its topics
    intake = AgentIntake(link, node, store, clock, config)
    intake.reconfigure(config)  # drive omm_a (subscriptions are recorded; never connected)
    yield intake, node, store
    node.close()
    store.close()


def _stored(store: ScheduleStore) -> list[tuple[str, str, str]]:
    return [(b.event_id, b.start.isoformat(), b.end.isoformat()) for b in store.bookings("omm_a")]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=mutated_schedules())
def test_fuzzed_schedules_are_applied_whole_or_not_at_all(
        fuzz_agent: tuple[AgentIntake, Node, ScheduleStore], payload: bytes) -> None:
    intake, node, store = fuzz_agent
    good = json.dumps(_GOOD).encode()
    topic = TOPICS.schedule("omm_a")
    intake._on_schedule(MqttMessage(topic, good, True))
    before_rejected, expected_before = intake.rejected, _stored(store)
    assert expected_before == [("keep_0", "2030-06-01T01:50:00+00:00",
                                "2030-06-01T02:50:00+00:00")], "the good schedule applies"
    intake._on_schedule(MqttMessage(topic, payload, True))
    after = _stored(store)
    if intake.rejected > before_rejected:
        assert after == expected_before, "a rejected schedule changes nothing"
    else:
        # Accepted (or an empty withdrawal): the store holds exactly the payload's bookings.
        if payload:
            doc = json.loads(payload)

            def stored_time(raw: str) -> str:  # the store keeps milliseconds
                return from_epoch_ms(to_epoch_ms(datetime.fromisoformat(raw))).isoformat()

            wanted = sorted((b["event_id"], stored_time(b["start"]), stored_time(b["end"]))
                            for b in doc["bookings"])
            assert sorted(after) == wanted
            # ... and only times every node can compute with (the one date bound).
            assert all(EARLIEST.isoformat() <= t <= LATEST.isoformat()
                       for _, start, end in after for t in (start, end))
    node.notify(["omm_a"])
    node.tick()  # the node's own pass over what is stored must not raise
    assert node.views()["omm_a"].occupancy is not None


def test_encode_decode_round_trip_stays_inside_the_bound() -> None:
    from display.model import Booking
    booking = Booking("a_0", "a", 0, _NOW, _NOW + timedelta(hours=1))
    payload = encode_schedule("omm_a", "A", [booking], version=1, generated_at=_NOW,
                              bridge="b")
    assert b"2030-06-01" in payload


# -- the trust boundary: the shipped ACL on a real Mosquitto ---------------------------------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    from display.cli.mqtt_acl import Site, write_site
    site_dir = tmp_path / "site"
    write_site(Site(bridges=("bridge-1",), agents=("agent-1", "agent-2")), site_dir)
    b = Broker(tmp_path / "broker", acl_file=site_dir / "room-display.acl",
               password_file=site_dir / "passwd")
    b.start()
    yield b, site_dir
    b.stop()


def _password(site_dir: Path, node: str) -> str:
    return (site_dir / "credentials" / node / "mqtt-password").read_text().strip()


def test_the_acl_lets_only_the_bridge_write_rooms_and_each_node_its_own_availability(
        acl_broker: tuple[Broker, Path], tmp_path: Path) -> None:
    broker, site = acl_broker
    now = datetime.now(UTC)
    creds = f'username = "agent-1"\npassword = "file:{site}/credentials/agent-1/mqtt-password"'
    # Another agent's account reads what every agent reads: schedules, the bridge's availability.
    watcher = Recorder(broker.port, "room-display/#", username="agent-2",
                       password=_password(site, "agent-2"))
    rogue = Recorder(broker.port, "nothing", username="agent-1",
                     password=_password(site, "agent-1"))
    bridge = Recorder(broker.port, "room-display/v1/nodes/+/availability", username="bridge-1",
                      password=_password(site, "bridge-1"))
    agent = AgentProcess(tmp_path / "agent", broker.url, extra=creds)
    try:
        wait_for(lambda: (bridge.get(TOPICS.availability("agent-1")) or (b"",))[0] == b"online",
                 timeout=60, what="the agent's own online, allowed by the ACL")
        wait_for(lambda: agent.state() == "free", timeout=30, what="agent free")
        # Another node's credentials cannot make a room look busy ...
        busy = schedule_doc(now - timedelta(minutes=5), now + timedelta(hours=1))
        rogue.publish(TOPICS.schedule("omm_a"), json.dumps(busy), retain=True)
        # ... nor say the bridge is offline.
        rogue.publish(TOPICS.availability("bridge-1"), "offline", retain=True)
        # The bridge's own messages go through; they also prove the rogue ones were dropped
        # (same broker, published after them).
        bridge.publish(TOPICS.availability("bridge-1"), "online", retain=True)
        good = schedule_doc(now - timedelta(minutes=5), now + timedelta(hours=1), event="ok_0")
        bridge.publish(TOPICS.schedule("omm_a"), json.dumps(good), retain=True)
        wait_for(lambda: agent.state() == "busy", timeout=30, what="bridge's schedule applied")
        assert watcher.count(TOPICS.schedule("omm_a")) == 1, "the rogue schedule never arrived"
        assert watcher.count(TOPICS.availability("bridge-1")) == 1
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "display", "status", "--json", "-c", str(agent.config)],
            capture_output=True, text=True, timeout=60).stdout)
        assert status["rooms"][0]["current"]["event_id"] == "ok_0"
        assert agent.stop() == 0
    finally:
        agent.stop()
        for client in (watcher, rogue, bridge):
            client.close()


def test_anonymous_clients_are_refused_by_the_shipped_setup(
        acl_broker: tuple[Broker, Path]) -> None:
    from display.config import MqttConfig
    from display.transport.mqtt_client import probe
    broker, _site = acl_broker
    ok, line = probe(MqttConfig(url=(broker.url,)), "nobody", 10)
    assert not ok and ("not authorised" in line or "bad user name or password" in line), line


def test_a_node_says_online_again_when_someone_overwrites_it(broker: Broker) -> None:
    from display.config import MqttConfig
    link = MqttLink(MqttConfig(url=(broker.url,)), "bridge-1")
    watcher = Recorder(broker.port, TOPICS.availability("bridge-1"))
    link.start()
    try:
        wait_for(lambda: (watcher.get(TOPICS.availability("bridge-1")) or (b"",))[0]
                 == b"online", timeout=30, what="bridge online")
        watcher.publish(TOPICS.availability("bridge-1"), "offline", retain=True)
        wait_for(lambda: link.reasserted == 1, timeout=30, what="re-assert")
        wait_for(lambda: (watcher.get(TOPICS.availability("bridge-1")) or (b"",))[0]
                 == b"online" and watcher.count(TOPICS.availability("bridge-1")) >= 3,
                 timeout=30, what="online again")
        late = Recorder(broker.port, TOPICS.availability("bridge-1"))
        try:  # what a newly started agent finds retained
            wait_for(lambda: late.get(TOPICS.availability("bridge-1")) == (b"online", True),
                     timeout=30, what="retained online")
        finally:
            late.close()
    finally:
        link.close()
        watcher.close()
    assert link.reasserted == 1, "its own clean offline at close is not fought"


def test_an_agent_starts_without_a_warning_per_device(broker: Broker, tmp_path: Path) -> None:
    watcher = Recorder(broker.port, "lights/#")
    directory = tmp_path / "agent"
    agent = AgentProcess(directory, broker.url)
    agent.stop()
    text = agent.config.read_text() + ('[[rooms.devices]]\nid = "a-lights"\nkind = "led"\n'
                                       'url = "mqtt:lights/a"\n')
    agent.config.write_text(text)
    agent.proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c",
                                   str(agent.config)], stdout=subprocess.DEVNULL,
                                  stderr=agent.err.open("w"))
    try:
        wait_for(lambda: watcher.get("lights/a"), timeout=60, what="the mqtt device's state")
        assert agent.stop() == 0
    finally:
        agent.stop()
        watcher.close()
    assert " WARNING " not in agent.log(), agent.log()
