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
from typing import Any

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

log = logging.getLogger(__name__)

PUBACK_TIMEOUT = 5.0
DISCONNECTED = "broker disconnected"

class WaitingForBroker(DeviceError):
    """Not connected yet since start: expected on every start, so logged at INFO; the connect
    hook sends the state then."""

    log_level = logging.INFO


class MqttDevice(DeviceWorker):
    """A panel fed through the broker; the payload depends on kind and protocol."""

    def __init__(self, config: DeviceConfig, clock: Clock, link: MqttLink, *,
                 led: Callable[[RoomView], LedOutput] | None = None,
                 sign: Callable[[RoomView], SignImage] | None = None,
                 wled: Callable[[LedOutput], dict[str, Any]] = wled_state,
                 planes: Callable[[SignImage], tuple[bytes, bytes | None]] = planes_bytes,
                 ) -> None:
        super().__init__(config.id, config.url, clock)
        self.kind = config.kind
        self.config = config
        self.link = link
        self.base_topic = config.url.removeprefix("mqtt:").strip("/")
        self._led = led
        self._sign = sign
        self._wled = wled
        self._planes = planes
        if config.protocol == "wled":
            if led is None:
                raise DeviceError(f"device {config.id}: protocol wled needs an LED renderer")
            self.topic = f"{self.base_topic}/api"
        elif config.kind == "eink" and config.protocol == "panel":
            if sign is None:
                raise DeviceError(f"device {config.id}: e-ink over MQTT needs a sign renderer")
            self.topic = self.base_topic
        else:
            self.topic = self.base_topic
        self._sent: str | None = None  # digest of the payload the broker holds
        self.writes = 0
        link.add_connect_hook(self._on_connect)
        link.add_disconnect_hook(self._on_disconnect)

    def payload(self, view: RoomView) -> bytes:
        """What this device publishes for ``view``."""
        if self.config.protocol == "wled" and self._led is not None:
            return json.dumps(self._wled(self._led(view)), separators=(",", ":")).encode()
        if self.config.kind == "eink" and self.config.protocol == "panel" and self._sign:
            sign = self._sign(view)
            black, red = self._planes(sign)
            width, height = sign.size
            return encode_image(width, height, black, red,
                                flags=FLAG_STALE if view.stale else 0)
        doc = view_json(view)
        if self.config.kind == "led" and self._led is not None:
            doc["led"] = led_json(self._led(view))
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    def apply(self, view: RoomView) -> None:
        if not self.link.connected:
            raise (WaitingForBroker if self.link.connects == 0 else DeviceError)(DISCONNECTED)
        payload = self.payload(view)
        digest = hashlib.sha1(payload).hexdigest()
        if digest == self._sent:
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
        self._sent = digest
        self.writes += 1

    # -- link events (MQTT worker thread: only flags) ----------------------------------------------

    def _on_connect(self) -> None:
        self._sent = None  # the broker may have lost the retained copy: publish again
        self.resend()

    def _on_disconnect(self, reason: str) -> None:
        self.mark(online=False, error=DISCONNECTED)
