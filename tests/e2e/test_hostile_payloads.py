"""A hostile node on the broker: whatever it publishes as its status, availability or a schedule,
the bridge and the agents stay up, keep a bounded amount and say what was wrong in one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from display.errors import EventError
from display.jsonbound import depth, loads
from display.publish.fleet import MAX_ITEMS, MAX_TEXT, shape_status
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.mqtt_nodes import AGENT, BRIDGE, RunningNode, fake_clock
from display.testing.waiting import wait_for

NODES = "room-display/v1/nodes"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def nested(levels: int, inner: str = "{}") -> str:
    """``{"a":{"a":…}}`` ``levels`` deep, the way a hostile status nests a link."""
    return '{"a":' * levels + inner + "}" * levels


# -- the bounded loader ----------------------------------------------------------------------------


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert depth(b'{"a": [1, {"b": "]]]{{{["}], "c": "\\"[["}') == 3
    assert depth(b"[]") == 1 and depth(b'"[[["') == 0 and depth(b"") == 0


def test_deep_and_large_json_are_one_line_errors_before_decoding() -> None:
    with pytest.raises(EventError) as err:
        loads("[" * 200_000 + "]" * 200_000, what="payload", max_bytes=1 << 20)
    assert str(err.value) == "payload: JSON nested deeper than 32 levels"
    with pytest.raises(EventError) as err:
        loads(b"x" * 65, what="status", max_bytes=64)
    assert str(err.value) == "status: 65 bytes, more than the 64 allowed"
    with pytest.raises(EventError) as err:
        loads(b'{"a": \xff}', what="status", max_bytes=64)
    assert str(err.value).startswith("status: not JSON (") and "\n" not in str(err.value)
    # Brackets inside strings are text, not nesting: a real payload with many of them loads.
    text = json.dumps({"error": "[" * 100, "list": [[1], [2]] * 50})
    assert loads(text, what="x", max_bytes=1 << 16)["error"] == "[" * 100


# -- a node status, reduced to its documented shape ------------------------------------------------


def test_a_status_is_reduced_to_its_documented_shape() -> None:
    shaped, dropped = shape_status({
        "name": "evil", "role": ["agent"], "version": "9" * 10_000, "at": 5,
        "clock_synced": "yes", "extra": {"kept": False},
        "links": {"broker": {"up": True, "since": None, "error": None},
                  "bad": {"up": "maybe"}, "deep": json.loads(nested(20))},
        "rooms": ["omm_a", 7, None],
        "devices": [{"id": "d1", "online": True, "kind": "led", "room": "omm_a",
                     "last_update": None, "error": None},
                    None, "x", {"id": "d2", "online": 1}] + [
                       {"id": f"n{i}", "online": False} for i in range(MAX_ITEMS + 10)],
    })
    assert shaped["role"] is None and shaped["at"] is None and shaped["clock_synced"] is None
    assert shaped["version"] == "9" * MAX_TEXT and "extra" not in shaped
    assert shaped["links"] == {"broker": {"up": True, "since": None, "error": None}}
    assert shaped["rooms"] == ["omm_a"]
    assert shaped["devices"][0] == {"id": "d1", "online": True, "kind": "led", "room": "omm_a",
                                    "last_update": None, "error": None}
    assert len(shaped["devices"]) == MAX_ITEMS - 3  # the three bad ones dropped, the rest cut
    assert {"role", "at", "clock_synced", "links.bad", "links.deep", "rooms",
            "devices"} <= set(dropped)
    # What is kept is flat enough for anything that walks it.
    assert depth(json.dumps(shaped).encode()) <= 4


def test_hostile_statuses_leave_the_bridge_up_and_its_page_in_shape(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    hostile = Recorder(broker.port, "nothing/#")
    # Retained before the bridge starts: what crash-looped it at every start.
    hostile.publish(f"{NODES}/deep/status", nested(600), retain=True)
    hostile.publish(f"{NODES}/shallow/status",
                    json.dumps({"role": 5, "links": {"x": 1}, "devices": [None, "d"],
                                "rooms": "all", "at": {"t": 1}}), retain=True)
    hostile.publish(f"{NODES}/huge/status", b'{"name":"' + b"x" * 70_000 + b'"}', retain=True)
    hostile.publish(f"{NODES}/huge/availability", b"online" + b" " * 100_000, retain=True)
    bridge = RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=broker.url,
                         clock=fake_clock()).start()
    try:
        fleet = bridge.mqtt.fleet
        assert fleet is not None
        wait_for(lambda: {"shallow", "huge"} <= set(fleet.fleet()), 15, "the hostile nodes seen")
        wait_for(lambda: "node deep: status" in caplog.text
                 and "node shallow: status" in caplog.text
                 and "node huge: status" in caplog.text, 15, "their warnings")
        doc = bridge.node.status()  # walked whole by local_times: the crash of before
        seen: dict[str, Any] = doc["node"]["fleet"]
        assert "deep" not in seen or seen["deep"]["links"] == {}
        assert seen["shallow"]["role"] is None and seen["shallow"]["links"] == {}
        assert seen["shallow"]["devices"] == [] and seen["shallow"]["rooms"] == []
        assert seen["huge"]["online"] is False  # not "online": a padded payload is not kept
        assert len(json.dumps(seen)) < 4096
        # Again and again: one line per node and cause, not one per message.
        for _ in range(5):
            hostile.publish(f"{NODES}/deep/status", nested(600), retain=True)
            hostile.publish(f"{NODES}/shallow/status", '{"links": []}', retain=True)
        hostile.publish(f"{NODES}/marker/status", "[]", retain=True)
        wait_for(lambda: "node marker" in caplog.text, 15, "the last message handled")
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("node deep:" in line for line in lines) == 1, lines
        assert sum("node shallow:" in line for line in lines) == 1, lines
        assert all("\n" not in line for line in lines)
        assert not any(r.exc_info for r in caplog.records)
    finally:
        bridge.close()
        hostile.close()


def test_an_agent_refuses_a_200000_deep_schedule_in_one_line(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    payload = "[" * 120_000 + "]" * 120_000  # 240 KB: under the 256 KiB size cap
    hostile = Recorder(broker.port, "nothing/#")
    hostile.publish("room-display/v1/rooms/omm_a/schedule", payload, retain=True)
    agent = RunningNode(tmp_path / "agent", AGENT, name="agent-1", url=broker.url,
                        clock=fake_clock()).start()
    try:
        assert agent.mqtt.agent is not None
        intake = agent.mqtt.agent
        wait_for(lambda: intake.rejected == 1, 15, "the schedule rejected")
        lines = [r.getMessage() for r in caplog.records if "omm_a" in r.getMessage()]
        assert lines == ["room omm_a: schedule rejected, nothing applied: payload: JSON nested "
                         "deeper than 8 levels"]
        assert not any(r.exc_info for r in caplog.records)
    finally:
        agent.close()
        hostile.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_an_oversized_message_is_never_queued_and_with_mqtt5_never_sent(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from display.ratelimit import RateLimitedLog
    from display.transport import mqtt_client

    monkeypatch.setattr(mqtt_client, "noisy", RateLimitedLog(mqtt_client.log, 600.0))
    caplog.set_level(logging.WARNING)
    hostile = Recorder(broker.port, "nothing/#")
    hostile.publish(f"{NODES}/evil/status", b"x" * (2 * 1024 * 1024), retain=True)
    hostile.publish(f"{NODES}/evil/availability", b"y" * (2 * 1024 * 1024), retain=True)
    bridge = RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=broker.url,
                         clock=fake_clock(), mqtt_extra=f'protocol = "{protocol}"').start()
    try:
        hostile.publish(f"{NODES}/marker/status", "[]", retain=True)
        hostile.publish(f"{NODES}/marker/availability", "online", retain=True)
        fleet = bridge.mqtt.fleet
        assert fleet is not None
        wait_for(lambda: "node marker" in caplog.text
                 and fleet.fleet().get("marker", {}).get("online"), 15,
                 "later messages on both topics handled")
        # Subscribed now: live messages come after every retained one of their subscription.
        hostile.publish(f"{NODES}/late/status", "[]")
        hostile.publish(f"{NODES}/late/availability", "online")
        wait_for(lambda: "node late" in caplog.text
                 and fleet.fleet().get("late", {}).get("online"), 15, "live messages handled")
        assert "evil" not in fleet.fleet()
        assert "node evil" not in caplog.text  # never reached the handler, never parsed
        dropped = [r.getMessage() for r in caplog.records if "dropped unread" in r.getMessage()]
        if protocol == "5":
            assert dropped == []  # the broker was told the largest packet we take
        else:
            assert len(dropped) == 2 and "2097152 bytes" in dropped[0]
    finally:
        bridge.close()
        hostile.close()


def test_the_page_lists_a_node_whatever_its_status_holds(
        broker: Broker, tmp_path: Path) -> None:
    from display.config import Secret, WebConfig
    from display.testing.browser import chromium
    from display.web.server import WebServer

    hostile = Recorder(broker.port, "nothing/#")
    hostile.publish(f"{NODES}/odd/status", json.dumps({
        "role": {"x": 1}, "version": [1], "at": 7, "clock_synced": "no", "rooms": {"r": 1},
        "links": {"a": None, "b": {"up": "yes"}}, "devices": [None, 5, {"id": {}}, "d"]}),
        retain=True)
    hostile.publish(f"{NODES}/odd/availability", "online", retain=True)
    bridge = RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=broker.url,
                         clock=fake_clock()).start()
    web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), bridge.node)
    assert web.start()
    try:
        fleet = bridge.mqtt.fleet
        assert fleet is not None
        wait_for(lambda: "odd" in fleet.fleet(), 15, "the odd node seen")
        with chromium(1280, 900) as driver:
            driver.get(f"http://{web.address}/")

            def nodes_text() -> str:
                text: str = driver.find_element("id", "nodes").text
                return text

            wait_for(lambda: "odd" in nodes_text() and "bridge-1" in nodes_text(), 15,
                     "both nodes in the Nodes section")
            errors = [e for e in driver.get_log("browser")
                      if e.get("level") == "SEVERE" and e.get("source") != "network"]
            assert errors == []  # no TypeError from the page's script
    finally:
        web.close()
        bridge.close()
        hostile.close()
