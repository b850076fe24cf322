"""``room-display map``: edit which room drives which device, in place, comments kept.

Every edit works on a tomlkit document (which keeps comments and layout), is validated by the
same parser the node uses, and is written only if valid: atomically (temp file + rename, mode
kept), so a running node never reads half a file. The node notices the change and reloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from display.config import Config, parse_config, room_id_problem
from display.errors import ConfigError
from display.files import atomic_write


class MapError(ConfigError):
    """A map command named something that does not exist, or would make the config invalid."""


@dataclass(frozen=True)
class DeviceSpec:
    """Fields of a new ``[[rooms.devices]]`` entry; ``None`` keeps the default."""

    id: str
    kind: str
    url: str
    protocol: str | None = None
    size: str | None = None
    palette: str | None = None
    rotation: int | None = None


class ConfigEditor:
    """Load a config file as a tomlkit document, edit it, validate and save it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MapError(str(path), "", f"cannot read: {exc.strerror}",
                           "check -c/--config") from exc
        try:
            self.doc: TOMLDocument = tomlkit.parse(self.text)
        except tomlkit.exceptions.ParseError as exc:
            raise MapError(str(path), "", f"invalid TOML: {exc}", "fix the syntax first") from exc

    # -- lookups --

    def _rooms(self, create: bool = False) -> AoT:
        rooms = self.doc.get("rooms")
        if rooms is None and create:
            rooms = tomlkit.aot()
            self.doc.append("rooms", rooms)
        if rooms is None:
            return tomlkit.aot()
        if not isinstance(rooms, AoT):
            raise MapError(str(self.path), "rooms", "is not an array of tables",
                           "write rooms as [[rooms]] entries")
        return rooms

    def find_room(self, ref: str) -> Table:
        """A room by open_id, else by exact name."""
        rooms = list(self._rooms())
        for room in rooms:
            if room.get("open_id") == ref:
                return room  # type: ignore[no-any-return]
        named = [r for r in rooms if r.get("name") == ref]
        if len(named) == 1:
            return named[0]  # type: ignore[no-any-return]
        known = ", ".join(str(r.get("open_id")) for r in rooms) or "none"
        raise MapError(str(self.path), "rooms", f"no room {ref!r}",
                       f"use an open_id or name from 'room-display map' (known: {known})")

    def _find_device(self, device_id: str) -> tuple[Table, int]:
        for room in self._rooms():
            devices = room.get("devices")
            if isinstance(devices, AoT):
                for i, dev in enumerate(devices):
                    if dev.get("id") == device_id:
                        return room, i
        raise MapError(str(self.path), "rooms.devices", f"no device {device_id!r}",
                       "see 'room-display map' for device ids")

    # -- edits --

    def add_room(self, open_id: str, name: str) -> None:
        problem = room_id_problem(open_id)
        if problem:  # it becomes an MQTT topic level: refuse it here, before anything is saved
            raise MapError(str(self.path), "open_id", f"{open_id!r} {problem}",
                           "copy the room's id (omm_...) from Feishu")
        room = tomlkit.table()
        room["open_id"] = open_id
        room["name"] = name
        room.add(tomlkit.nl())
        self._rooms(create=True).append(room)

    def rename_room(self, ref: str, name: str) -> None:
        self.find_room(ref)["name"] = name

    def remove_room(self, ref: str) -> None:
        target = self.find_room(ref)
        rooms = self._rooms()
        index = next(i for i, r in enumerate(rooms) if r is target)
        del rooms[index]

    def add_device(self, room_ref: str, spec: DeviceSpec) -> None:
        room = self.find_room(room_ref)
        devices = room.get("devices")
        if devices is None:
            devices = tomlkit.aot()
            room.append("devices", devices)
        device = tomlkit.table()
        fields: dict[str, Any] = {"id": spec.id, "kind": spec.kind, "url": spec.url,
                                  "protocol": spec.protocol, "size": spec.size,
                                  "palette": spec.palette, "rotation": spec.rotation}
        for key, value in fields.items():
            if value is not None:
                device[key] = value
        device.add(tomlkit.nl())
        devices.append(device)

    def remove_device(self, device_id: str) -> None:
        room, index = self._find_device(device_id)
        del room["devices"][index]
        if len(room["devices"]) == 0:
            del room["devices"]

    # -- saving --

    def validate(self) -> Config:
        """Parse the edited text as the node would; raises ConfigError naming the problem."""
        return parse_config(tomlkit.dumps(self.doc), self.path, resolve_secrets=False)

    def save(self) -> Config:
        """Validate, then replace the file atomically keeping its owner, group and mode."""
        config = self.validate()
        text = tomlkit.dumps(self.doc)
        old = self.path.stat()
        try:
            atomic_write(self.path, text.encode(), mode=old.st_mode & 0o7777,
                         owner=(old.st_uid, old.st_gid))
        except PermissionError:
            raise ConfigError(str(self.path), "", "cannot keep its owner and group "
                              f"({old.st_uid}:{old.st_gid}) on the new file; nothing changed",
                              "run map as root (sudo) or as the file's owner") from None
        return config


def edit(path: Path, change: Callable[[ConfigEditor], None]) -> Config:
    """Apply ``change`` to the config at ``path`` and save it if the result is valid."""
    editor = ConfigEditor(path)
    change(editor)
    return editor.save()


def describe(config: Config) -> str:
    """The map as a user reads it: rooms, then their devices indented."""
    lines = [f"{config.path}: {len(config.rooms)} room(s), role {config.role}"]
    for room in config.rooms:
        lines.append(f"{room.open_id}  {room.name}")
        for d in room.devices:
            extra = f" {d.size[0]}x{d.size[1]} {d.palette.value}" if d.kind == "eink" else ""
            lines.append(f"    {d.id:<20} {d.kind:<4} {d.protocol:<5} {d.url}{extra}")
        if not room.devices:
            lines.append("    (no devices)")
    return "\n".join(lines)
