"""Build a device from its configuration: URL scheme and protocol pick the implementation.

| scheme / protocol | class |
|---|---|
| ``virtual:DIR`` | :class:`~display.devices.virtual.VirtualDevice` (JSON, PNG for e-ink) |
| serial + ``panel`` | ``serial_panel.SerialLedDevice`` / ``serial_panel.SerialEinkDevice`` |
| serial + ``wled`` | :class:`~display.devices.wled.SerialWledDevice` (LED only) |
| ``mqtt:TOPIC`` | :class:`~display.devices.mqtt_devices.MqttDevice` (json, wled, e-ink image) |

Renderers are bound here (device config in, ``view -> output`` out), so devices stay ignorant of
how a view becomes a colour or an image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import Device, DeviceFactory
from display.errors import DeviceError
from display.model import RoomView
from display.outputs import LedOutput, SignImage
from display.render.identify import Identify, pattern_led, pattern_sign

if TYPE_CHECKING:
    from display.transport.mqtt_client import MqttLink


def led_renderer(device: DeviceConfig,
                 identify: Identify | None = None) -> Callable[[RoomView], LedOutput]:
    """``view -> LedOutput`` for this device's colours and effects (or its identify pattern)."""
    from display.render.led import led_output

    def render(view: RoomView) -> LedOutput:
        if identify is not None and identify.active(device.id):
            return pattern_led()
        return led_output(view, device)

    return render


def sign_renderer(device: DeviceConfig,
                  identify: Identify | None = None) -> Callable[[RoomView], SignImage]:
    """``view -> SignImage`` for this device's size, palette, rotation and language.

    Imported lazily: Pillow's font machinery is only loaded on nodes that have a sign.
    """
    from display.render.eink import render_sign

    def render(view: RoomView) -> SignImage:
        if identify is not None and identify.active(device.id):
            return pattern_sign(device)
        return render_sign(view, device)

    return render

def make_device(device: DeviceConfig, clock: Clock, identify: Identify | None = None) -> Device:
    """A running device for ``device`` of ``room`` (serial devices start in their constructor)."""
    if device.scheme == "virtual":
        from display.devices.virtual import VirtualDevice

        virtual = VirtualDevice(
            device, clock,
            led=led_renderer(device, identify) if device.kind == "led" else None,
            sign=sign_renderer(device, identify) if device.kind == "eink" else None)
        virtual.start()
        return virtual
    if device.scheme == "serial":
        if device.protocol == "wled":
            if device.kind != "led":
                raise DeviceError(f"device {device.id}: protocol wled drives LEDs only")
            from display.devices.wled import SerialWledDevice

            return SerialWledDevice(device, clock, led_renderer(device, identify))
        if device.protocol == "panel":
            from display.devices.serial_panel import SerialEinkDevice, SerialLedDevice

            if device.kind == "led":
                return SerialLedDevice(device, clock, led_renderer(device, identify))
            return SerialEinkDevice(device, clock, sign_renderer(device, identify))
        raise DeviceError(f"device {device.id}: protocol {device.protocol} is not for serial "
                          "ports (use panel or wled)")
    raise DeviceError(f"device {device.id}: {device.url} needs [mqtt] in the config")


def device_factory(mqtt: MqttLink | None = None,
                   identify: Identify | None = None) -> DeviceFactory:
    """:func:`make_device`, plus ``mqtt:TOPIC`` devices published through the node's link."""
    def make(device: DeviceConfig, clock: Clock) -> Device:
        if device.scheme != "mqtt" or mqtt is None:
            return make_device(device, clock, identify)
        from display.devices.mqtt_devices import MqttDevice  # paho only where MQTT is used

        worker = MqttDevice(device, clock, mqtt,
                            led=led_renderer(device, identify) if device.kind == "led" else None,
                            sign=sign_renderer(device, identify) if device.kind == "eink"
                            else None)
        worker.start()
        return worker

    return make
