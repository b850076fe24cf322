"""``mqtt:TOPIC`` devices: panels reached through the node's broker connection.

- ``protocol = "json"`` (default): the room's state JSON
  (:func:`~display.encode.view_json.view_json`, plus ``"led"`` for an LED) retained on ``TOPIC``:
  Tasmota rules, ESPHome, custom boards;
- ``protocol = "wled"``: WLED's JSON API on ``TOPIC/api`` (WLED subscribes to
  ``[mqttDeviceTopic]/api``; payload from :func:`display.encode.wled.wled_state`, the same
  as over serial), retained so a WLED that reboots gets its colour back at once;
- ``kind = "eink"`` with ``protocol = "panel"``: the rendered sign as the compressed image payload
  of :mod:`display.encode.mqtt_image`, retained on ``TOPIC``, for Wi-Fi e-ink panels.

Every message is QoS 1 and ``apply`` waits for the broker's PUBACK, so ``health`` says whether
the broker has the newest state. While the broker is disconnected the device is offline
("broker disconnected"); after every reconnect it publishes its desired state again (a broker
without persistence forgot the retained copy). Unchanged payloads are not re-sent otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.encode.mqtt_image import FLAG_STALE, encode_image
from display.encode.planes import planes_bytes
from display.encode.view_json import led_json, view_json
from display.encode.wled import wled_state
from display.errors import DeviceError
from display.model import RoomView
from display.outputs import LedOutput, SignImage
from display.transport.mqtt_client import MqttLink
from display.unchanged import Unchanged

log = logging.getLogger(__name__)

PUBACK_TIMEOUT = 5.0
DISCONNECTED = "broker disconnected"

class WaitingForBroker(DeviceError):
    """Not connected yet since start: expected on every start, so logged at INFO; the connect
    hook sends the state then."""

    log_level = logging.INFO


LedRenderer = Callable[[RoomView], LedOutput]
SignRenderer = Callable[[RoomView], SignImage]
#: ``view -> payload`` for one device, built from its renderers.
PayloadEncoder = Callable[[RoomView], bytes]
EncoderBuilder = Callable[[DeviceConfig, LedRenderer | None, SignRenderer | None], PayloadEncoder]


def _wled_payload(config: DeviceConfig, led: LedRenderer | None,
                  sign: SignRenderer | None) -> PayloadEncoder:
    if led is None:
        raise DeviceError(f"device {config.id}: protocol wled needs an LED renderer")
    render = led
    return lambda view: json.dumps(wled_state(render(view)), separators=(",", ":")).encode()


def _image_payload(config: DeviceConfig, led: LedRenderer | None,
                   sign: SignRenderer | None) -> PayloadEncoder:
    if sign is None:
        raise DeviceError(f"device {config.id}: e-ink over MQTT needs a sign renderer")
    render = sign

    def encode(view: RoomView) -> bytes:
        image = render(view)
        black, red = planes_bytes(image)
        width, height = image.size
        return encode_image(width, height, black, red, flags=FLAG_STALE if view.stale else 0)

    return encode


def _json_payload(config: DeviceConfig, led: LedRenderer | None,
                  sign: SignRenderer | None) -> PayloadEncoder:
    render = led if config.kind == "led" else None

    def encode(view: RoomView) -> bytes:
        doc = view_json(view)
        if render is not None:
            doc["led"] = led_json(render(view))
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    return encode


#: ``(protocol, kind)`` -> (topic suffix, encoder builder); kind ``None`` matches either kind.
#: WLED subscribes to ``[mqttDeviceTopic]/api``; an LED has no image, so ``panel`` gives it the
#: state JSON.
PAYLOADS: dict[tuple[str, str | None], tuple[str, EncoderBuilder]] = {
    ("wled", None): ("/api", _wled_payload),
    ("panel", "eink"): ("", _image_payload),
    ("panel", "led"): ("", _json_payload),
    ("json", None): ("", _json_payload),
}


class MqttDevice(DeviceWorker):
    """A panel fed through the broker; :data:`PAYLOADS` picks the payload by protocol and kind."""

    def __init__(self, config: DeviceConfig, clock: Clock, link: MqttLink, *,
                 led: LedRenderer | None = None, sign: SignRenderer | None = None) -> None:
        super().__init__(config.id, config.url, clock)
        self.kind = config.kind
        self.config = config
        self.link = link
        self.base_topic = config.url.removeprefix("mqtt:").strip("/")
        entry = PAYLOADS.get((config.protocol, config.kind)) or PAYLOADS.get(
            (config.protocol, None))
        if entry is None:
            raise DeviceError(f"device {config.id}: protocol {config.protocol} is not for MQTT")
        suffix, build = entry
        self.topic = self.base_topic + suffix
        self.payload: PayloadEncoder = build(config, led, sign)
        self._sent: Unchanged[str] = Unchanged()  # digest of the payload the broker holds
        self.writes = 0
        link.add_connect_hook(self._on_connect)
        link.add_disconnect_hook(self._on_disconnect)

    def apply(self, view: RoomView) -> None:
        if not self.link.connected:
            raise (WaitingForBroker if self.link.connects == 0 else DeviceError)(DISCONNECTED)
        payload = self.payload(view)
        digest = hashlib.sha1(payload).hexdigest()
        if self._sent.same(digest):
            return
        info = self.link.publish(self.topic, payload, retain=True, qos=1)
        if info is None:
            raise DeviceError(DISCONNECTED)
        try:
            info.wait_for_publish(PUBACK_TIMEOUT)
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(f"publish to {self.topic} failed: {exc}") from exc
        if not info.is_published():
            raise DeviceError(f"no PUBACK from the broker within {PUBACK_TIMEOUT:.0f} s")
        self._sent.record(digest)
        self.writes += 1

    # -- link events (MQTT worker thread: only flags) ----------------------------------------------

    def _on_connect(self) -> None:
        self._sent.forget()  # the broker may have lost the retained copy: publish again
        self.resend()

    def _on_disconnect(self, reason: str) -> None:
        self.mark(online=False, error=DISCONNECTED)
