"""Home Assistant MQTT discovery from the bridge, checked against HA's documented keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from display.publish.homeassistant import object_id
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.clock import FakeClock
from display.testing.mqtt_nodes import BRIDGE, RunningNode, fake_clock
from display.testing.waiting import wait_for

# Keys of HA's MQTT discovery schema (home-assistant.io/integrations/binary_sensor.mqtt/,
# sensor.mqtt/, mqtt/#discovery-messages) that we may use; anything else is a typo HA rejects.
COMMON = {"availability_topic", "payload_available", "payload_not_available", "device",
          "origin", "name", "unique_id", "state_topic", "value_template", "qos", "icon",
          "json_attributes_topic", "json_attributes_template", "device_class"}
BINARY_SENSOR = COMMON | {"payload_on", "payload_off"}
SENSOR = COMMON | {"options"}
DEVICE = {"identifiers", "name", "manufacturer", "model", "sw_version", "suggested_area"}
ORIGIN = {"name", "sw_version", "support_url"}

HA = "homeassistant"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def start_bridge(directory: Path, broker: Broker, clock: FakeClock,
                 template: str = BRIDGE) -> RunningNode:
    return RunningNode(directory, template, name="bridge-1", url=broker.url, clock=clock,
                       mqtt_extra="homeassistant = true").start()


def config_topics(open_id: str) -> tuple[str, str]:
    obj = object_id(open_id)
    return (f"{HA}/binary_sensor/{obj}/occupancy/config", f"{HA}/sensor/{obj}/state/config")


def test_discovery_payloads_follow_the_schema(tmp_path: Path, broker: Broker) -> None:
    bridge = start_bridge(tmp_path / "bridge", broker, fake_clock())
    wait_for(lambda: bridge.mqtt.homeassistant is not None
             and bridge.mqtt.homeassistant.announcements >= 1, what="announced")
    rec = Recorder(broker.port)  # subscribes after the announcement: sees retained copies
    try:
        occ_topic, state_topic = config_topics("omm_a")
        occ_raw, occ_retained = wait_for(lambda: rec.get(occ_topic), what="binary_sensor")
        st_raw, st_retained = wait_for(lambda: rec.get(state_topic), what="sensor")
        assert occ_retained and st_retained
        occ, st = json.loads(occ_raw), json.loads(st_raw)
        assert set(occ) <= BINARY_SENSOR and set(st) <= SENSOR
        assert set(occ["device"]) <= DEVICE and set(occ["origin"]) <= ORIGIN
        assert occ["device_class"] == "occupancy" and st["device_class"] == "enum"
        assert st["options"] == ["free", "soon", "busy", "ending"]
        assert occ["state_topic"] == st["json_attributes_topic"] == (
            "room-display/v1/rooms/omm_a/state")
        assert occ["availability_topic"] == "room-display/v1/nodes/bridge-1/availability"
        assert (occ["payload_available"], occ["payload_not_available"]) == ("online", "offline")
        assert occ["unique_id"] != st["unique_id"]
        assert occ["device"]["identifiers"] == st["device"]["identifiers"] == [
            object_id("omm_a")]
        assert occ["device"]["name"] == "Room A" and occ["origin"]["name"] == "room-display"
        # The entities' state topic exists, retained, and carries what the templates read.
        state = json.loads(wait_for(lambda: rec.get(occ["state_topic"]), what="state")[0])
        assert {"state", "current", "next", "since", "until", "stale"} <= set(state)
        assert "value_json.state" in occ["value_template"]
        # Home Assistant restarts and sends its birth message: configs are sent again.
        sent = rec.count(occ_topic)
        rec.publish(f"{HA}/status", "online")
        wait_for(lambda: rec.count(occ_topic) > sent, what="re-sent on HA birth")
    finally:
        rec.close()
        bridge.close()


def test_room_leaving_the_config_is_removed_from_home_assistant(
        tmp_path: Path, broker: Broker) -> None:
    clock = fake_clock()
    bridge = start_bridge(tmp_path / "bridge", broker, clock)
    rec = Recorder(broker.port)
    try:
        for topic in config_topics("omm_b"):
            wait_for(lambda t=topic: rec.get(t), what=topic)
    finally:
        rec.close()
    bridge.close()
    # Restart with room B gone from the config (same state directory, so the same record).
    one_room = BRIDGE.split("[[rooms]]\nopen_id = \"omm_b\"")[0]
    bridge = start_bridge(tmp_path / "bridge", broker, clock, one_room)
    try:
        wait_for(lambda: bridge.mqtt.homeassistant is not None
                 and bridge.mqtt.homeassistant.announcements >= 1, what="announced")
        wait_for(lambda: bridge.store.meta("homeassistant.announced") == '["omm_a"]',
                 what="record updated")
        wait_for(lambda: bridge.store.meta("mqtt.published_rooms") == '["omm_a"]',
                 what="bridge record updated")
        assert bridge.mqtt.link.flush(5)  # the deletions reached the broker
        late = Recorder(broker.port)
        try:
            wait_for(lambda: late.get(config_topics("omm_a")[0]), what="room A stays")
            wait_for(lambda: late.get("room-display/v1/rooms/omm_a/schedule"), what="A")
            # Retained copies of room B are gone: HA removes the device, agents see nothing.
            for topic in (*config_topics("omm_b"), "room-display/v1/rooms/omm_b/state",
                          "room-display/v1/rooms/omm_b/schedule"):
                assert late.get(topic) is None, topic
        finally:
            late.close()
    finally:
        bridge.close()


def test_birth_topic_is_its_own_setting(tmp_path: Path, broker: Broker) -> None:
    """HA's birth topic is set in HA itself, apart from the discovery prefix."""
    bridge = RunningNode(tmp_path / "bridge", BRIDGE, name="bridge-1", url=broker.url,
                         clock=fake_clock(),
                         mqtt_extra='homeassistant = true\ndiscovery_prefix = "ha-disc"\n'
                                    'birth_topic = "ha-birth/status"').start()
    rec = Recorder(broker.port)
    try:
        topic = f"ha-disc/binary_sensor/{object_id('omm_a')}/occupancy/config"
        wait_for(lambda: rec.get(topic), what="announced under the discovery prefix")
        sent = rec.count(topic)
        rec.publish("ha-disc/status", "online")  # the old derived topic: no longer listened to
        rec.publish("ha-birth/status", "online")
        wait_for(lambda: rec.count(topic) > sent, what="re-sent on HA birth")
        assert rec.count(topic) == sent + 1, "only the configured birth topic re-sends"
    finally:
        rec.close()
        bridge.close()


