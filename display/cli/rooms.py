"""``room-display rooms [NAME]``: the tenant's meeting rooms with their ``omm_`` ids, and finding
one by (part of) its name for ``map add-room``.

The directory is read from Feishu with the app's credentials
(:mod:`display.intake.feishu.directory`, imported only when a command needs it: it loads
lark-oapi's core, which the node itself never imports). A name is matched here, case-insensitive,
as a part of the room's name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from display.config import Config, load_config
from display.errors import ConfigError, FeishuApiError

if TYPE_CHECKING:
    from display.intake.feishu.directory import DirectoryRoom

#: Rooms named in an error about an ambiguous name.
SHOWN_CANDIDATES = 10


def fetch_rooms(config: Config) -> list[DirectoryRoom]:
    """Every room of the tenant (FeishuApiError / ConfigError in one line)."""
    if config.feishu is None or not config.feishu.app_id:
        raise ConfigError(str(config.path), "feishu.app_id", "is not set: listing Feishu's rooms "
                          "needs the app's credentials",
                          "set [feishu] app_id and app_secret (scope vc:room:readonly)")
    from display.intake.feishu.directory import Directory

    return Directory(config.feishu).rooms()


def matching(rooms: Sequence[DirectoryRoom], text: str) -> list[DirectoryRoom]:
    """Rooms whose name contains ``text``, any case (every room for an empty text)."""
    wanted = text.casefold()
    return [r for r in rooms if wanted in r.name.casefold()]


def resolve(rooms: Sequence[DirectoryRoom], ref: str) -> DirectoryRoom:
    """The one room named ``ref`` (any case), else the one whose name contains it; a
    FeishuApiError listing the candidates when none or several do."""
    exact = [r for r in rooms if r.name.casefold() == ref.casefold()]
    if len(exact) == 1:
        return exact[0]
    found = exact or matching(rooms, ref)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FeishuApiError(f"no Feishu room's name contains {ref!r} ({len(rooms)} rooms; see "
                             "room-display rooms)")
    shown = ", ".join(f"{r.name} ({r.room_id})" for r in found[:SHOWN_CANDIDATES])
    more = f" and {len(found) - SHOWN_CANDIDATES} more" if len(found) > SHOWN_CANDIDATES else ""
    raise FeishuApiError(f"{ref!r} matches {len(found)} Feishu rooms: {shown}{more}; give more "
                         "of the name, or the omm_ id")


def list_rooms(config: Config, name: str = "", *, as_json: bool = False) -> str:
    """The tenant's rooms (those whose name contains ``name``) as text or JSON; rooms this
    config already has are marked."""
    rooms = fetch_rooms(config)
    shown = matching(rooms, name)
    mapped = {r.open_id for r in config.rooms}
    if as_json:
        return json.dumps({"rooms": [{**r.to_json(), "configured": r.room_id in mapped}
                                     for r in shown]}, ensure_ascii=False, indent=2)
    if not shown:
        return (f"no room's name contains {name!r} ({len(rooms)} rooms in the tenant)"
                if name else "the tenant has no meeting rooms (or the app sees none)")
    width = max(len(r.room_id) for r in shown)
    lines = [f"  {'open_id':<{width}}  {'seats':>5}  {'where':<24}  name"]
    for r in shown:
        seats = str(r.capacity) if r.capacity is not None else "-"
        where = " / ".join(r.path) or "-"
        lines.append(f"{'*' if r.room_id in mapped else ' '} {r.room_id:<{width}}  {seats:>5}  "
                     f"{where:<24}  {r.name}")
    lines.append(f"{len(shown)} of {len(rooms)} room(s); * = in this config. Add one: "
                 "room-display map add-room OPEN_ID_OR_NAME [NAME]")
    return "\n".join(lines)


def new_room(path: Path, ref: str, name: str | None) -> tuple[str, str, DirectoryRoom | None]:
    """``map add-room REF [NAME]``: ``(open_id, name, the directory's room or None)``.

    ``REF`` is taken as an id when it starts with ``omm_`` or when the config has no Feishu app
    to ask (the map commands otherwise read no secret); else it names a room of the tenant, in
    full or in part, and must name exactly one. ``NAME`` defaults to Feishu's name for the room
    (to the id for an id).
    """
    if ref.startswith("omm_"):
        return ref, name or ref, None
    plain = load_config(path, resolve_secrets=False)
    if plain.feishu is None or not plain.feishu.app_id:
        return ref, name or ref, None
    room = resolve(fetch_rooms(load_config(path)), ref)
    return room.room_id, name or room.name, room
