"""mqtt:TOPIC devices against a real Mosquitto: json, wled and the e-ink image payload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from display.config import Config, DeviceConfig, parse_config
from display.devices.mqtt_devices import DISCONNECTED, MqttDevice
from display.encode.mqtt_image import FLAG_STALE, decode_image, encode_image
from display.encode.planes import planes_bytes
from display.encode.wled import wled_state
from display.model import Occupancy, RoomView, State
from display.outputs import Effect, LedOutput, SignImage
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.clock import FakeClock
from display.testing.mqtt_nodes import START
from display.testing.waiting import wait_for
from display.transport.mqtt_client import MqttLink

CONFIG = """
[node]
name = "dev-node"
timezone = "Asia/Shanghai"
state_dir = "state"
[mqtt]
url = "{url}"
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "state-json"
kind = "led"
url = "mqtt:lights/room-a"
[[rooms.devices]]
id = "wled"
kind = "led"
url = "mqtt:wled/door-a"
protocol = "wled"
[[rooms.devices]]
id = "sign"
kind = "eink"
url = "mqtt:signs/room-a"
protocol = "panel"
size = "250x122"
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def view(state: State = State.BUSY, stale: bool = False) -> RoomView:
    occ = Occupancy(at=START, state=state, since=START - timedelta(minutes=5),
                    until=START + timedelta(minutes=45), current=None, next=())
    return RoomView("omm_a", "Room A", occ, stale, START, "Asia/Shanghai")


def led(v: RoomView) -> LedOutput:
    colour = (255, 0, 0) if v.occupancy.state.occupied else (0, 192, 0)
    return LedOutput(colour, Effect.BLINK if v.stale else Effect.STEADY, 128)


def sign(v: RoomView) -> SignImage:
    from PIL import Image, ImageDraw

    black = Image.new("1", (250, 122), 1)
    ImageDraw.Draw(black).rectangle((0, 0, 9, 0), fill=0)  # ten ink pixels in row 0
    red = Image.new("1", (250, 122), 1)
    red.putpixel((249, 121), 0)  # the last pixel: row padding must stay 0 next to it
    return SignImage(black, red)


@pytest.fixture
def setup(tmp_path: Path, broker: Broker) -> Iterator[tuple[Config, MqttLink, dict[str, Any]]]:
    config = parse_config(CONFIG.format(url=broker.url), tmp_path / "c.toml")
    assert config.mqtt is not None
    link = MqttLink(config.mqtt, "dev-node")
    clock = FakeClock(START)
    devices: dict[str, MqttDevice] = {}
    for _room, dev in config.devices():
        devices[dev.id] = MqttDevice(dev, clock, link, led=led, sign=sign)
        devices[dev.id].start()
    link.start()
    assert link.wait_connected(10)
    yield config, link, devices
    for d in devices.values():
        d.close()
    link.close()


def test_json_wled_and_image_payloads_are_published_retained(
        setup: tuple[Config, MqttLink, dict[str, Any]], broker: Broker) -> None:
    _config, _link, devices = setup
    for d in devices.values():
        d.show(view())
    # Subscribe once the broker acknowledged every write: then all arrive as retained copies.
    wait_for(lambda: all(d.writes == 1 for d in devices.values()), what="written")
    rec = Recorder(broker.port)
    try:
        state = wait_for(lambda: rec.get("lights/room-a"), what="json")
        assert state[1] is True
        doc = json.loads(state[0])
        assert doc["state"] == "busy" and doc["open_id"] == "omm_a"
        assert doc["led"] == {"colour": "#ff0000", "effect": "steady", "brightness": 128}
        api = wait_for(lambda: rec.get("wled/door-a/api"), what="wled")
        assert json.loads(api[0]) == wled_state(led(view())) and api[1] is True
        image = wait_for(lambda: rec.get("signs/room-a"), what="image")
        frame = decode_image(image[0])
        assert (frame.width, frame.height, frame.flags) == (250, 122, 0)
        assert frame.black[:2] == b"\xff\xc0" and frame.black[2:] == bytes(len(frame.black) - 2)
        assert frame.red is not None and frame.red[-1] == 0x40  # pixel 249; padding bits 0
        assert len(image[0]) < 200  # compressed
    finally:
        rec.close()
    wait_for(lambda: all(d.health().online for d in devices.values()), what="online")


def test_unchanged_payload_is_not_republished_but_stale_is(
        setup: tuple[Config, MqttLink, dict[str, Any]]) -> None:
    _config, _link, devices = setup
    sign_dev = devices["sign"]
    sign_dev.show(view())
    wait_for(lambda: sign_dev.writes == 1, what="first image")
    sign_dev.show(view())
    sign_dev.show(view(stale=True))
    wait_for(lambda: sign_dev.writes == 2, what="stale image")
    assert decode_image(sign_dev.payload(view(stale=True))).flags == FLAG_STALE


def test_broker_down_marks_devices_offline_and_they_republish_on_return(
        setup: tuple[Config, MqttLink, dict[str, Any]], broker: Broker) -> None:
    _config, _link, devices = setup
    dev = devices["state-json"]
    dev.show(view(State.FREE))
    wait_for(lambda: dev.health().online, what="online")
    broker.kill()
    wait_for(lambda: not dev.health().online and dev.health().error == DISCONNECTED,
             what="offline while the broker is down")
    dev.show(view(State.BUSY))
    broker.start()  # no persistence: the retained copy is gone
    rec = Recorder(broker.port)
    try:
        got = wait_for(lambda: rec.get("lights/room-a"), timeout=8, what="republished")
        assert json.loads(got[0])["state"] == "busy"
    finally:
        rec.close()
    wait_for(lambda: dev.health().online, what="online again")


def test_image_payload_round_trip_and_rejects_corruption() -> None:
    black, red = planes_bytes(sign(view()))
    payload = encode_image(250, 122, black, red, flags=FLAG_STALE)
    frame = decode_image(payload)
    assert (frame.black, frame.red, frame.flags) == (black, red, FLAG_STALE)
    assert decode_image(encode_image(250, 122, black)).red is None
    broken = bytearray(payload)
    broken[-3] ^= 0x55
    with pytest.raises(ValueError):
        decode_image(bytes(broken))
    with pytest.raises(ValueError, match="planes must be"):
        encode_image(250, 122, black[:-1])


def test_wled_device_needs_an_led_renderer(tmp_path: Path) -> None:
    config = parse_config(CONFIG.format(url="mqtt://127.0.0.1:1"), tmp_path / "c.toml")
    assert config.mqtt is not None
    wled: DeviceConfig = config.rooms[0].devices[1]
    with pytest.raises(Exception, match="LED renderer"):
        MqttDevice(wled, FakeClock(START), MqttLink(config.mqtt, "x"))


def test_protocol_md_example_matches_the_encoder() -> None:
    text = (Path(__file__).resolve().parents[3] / "hardware" / "PROTOCOL.md").read_text()
    block = text.split("```mqtt-image-example\n", 1)[1].split("```", 1)[0]
    fields = {k: bytes.fromhex(v) for k, v in (line.split(":", 1) for line in
                                               block.strip().splitlines())}
    frame = decode_image(fields["payload"])
    assert (frame.width, frame.height, frame.flags) == (16, 8, FLAG_STALE)
    assert (frame.black, frame.red) == (fields["black"], fields["red"])
    ours = encode_image(16, 8, fields["black"], fields["red"], flags=FLAG_STALE)
    assert ours[:20] == fields["header"]
    assert decode_image(ours) == frame