# Keys of HA's MQTT button (home-assistant/core, components/mqtt/button.py: command_topic
# required, payload_press default "PRESS", retain, on top of the common entity schema).
BUTTON = (COMMON - {"state_topic", "value_template", "json_attributes_topic",
                    "json_attributes_template"}) | {"command_topic", "payload_press", "retain"}


def test_check_in_and_end_meeting_buttons_publish_to_the_rooms_checkin_topic(
        tmp_path: Path, broker: Broker) -> None:
    bridge = start_bridge(tmp_path / "bridge", broker, fake_clock())
    wait_for(lambda: bridge.mqtt.homeassistant is not None
             and bridge.mqtt.homeassistant.announcements >= 1, what="announced")
    assert bridge.mqtt.link.flush(5)
    rec = Recorder(broker.port)  # subscribes after the announcement: sees retained copies
    try:
        obj = object_id("omm_a")
        docs = {}
        for entity in ("checkin", "end_meeting"):
            raw, retained = wait_for(lambda e=entity: rec.get(f"{HA}/button/{obj}/{e}/config"),
                                     what=entity)
            assert retained
            docs[entity] = json.loads(raw)
        for doc in docs.values():
            assert set(doc) <= BUTTON
            assert doc["command_topic"] == "room-display/v1/rooms/omm_a/checkin"
            assert doc["retain"] is False  # a retained press would check in a later meeting
        assert (docs["checkin"]["name"], docs["checkin"]["payload_press"]) == ("Check in", "in")
        assert (docs["end_meeting"]["name"], docs["end_meeting"]["payload_press"]) == (
            "End meeting", "end")
        assert docs["checkin"]["unique_id"] != docs["end_meeting"]["unique_id"]
    finally:
        rec.close()
        bridge.close()
