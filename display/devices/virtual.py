"""``virtual:DIR``: a panel that writes what it would show into files.

For every device it keeps ``DIR/<id>.json`` (the room's state and, for an LED, the colour and
effect) and, for an e-ink sign, ``DIR/<id>.png`` (the rendered image). Used by ``demo``, by tests
and for trying a layout without hardware. Files are replaced atomically, so a reader never sees
half a file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.encode.view_json import led_json, view_json
from display.model import RoomView
from display.outputs import LedOutput, SignImage
from display.transport.file import FileTransport


class VirtualDevice(DeviceWorker):
    """Writes the desired state to ``DIR/<id>.json`` (and ``.png`` for e-ink)."""

    def __init__(self, config: DeviceConfig, clock: Clock,
                 led: Callable[[RoomView], LedOutput] | None = None,
                 sign: Callable[[RoomView], SignImage] | None = None) -> None:
        super().__init__(config.id, config.url, clock)
        self.kind = config.kind
        self.files = FileTransport(Path(config.url.removeprefix("virtual:")))
        self._led = led
        self._sign = sign
        self.writes = 0

    def apply(self, view: RoomView) -> None:
        doc = view_json(view)
        doc["device"] = self.id
        if self._led is not None:
            doc["led"] = led_json(self._led(view))
        if self._sign is not None:
            png = io.BytesIO()
            self._sign(view).to_rgb().save(png, format="PNG")
            doc["image"] = self.files.write(f"{self.id}.png", png.getvalue()).name
        self.files.write(f"{self.id}.json", json.dumps(doc, ensure_ascii=False, indent=1).encode())
        self.writes += 1
