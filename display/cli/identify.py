"""``identify DEVICE``: make one panel show its test pattern, through the running node when there
is one (it holds the port), else by driving the device directly for a few seconds."""

from __future__ import annotations

from typing import Any

from display.clock import SystemClock
from display.config import Config
from display.errors import ConfigError, DeviceError


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
