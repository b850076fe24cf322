"""``preview ROOM``: the PNG an e-ink sign shows now, without touching the sign."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from display.clock import SystemClock
from display.config import Config, RoomConfig
from display.errors import ConfigError, DeviceError, RoomDisplayError


def find_room(config: Config, ref: str) -> RoomConfig:
    """A configured room by open_id or exact name; a clear error listing the known ones."""
    for room in config.rooms:
        if ref in (room.open_id, room.name):
            return room
    known = ", ".join(f"{r.open_id} ({r.name})" for r in config.rooms) or "none"
    raise ConfigError(str(config.path), "rooms", f"no room {ref!r}", f"known rooms: {known}")


def preview(config: Config, room_ref: str, output: Path | None, size: str | None = None,
            now: datetime | None = None) -> Path:
    """Render the room's sign as the node would now and save it as PNG; returns the path."""
    from display.render.eink import render_sign, sign_config
    from display.status import read_status, stored_view

    now = now or SystemClock().now()
    room = find_room(config, room_ref)
    device = sign_config(room, size)
    # Stale and "as of" come from the running node when there is one; otherwise nobody vouches
    # for the stored schedule, and the preview says so just as the sign would.
    doc = read_status(config, now)
    entry: dict[str, Any] = next((r for r in doc["rooms"] if r["open_id"] == room.open_id), {})
    running = bool(doc["node"].get("running"))
    stale = bool(entry.get("stale", True)) if running else True
    as_of = datetime.fromisoformat(entry["as_of"]) if running and entry.get("as_of") else now
    view = stored_view(config, room, now, stale=stale, as_of=as_of)
    out = output or Path(f"{room.open_id}.png")
    image = render_sign(view, device).to_rgb()
    try:
        image.save(out, format="PNG")
    except OSError as exc:
        raise RoomDisplayError(f"cannot write {out}: {exc.strerror or exc}"
                               " (does its folder exist?)") from None
    return out


def identify(config: Config, device_id: str, seconds: float = 10.0) -> str:
    """Ask the running node to identify ``device_id``, or drive the device directly when no
    node runs (it holds the port otherwise). Returns a line for the user."""
    import json
    import os
    import signal
    import time

    from display.app import identify_request_path
    from display.devices.factory import make_device
    from display.render.identify import Identify
    from display.status import read_status, stored_view

    entry = next(((room, d) for room, d in config.devices() if d.id == device_id), None)
    if entry is None:
        known = ", ".join(d.id for _, d in config.devices()) or "none"
        raise ConfigError(str(config.path), "rooms.devices", f"no device {device_id!r}",
                          f"known devices: {known}")
    room, device = entry
    doc = read_status(config)
    if doc["node"].get("running"):
        health: dict[str, Any] | None = next(
            (d for r in doc["rooms"] for d in r.get("devices", []) if d.get("id") == device_id),
            None)
        if health is not None and not health.get("online"):
            raise DeviceError(f"cannot identify {device_id}: it is offline "
                              f"({health.get('error') or 'no answer'})")
        pid = int(doc["node"]["pid"])
        path = identify_request_path(config)
        path.write_text(json.dumps({"device": device_id, "seconds": seconds}), encoding="utf-8")
        os.kill(pid, signal.SIGUSR1)
        return f"asked the running node (pid {pid}) to identify {device_id} for {seconds:.0f} s"
    if device.scheme == "mqtt":
        raise ConfigError(str(config.path), "rooms.devices", f"{device_id} is an MQTT device",
                          "start the node (room-display run); it owns the broker connection")
    clock = SystemClock()
    marker = Identify(clock)
    marker.start(device_id, seconds)
    worker = make_device(device, clock, marker)
    try:
        worker.show(stored_view(config, room, clock.now(), stale=True, as_of=clock.now()))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
        worker.resend()  # back to the room's state before letting go of the port
        time.sleep(0.5)
    finally:
        worker.close()
    result = worker.health()
    if not result.online:
        raise DeviceError(f"cannot identify {device_id}: it is offline "
                          f"({result.error or 'no answer'})")
    return f"identified {device_id} for {seconds:.0f} s (online)"
