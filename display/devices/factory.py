"""Build a device from its configuration: URL scheme and protocol pick a builder in
:data:`REGISTRY`, and the factory starts what it built (no device starts itself).

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
from dataclasses import dataclass
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

@dataclass(frozen=True, slots=True)
class Parts:
    """What a builder may use besides the device's own config."""

    clock: Clock
    identify: Identify | None = None
    mqtt: MqttLink | None = None


#: Builds a device, not yet started (the factory starts it).
Builder = Callable[[DeviceConfig, Parts], Device]

#: ``(scheme, protocol)`` -> builder, as pyserial's ``serial_for_url`` maps URL schemes to
#: protocol handlers; protocol ``None`` matches any. Builders pick by kind and refuse what a
#: transport cannot carry with one clear error.
REGISTRY: dict[tuple[str, str | None], Builder] = {}


def register(scheme: str, protocol: str | None = None) -> Callable[[Builder], Builder]:
    """Add a builder for ``scheme`` and ``protocol`` to :data:`REGISTRY`."""
    def add(builder: Builder) -> Builder:
        REGISTRY[(scheme, protocol)] = builder
        return builder

    return add


@register("virtual")
def _virtual(device: DeviceConfig, parts: Parts) -> Device:
    from display.devices.virtual import VirtualDevice

    return VirtualDevice(
        device, parts.clock,
        led=led_renderer(device, parts.identify) if device.kind == "led" else None,
        sign=sign_renderer(device, parts.identify) if device.kind == "eink" else None)


@register("serial", "panel")
def _serial_panel(device: DeviceConfig, parts: Parts) -> Device:
    from display.devices.serial_panel import SerialEinkDevice, SerialLedDevice

    if device.kind == "led":
        return SerialLedDevice(device, parts.clock, led_renderer(device, parts.identify))
    return SerialEinkDevice(device, parts.clock, sign_renderer(device, parts.identify))


@register("serial", "wled")
def _serial_wled(device: DeviceConfig, parts: Parts) -> Device:
    if device.kind != "led":
        raise DeviceError(f"device {device.id}: protocol wled drives LEDs only")
    from display.devices.wled import SerialWledDevice

    return SerialWledDevice(device, parts.clock, led_renderer(device, parts.identify))


@register("mqtt")
def _mqtt(device: DeviceConfig, parts: Parts) -> Device:
    if parts.mqtt is None:
        raise DeviceError(f"device {device.id}: {device.url} needs [mqtt] in the config")
    from display.devices.mqtt_devices import MqttDevice  # paho only where MQTT is used

    return MqttDevice(
        device, parts.clock, parts.mqtt,
        led=led_renderer(device, parts.identify) if device.kind == "led" else None,
        sign=sign_renderer(device, parts.identify) if device.kind == "eink" else None)


def build_device(device: DeviceConfig, parts: Parts) -> Device:
    """A started device for ``device``, from the builder its URL scheme and protocol select."""
    builder = REGISTRY.get((device.scheme, device.protocol)) or REGISTRY.get((device.scheme, None))
    if builder is None:
        usable = " or ".join(sorted(p for s, p in REGISTRY if s == device.scheme and p))
        raise DeviceError(f"device {device.id}: protocol {device.protocol} is not for "
                          f"{device.scheme} ports (use {usable})")
    worker = builder(device, parts)
    worker.start()
    return worker


def make_device(device: DeviceConfig, clock: Clock, identify: Identify | None = None) -> Device:
    """A started device for ``device`` without a broker connection (``mqtt:`` is refused)."""
    return build_device(device, Parts(clock, identify))


def device_factory(mqtt: MqttLink | None = None,
                   identify: Identify | None = None) -> DeviceFactory:
    """The node's :data:`~display.devices.base.DeviceFactory`: ``mqtt:TOPIC`` devices publish
    through the node's link."""
    def make(device: DeviceConfig, clock: Clock) -> Device:
        return build_device(device, Parts(clock, identify, mqtt))

    return make
