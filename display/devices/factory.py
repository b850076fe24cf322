"""Build a device from its configuration: URL scheme and protocol pick the implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from display.clock import Clock
from display.config import Config, DeviceConfig, RoomConfig
from display.devices.base import Device, DeviceWorker
from display.devices.virtual import VirtualDevice
from display.errors import DeviceError

if TYPE_CHECKING:
    from display.mqtt.client import MqttLink
    from display.node import DeviceFactory


def make_device(config: Config, room: RoomConfig, device: DeviceConfig, clock: Clock) -> Device:
    """A started device worker for ``device`` of ``room``."""
    worker: DeviceWorker
    if device.scheme == "virtual":
        worker = VirtualDevice(device, clock)
    else:
        raise DeviceError(f"device {device.id}: {device.scheme} devices are not supported yet")
    worker.start()
    return worker


def device_factory(mqtt: MqttLink | None = None) -> DeviceFactory:
    """:func:`make_device`, plus ``mqtt:TOPIC`` devices published through the node's ``mqtt``."""
    def make(config: Config, room: RoomConfig, device: DeviceConfig, clock: Clock) -> Device:
        if device.scheme != "mqtt":
            return make_device(config, room, device, clock)
        if mqtt is None:
            raise DeviceError(f"device {device.id}: {device.url} needs [mqtt] in the config")
        from display.devices.mqtt_devices import MqttDevice  # paho only where MQTT is used

        # MERGE: pass led=lambda v: led_output(v, device), sign=lambda v: render_sign(v, device)
        # and planes=display.render.encode.planes_bytes once the render branch is in.
        worker = MqttDevice(device, clock, mqtt)
        worker.start()
        return worker

    return make
