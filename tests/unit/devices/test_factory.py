"""The device registry: URL scheme and protocol pick a builder; the factory starts the device."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.config import DeviceConfig
from display.devices import factory
from display.devices.factory import Parts, build_device, device_factory, make_device
from display.errors import DeviceError
from display.model import Occupancy, RoomView, State
from display.testing.clock import FakeClock
from display.testing.waiting import wait_for

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def view() -> RoomView:
    occ = Occupancy(at=T0, state=State.BUSY, since=T0, until=T0 + timedelta(minutes=30),
                    current=None, next=())
    return RoomView("omm_a", "Room A", occ, False, T0, "Asia/Shanghai")


@pytest.mark.parametrize(("kind", "url", "protocol", "error"), [
    ("led", "/dev/ttyACM9", "json",
     "device d: protocol json is not for serial ports (use panel or wled)"),
    ("eink", "/dev/ttyACM9", "wled", "device d: protocol wled drives LEDs only"),
    ("led", "mqtt:lights/a", "json", "device d: mqtt:lights/a needs [mqtt] in the config"),
])
def test_what_a_transport_cannot_carry_is_one_clear_error(kind: str, url: str, protocol: str,
                                                          error: str) -> None:
    config = DeviceConfig(id="d", kind=kind, url=url, protocol=protocol)
    with pytest.raises(DeviceError) as info:
        device_factory()(config, FakeClock(T0))
    assert str(info.value) == error


def test_the_factory_starts_what_it_builds(tmp_path: Path) -> None:
    config = DeviceConfig(id="lamp", kind="led", url=f"virtual:{tmp_path}", protocol="panel")
    device = make_device(config, FakeClock(T0))
    try:
        device.show(view())  # a device nobody started would never write
        path = tmp_path / "lamp.json"
        doc = wait_for(lambda: path.exists() and json.loads(path.read_text()), what="written")
        assert doc["state"] == "busy" and doc["led"]["colour"].startswith("#")
    finally:
        device.close()


def test_a_registered_builder_is_used_for_its_scheme_and_protocol(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    built: list[str] = []

    def builder(device: DeviceConfig, parts: Parts) -> factory.Device:
        built.append(device.id)
        return factory.REGISTRY[("virtual", None)](device, parts)

    monkeypatch.setitem(factory.REGISTRY, ("virtual", "json"), builder)
    config = DeviceConfig(id="x", kind="eink", url=f"virtual:{tmp_path}", protocol="json",
                          size=(64, 32))
    device = build_device(config, Parts(FakeClock(T0)))
    device.close()
    assert built == ["x"]
