"""``virtual:DIR``: a panel that writes what it would show into files.

For every device it keeps ``DIR/<id>.json`` (the room's state and, for an LED, the colour and
effect) and, for an e-ink sign, ``DIR/<id>.png`` (the rendered image). Used by ``demo``, by tests
and for trying a layout without hardware. Files are replaced atomically, so a reader never sees
half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.model import RoomView
from display.outputs import LedOutput, SignImage


def view_json(view: RoomView) -> dict[str, Any]:
    """The state of a room as panels and MQTT ``json`` devices receive it."""
    occ = view.occupancy
    return {
        "open_id": view.open_id,
        "name": view.name,
        "state": occ.state.value,
        "stale": view.stale,
        "since": occ.since.isoformat() if occ.since else None,
        "until": occ.until.isoformat() if occ.until else None,
        "as_of": view.as_of.isoformat(),
        "current": occ.current.to_json() if occ.current else None,
        "next": [b.to_json() for b in occ.next],
    }


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VirtualDevice(DeviceWorker):
    """Writes the desired state to ``DIR/<id>.json`` (and ``.png`` for e-ink)."""

    def __init__(self, config: DeviceConfig, clock: Clock,
                 led: Callable[[RoomView], LedOutput] | None = None,
                 sign: Callable[[RoomView], SignImage] | None = None) -> None:
        super().__init__(config.id, config.url, clock)
        self.kind = config.kind
        self.directory = Path(config.url.removeprefix("virtual:"))
        self._led = led
        self._sign = sign
        self.writes = 0

    def apply(self, view: RoomView) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = view_json(view)
        doc["device"] = self.id
        if self._led is not None:
            out = self._led(view)
            doc["led"] = {"colour": "#{:02x}{:02x}{:02x}".format(*out.colour),
                          "effect": out.effect.value, "brightness": out.brightness}
        if self._sign is not None:
            png = self.directory / f"{self.id}.png"
            self._sign(view).to_rgb().save(png.with_name(f".{png.name}.tmp"), format="PNG")
            os.replace(png.with_name(f".{png.name}.tmp"), png)
            doc["image"] = png.name
        write_atomically(self.directory / f"{self.id}.json",
                         json.dumps(doc, ensure_ascii=False, indent=1).encode())
        self.writes += 1
