"""``preview ROOM``: the PNG an e-ink sign shows now, without touching the sign."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from display.clock import SystemClock
from display.config import Config, RoomConfig
from display.errors import ConfigError, RoomDisplayError


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
