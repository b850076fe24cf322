"""Build a device from its configuration: URL scheme and protocol pick the implementation."""

from __future__ import annotations

from display.clock import Clock
from display.config import Config, DeviceConfig, RoomConfig
from display.devices.base import Device, DeviceWorker
from display.devices.virtual import VirtualDevice
from display.errors import DeviceError


def make_device(config: Config, room: RoomConfig, device: DeviceConfig, clock: Clock) -> Device:
    """A started device worker for ``device`` of ``room``."""
    worker: DeviceWorker
    if device.scheme == "virtual":
        worker = VirtualDevice(device, clock)
    else:
        raise DeviceError(f"device {device.id}: {device.scheme} devices are not supported yet")
    worker.start()
    return worker
