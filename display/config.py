"""Load and validate the TOML configuration into frozen values.

Every problem becomes one :class:`~display.errors.ConfigError` line naming the file, the key and
the fix. Unknown keys are errors too: a typo must not silently fall back to a default.
Secrets may be written ``"env:NAME"`` or ``"file:/path"``; they are resolved here and wrapped in
:class:`Secret` so they never reach a log line, ``status`` or MQTT by accident.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from display.errors import ConfigError
from display.outputs import Effect, Palette, parse_hex

CONFIG_ENV = "ROOM_DISPLAY_CONFIG"
SYSTEM_CONFIG = Path("/etc/room-display/config.toml")
LOCAL_CONFIG = Path("room-display.toml")

LANGUAGES = ("zh", "en", "zh+en")
STATES_WITH_STALE = ("free", "soon", "busy", "ending", "stale")
DEVICE_KINDS = ("led", "eink")
PROTOCOLS = ("panel", "wled", "json")


#: What an unread secret holds when secrets are not resolved (never sent anywhere).
UNRESOLVED = "<unresolved>"


class Secret:
    """A string that shows as ``***`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class NodeConfig:
    """``[node]``: who this node is and how it shows time."""

    name: str
    timezone: str
    language: str
    state_dir: Path
    clock: str = "auto"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class OccupancyConfig:
    """``[occupancy]``: thresholds of DESIGN.md, in minutes."""

    soon_minutes: int = 10
    ending_minutes: int = 10
    stale_after_minutes: int = 10


@dataclass(frozen=True)
class FeishuConfig:
    """``[feishu]``: present only on the bridge (or a single box)."""

    app_id: str
    app_secret: Secret
    mode: str = "long_connection"
    verification_token: Secret = field(default_factory=lambda: Secret(""))
    encrypt_key: Secret = field(default_factory=lambda: Secret(""))
    listen: str = "127.0.0.1:7777"
    path: str = "/webhook/event"
    domain: str = "https://open.feishu.cn"
    resync: bool = True  # pull free/busy at start, after reconnects and every resync_minutes
    resync_minutes: int = 15  # 0 = off (DESIGN.md), as is resync = false
    replay_window_seconds: int = 300
    max_body_bytes: int = 65536

    @property
    def resync_enabled(self) -> bool:
        """Re-sync runs unless ``resync = false`` or ``resync_minutes = 0`` (DESIGN.md: 0 = off)."""
        return self.resync and self.resync_minutes > 0

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class MqttConfig:
    """``[mqtt]``: the broker every node of a site shares."""

    url: str
    username: str | None = None
    password: Secret | None = None
    topic_prefix: str = "room-display"
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    #: Home Assistant's birth topic is its own setting in HA (MQTT options), not derived from
    #: the discovery prefix; when HA publishes ``online`` there, discovery is sent again.
    birth_topic: str = "homeassistant/status"
    protocol: str = "3.1.1"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30
    client_id: str | None = None

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or (8883 if self.tls else 1883)


WEB_LISTEN = "127.0.0.1:8470"


@dataclass(frozen=True)
class WebConfig:
    """``[web]``: the read-only status page (on by default except on a panel agent)."""

    listen: str = WEB_LISTEN
    token: Secret = field(default_factory=lambda: Secret(""))

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``::1``: addresses only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULT_LED_COLOURS: Mapping[str, str] = {
    "free": "#00c000",
    "soon": "#ffa000",
    "busy": "#ff0000",
    "ending": "#ff00c0",
}
DEFAULT_LED_EFFECTS: Mapping[str, str] = {
    "free": "steady",
    "soon": "pulse",
    "busy": "steady",
    "ending": "pulse",
    "stale": "blink",
}


@dataclass(frozen=True)
class DeviceConfig:
    """``[[rooms.devices]]``: one panel. Kind-specific keys are ignored by the other kind."""

    id: str
    kind: str
    url: str
    protocol: str
    # e-ink
    size: tuple[int, int] = (296, 128)
    palette: Palette = Palette.BW
    rotation: int = 0
    language: str | None = None
    full_refresh_every: int = 20
    full_refresh_hours: int = 24
    # LED
    brightness: int = 128
    colours: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    effects: Mapping[str, Effect] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """``virtual``, ``mqtt`` or ``serial`` (any pyserial URL or path)."""
        if self.url.startswith("virtual:"):
            return "virtual"
        if self.url.startswith("mqtt:"):
            return "mqtt"
        return "serial"


@dataclass(frozen=True)
class RoomConfig:
    """``[[rooms]]``: a Feishu meeting room and the panels by its door."""

    open_id: str
    name: str
    devices: tuple[DeviceConfig, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one node."""

    path: Path
    node: NodeConfig
    occupancy: OccupancyConfig
    rooms: tuple[RoomConfig, ...]
    feishu: FeishuConfig | None = None
    mqtt: MqttConfig | None = None
    web: WebConfig | None = None  # None: no web page (an agent without [web], or enabled = false)

    @property
    def role(self) -> str:
        """``bridge`` (Feishu + broker), ``single`` (Feishu, no broker) or ``agent``."""
        if self.feishu is None:
            return "agent"
        return "bridge" if self.mqtt is not None else "single"

    def room(self, open_id: str) -> RoomConfig | None:
        return next((r for r in self.rooms if r.open_id == open_id), None)

    def devices(self) -> list[tuple[RoomConfig, DeviceConfig]]:
        return [(room, dev) for room in self.rooms for dev in room.devices]


# -- locating ----------------------------------------------------------------------------------


def default_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``-c`` if given, else ``$ROOM_DISPLAY_CONFIG``, else the system file if it exists, else
    ``./room-display.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return LOCAL_CONFIG


def load_config(path: str | os.PathLike[str], *, resolve_secrets: bool = True) -> Config:
    """Read, parse and validate ``path``; raise :class:`ConfigError` on any problem.

    ``resolve_secrets=False`` leaves ``env:``/``file:``/``credential:`` secrets unread (as
    :data:`UNRESOLVED`): for commands that need none (``map``, ``status``, ``preview``), so they
    work for a user who may not read the credentials.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), "", "file not found",
                          "create it from examples/ or pass -c FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc}") from exc
    return parse_config(text, p, resolve_secrets=resolve_secrets)


def parse_config(text: str, path: Path, *, resolve_secrets: bool = True) -> Config:
    """Validate TOML ``text`` as if read from ``path`` (relative paths resolve beside it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}", "fix the syntax") from exc
    return _Parser(path, resolve_secrets).config(data)


# -- validation --------------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_COLOUR = re.compile(r"^#([0-9a-fA-F]{6})$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Parser:
    """Walks the TOML tree, naming each key by its dotted path in errors."""

    def __init__(self, path: Path, resolve_secrets: bool = True) -> None:
        self.path = path
        self.resolve_secrets = resolve_secrets

    def fail(self, key: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), key, problem, fix)

    def table(self, data: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table", f"write [{key}]")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key",
                            "allowed: " + ", ".join(sorted(allowed)))
        return value

    def get(self, t: Mapping[str, Any], key: str, name: str, kind: type, default: Any) -> Any:
        if name not in t:
            return default
        value = t[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(f"{key}.{name}", f"must be {_type_word(kind)}, got {value!r}")
        return value

    def minutes(self, t: Mapping[str, Any], key: str, name: str, default: int) -> int:
        value: int = self.get(t, key, name, int, default)
        if not 0 <= value <= 24 * 60:
            raise self.fail(f"{key}.{name}", f"{value} is out of range", "use 0 to 1440 minutes")
        return value

    def secret(self, t: Mapping[str, Any], key: str, name: str) -> Secret:
        raw: str = self.get(t, key, name, str, "")
        full = f"{key}.{name}"
        if not self.resolve_secrets and raw.startswith(("env:", "file:", "credential:")):
            return Secret(UNRESOLVED)
        if raw.startswith("env:"):
            var = raw[4:]
            if var not in os.environ:
                raise self.fail(full, f"environment variable {var} is not set",
                                f"export {var}=... or use file:/path")
            return Secret(os.environ[var])
        if raw.startswith("file:"):
            file = self.relative(raw[5:])
            try:
                return Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise self.fail(full, f"cannot read secret file {file}: {exc.strerror}",
                                "check the path and its permissions") from exc
        # systemd LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY; "credential:NAME".
        # Outside systemd (an administrator running check), the files the installer laid out
        # in credentials/ beside the config (/etc/room-display/credentials/) are the same ones.
        if raw.startswith("credential:"):
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            file = (Path(directory) if directory else self.path.parent / "credentials") / raw[11:]
            try:
                return Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                fix = ("check LoadCredential= in the unit" if directory else
                       "run as root (sudo), or under systemd LoadCredential=")
                raise self.fail(full, f"cannot read credential {file}: {exc.strerror}",
                                fix) from exc
        return Secret(raw)

    def relative(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    # -- sections --

    def config(self, data: Mapping[str, Any]) -> Config:
        top = {"node", "occupancy", "feishu", "mqtt", "rooms", "web"}
        unknown = sorted(set(data) - top)
        if unknown:
            raise self.fail(unknown[0], "unknown section", "allowed: " + ", ".join(sorted(top)))
        node = self.node(data)
        occupancy = self.occupancy(data)
        feishu = self.feishu(data) if "feishu" in data else None
        mqtt = self.mqtt(data) if "mqtt" in data else None
        rooms = self.rooms(data)
        # The page is on by default where Feishu comes in (bridge, single box); a panel agent
        # serves it only when its config has a [web] section.
        web = self.web(data) if "web" in data or feishu is not None else None
        return Config(path=self.path, node=node, occupancy=occupancy, rooms=rooms,
                      feishu=feishu, mqtt=mqtt, web=web)

    def node(self, data: Mapping[str, Any]) -> NodeConfig:
        t = self.table(data, "node", {"name", "timezone", "language", "state_dir", "clock"})
        name = self.get(t, "node", "name", str, "") or socket.gethostname()
        if not _ID.match(name):
            raise self.fail("node.name", f"{name!r} is not a valid node name",
                            "use letters, digits, '-', '_' or '.'")
        configured = self.get(t, "node", "timezone", str, "")
        tz = configured or system_timezone()
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            if not configured and os.environ.get("TZ"):
                # The zone came from the environment, not the file: name what to fix.
                raise ConfigError("TZ", "", f"unknown time zone {tz!r} in the TZ environment "
                                  "variable", 'unset TZ or set [node] timezone, e.g. '
                                  '"Asia/Shanghai"') from None
            raise self.fail("node.timezone", f"unknown time zone {tz!r}",
                            'use an IANA name such as "Asia/Shanghai"') from None
        language = self.get(t, "node", "language", str, "en")
        if language not in LANGUAGES:
            raise self.fail("node.language", f"{language!r} is not supported",
                            "use " + " | ".join(LANGUAGES))
        state_raw = self.get(t, "node", "state_dir", str, "")
        if state_raw:
            state_dir = self.relative(state_raw)
        elif os.environ.get("STATE_DIRECTORY"):
            state_dir = Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        else:
            state_dir = self.path.parent / "state"
        clock = self.get(t, "node", "clock", str, "auto")
        if clock not in ("auto", "trust"):
            raise self.fail("node.clock", f"{clock!r} is not supported", 'use "auto" or "trust"')
        return NodeConfig(name=name, timezone=tz, language=language, state_dir=state_dir,
                          clock=clock)

    def occupancy(self, data: Mapping[str, Any]) -> OccupancyConfig:
        key = "occupancy"
        t = self.table(data, key, {"soon_minutes", "ending_minutes", "stale_after_minutes"})
        return OccupancyConfig(
            soon_minutes=self.minutes(t, key, "soon_minutes", 10),
            ending_minutes=self.minutes(t, key, "ending_minutes", 10),
            stale_after_minutes=self.minutes(t, key, "stale_after_minutes", 10),
        )

    def feishu(self, data: Mapping[str, Any]) -> FeishuConfig:
        key = "feishu"
        t = self.table(data, key, {
            "app_id", "app_secret", "mode", "verification_token", "encrypt_key", "listen", "path",
            "domain", "resync", "resync_minutes", "replay_window_seconds", "max_body_bytes"})
        mode = self.get(t, key, "mode", str, "long_connection")
        if mode not in ("long_connection", "webhook"):
            raise self.fail("feishu.mode", f"{mode!r} is not supported",
                            'use "long_connection" or "webhook"')
        app_id = self.get(t, key, "app_id", str, "")
        app_secret = self.secret(t, key, "app_secret")
        if mode == "long_connection" and (not app_id or not app_secret):
            raise self.fail("feishu.app_id" if not app_id else "feishu.app_secret", "is required",
                            "long_connection needs the app credentials from the developer console")
        listen = self.get(t, key, "listen", str, "127.0.0.1:7777")
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self.fail("feishu.listen", f"{listen!r} is not HOST:PORT",
                            'e.g. listen = "127.0.0.1:7777"')
        path = self.get(t, key, "path", str, "/webhook/event")
        if not path.startswith("/"):
            raise self.fail("feishu.path", f"{path!r} must start with '/'")
        domain = self.get(t, key, "domain", str, "https://open.feishu.cn").rstrip("/")
        if urlparse(domain).scheme not in ("http", "https") or not urlparse(domain).hostname:
            raise self.fail("feishu.domain", f"{domain!r} is not an http(s) URL",
                            'e.g. "https://open.feishu.cn"')
        window = self.get(t, key, "replay_window_seconds", int, 300)
        max_body = self.get(t, key, "max_body_bytes", int, 65536)
        if window <= 0 or max_body < 1024:
            raise self.fail("feishu.replay_window_seconds" if window <= 0
                            else "feishu.max_body_bytes", "is too small")
        return FeishuConfig(
            app_id=app_id, app_secret=app_secret, mode=mode,
            verification_token=self.secret(t, key, "verification_token"),
            encrypt_key=self.secret(t, key, "encrypt_key"),
            listen=listen, path=path, domain=domain,
            resync=self.get(t, key, "resync", bool, True),
            resync_minutes=self.minutes(t, key, "resync_minutes", 15),
            replay_window_seconds=window, max_body_bytes=max_body,
        )

    def web(self, data: Mapping[str, Any]) -> WebConfig | None:
        key = "web"
        t = self.table(data, key, {"enabled", "listen", "token"})
        if not self.get(t, key, "enabled", bool, True):
            return None
        listen = self.get(t, key, "listen", str, WEB_LISTEN)
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self.fail("web.listen", f"{listen!r} is not HOST:PORT",
                            f'e.g. listen = "{WEB_LISTEN}"')
        token = self.secret(t, key, "token")
        if not token and not is_loopback(host.strip("[]")):
            raise self.fail("web.token", f"is required when listen ({listen}) is not loopback",
                            'set token = "env:NAME" (or listen on 127.0.0.1)')
        return WebConfig(listen=listen, token=token)

    def mqtt(self, data: Mapping[str, Any]) -> MqttConfig:
        key = "mqtt"
        t = self.table(data, key, {
            "url", "username", "password", "topic_prefix", "homeassistant", "discovery_prefix",
            "birth_topic", "protocol", "ca_file", "cert_file", "key_file", "keepalive",
            "client_id"})
        url = self.get(t, key, "url", str, "")
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise self.fail("mqtt.url", f"{url!r} is not an MQTT URL",
                            'e.g. url = "mqtt://broker.local:1883"')
        prefix = self.get(t, key, "topic_prefix", str, "room-display").strip("/")
        if not prefix or any(c in prefix for c in "#+"):
            raise self.fail("mqtt.topic_prefix", f"{prefix!r} is not a valid topic prefix",
                            "no '#', '+' or empty prefix")
        protocol = self.get(t, key, "protocol", str, "3.1.1")
        if protocol not in ("3.1.1", "5"):
            raise self.fail("mqtt.protocol", f"{protocol!r} is not supported", 'use "3.1.1" or "5"')
        files: dict[str, Path | None] = {}
        for name in ("ca_file", "cert_file", "key_file"):
            raw = self.get(t, key, name, str, "")
            files[name] = self.relative(raw) if raw else None
        password = self.secret(t, key, "password") if "password" in t else None
        return MqttConfig(
            url=url, username=self.get(t, key, "username", str, None) or None,
            password=password, topic_prefix=prefix,
            homeassistant=self.get(t, key, "homeassistant", bool, False),
            discovery_prefix=self.get(t, key, "discovery_prefix", str, "homeassistant"),
            birth_topic=self.birth_topic(t),
            protocol=protocol, ca_file=files["ca_file"], cert_file=files["cert_file"],
            key_file=files["key_file"], keepalive=self.get(t, key, "keepalive", int, 30),
            client_id=self.get(t, key, "client_id", str, None) or None,
        )

    def birth_topic(self, t: Mapping[str, Any]) -> str:
        topic: str = self.get(t, "mqtt", "birth_topic", str, "homeassistant/status")
        if not topic or any(c in topic for c in "#+\x00"):
            raise self.fail("mqtt.birth_topic", f"{topic!r} is not a topic",
                            'Home Assistant\'s default is "homeassistant/status"')
        return topic

    def rooms(self, data: Mapping[str, Any]) -> tuple[RoomConfig, ...]:
        raw = data.get("rooms", [])
        if not isinstance(raw, list):
            raise self.fail("rooms", "must be an array of tables", "write [[rooms]]")
        rooms: list[RoomConfig] = []
        seen_rooms: set[str] = set()
        seen_devices: set[str] = set()
        for i, item in enumerate(raw):
            key = f"rooms[{i}]"
            if not isinstance(item, Mapping):
                raise self.fail(key, "must be a table", "write [[rooms]]")
            unknown = sorted(set(item) - {"open_id", "name", "devices"})
            if unknown:
                raise self.fail(f"{key}.{unknown[0]}", "unknown key",
                                "allowed: devices, name, open_id")
            open_id = self.get(item, key, "open_id", str, "")
            if not open_id:
                raise self.fail(f"{key}.open_id", "is required",
                                'the room\'s Feishu id, e.g. open_id = "omm_..."')
            problem = room_id_problem(open_id)
            if problem:
                raise self.fail(f"{key}.open_id", f"{open_id!r} {problem}",
                                "copy the room's id (omm_...) from Feishu")
            if open_id in seen_rooms:
                raise self.fail(f"{key}.open_id", f"room {open_id} is listed twice",
                                "remove one of the [[rooms]] entries")
            seen_rooms.add(open_id)
            name = self.get(item, key, "name", str, "") or open_id
            devices_raw = item.get("devices", [])
            if not isinstance(devices_raw, list):
                raise self.fail(f"{key}.devices", "must be an array of tables",
                                "write [[rooms.devices]]")
            devices = []
            for j, d in enumerate(devices_raw):
                dev = self.device(d, f"{key}.devices[{j}]")
                if dev.id in seen_devices:
                    raise self.fail(f"{key}.devices[{j}].id", f"device id {dev.id!r} is used twice",
                                    "give every device its own id")
                seen_devices.add(dev.id)
                devices.append(dev)
            rooms.append(RoomConfig(open_id=open_id, name=name, devices=tuple(devices)))
        return tuple(rooms)

    def device(self, d: Any, key: str) -> DeviceConfig:
        allowed = {"id", "kind", "url", "protocol", "size", "palette", "rotation", "language",
                   "full_refresh_every", "full_refresh_hours", "brightness", "colors", "colours",
                   "effects"}
        if not isinstance(d, Mapping):
            raise self.fail(key, "must be a table", "write [[rooms.devices]]")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key",
                            "allowed: " + ", ".join(sorted(allowed)))
        dev_id = self.get(d, key, "id", str, "")
        if not _ID.match(dev_id):
            raise self.fail(f"{key}.id", f"{dev_id!r} is not a valid device id",
                            "1-64 letters, digits, '-', '_' or '.'")
        kind = self.get(d, key, "kind", str, "led")
        if kind not in DEVICE_KINDS:
            raise self.fail(f"{key}.kind", f"{kind!r} is not a device kind", 'use "led" or "eink"')
        url = self.get(d, key, "url", str, "")
        if not url:
            raise self.fail(f"{key}.url", "is required",
                            'a serial port, pyserial URL, "mqtt:TOPIC" or "virtual:DIR"')
        if url.startswith("virtual:"):
            url = "virtual:" + str(self.relative(url[8:] or "."))
        elif url.startswith("mqtt:") and len(url) <= 5:
            raise self.fail(f"{key}.url", "mqtt: needs a topic", 'e.g. "mqtt:lights/room-3f"')
        default_protocol = "json" if url.startswith("mqtt:") else "panel"
        protocol = self.get(d, key, "protocol", str, default_protocol)
        if protocol not in PROTOCOLS:
            raise self.fail(f"{key}.protocol", f"{protocol!r} is not supported",
                            "use " + " | ".join(PROTOCOLS))
        wled_problem = wled_topic_problem(url, protocol)
        if wled_problem is not None:
            raise self.fail(f"{key}.url", wled_problem, 'use a shorter topic, e.g. '
                            '"mqtt:wled/3f-east", and set the same Device Topic in WLED')
        size_raw = self.get(d, key, "size", str, "296x128")
        m = _SIZE.match(size_raw)
        if not m or not (32 <= int(m[1]) <= 2000 and 32 <= int(m[2]) <= 2000):
            raise self.fail(f"{key}.size", f"{size_raw!r} is not a panel size",
                            'write WIDTHxHEIGHT, e.g. size = "800x480"')
        palette_raw = self.get(d, key, "palette", str, "bw")
        try:
            palette = Palette(palette_raw)
        except ValueError:
            raise self.fail(f"{key}.palette", f"{palette_raw!r} is not a palette",
                            'use "bw" or "bwr"') from None
        rotation = self.get(d, key, "rotation", int, 0)
        if rotation not in (0, 90, 180, 270):
            raise self.fail(f"{key}.rotation", f"{rotation} is not supported",
                            "use 0, 90, 180 or 270")
        language = self.get(d, key, "language", str, None)
        if language is not None and language not in LANGUAGES:
            raise self.fail(f"{key}.language", f"{language!r} is not supported",
                            "use " + " | ".join(LANGUAGES))
        brightness = self.get(d, key, "brightness", int, 128)
        if not 0 <= brightness <= 255:
            raise self.fail(f"{key}.brightness", f"{brightness} is out of range", "use 0 to 255")
        return DeviceConfig(
            id=dev_id, kind=kind, url=url, protocol=protocol,
            size=(int(m[1]), int(m[2])), palette=palette, rotation=rotation, language=language,
            full_refresh_every=self.get(d, key, "full_refresh_every", int, 20),
            full_refresh_hours=self.get(d, key, "full_refresh_hours", int, 24),
            brightness=brightness,
            colours=self.colours(d, key),
            effects=self.effects(d, key),
        )

    def colours(self, d: Mapping[str, Any], key: str) -> Mapping[str, tuple[int, int, int]]:
        name = "colours" if "colours" in d else "colors"
        raw = self.get(d, key, name, Mapping, {})
        merged = {**DEFAULT_LED_COLOURS, **raw}
        out: dict[str, tuple[int, int, int]] = {}
        for state, value in merged.items():
            if state not in STATES_WITH_STALE:
                raise self.fail(f"{key}.{name}.{state}", "unknown state",
                                "use " + ", ".join(STATES_WITH_STALE))
            m = _COLOUR.match(value) if isinstance(value, str) else None
            if not m:
                raise self.fail(f"{key}.{name}.{state}", f"{value!r} is not a colour",
                                'write "#rrggbb", e.g. "#00c000"')
            h = m[1]
            out[state] = parse_hex(h)
        return out

    def effects(self, d: Mapping[str, Any], key: str) -> Mapping[str, Effect]:
        raw = self.get(d, key, "effects", Mapping, {})
        merged = {**DEFAULT_LED_EFFECTS, **raw}
        out: dict[str, Effect] = {}
        for state, value in merged.items():
            if state not in STATES_WITH_STALE:
                raise self.fail(f"{key}.effects.{state}", "unknown state",
                                "use " + ", ".join(STATES_WITH_STALE))
            try:
                out[state] = Effect(value)
            except ValueError:
                raise self.fail(f"{key}.effects.{state}", f"{value!r} is not an effect",
                                "use " + " | ".join(e.value for e in Effect)) from None
        return out


def room_id_problem(open_id: str) -> str | None:
    """Why ``open_id`` cannot be a room id, or None. It becomes one MQTT topic level
    (``{prefix}/v1/rooms/{open_id}/schedule``), so '/', '+', '#' and NUL are refused."""
    if not open_id:
        return "is empty"
    bad = sorted({c for c in open_id if c in "/+#\x00"})
    if bad:
        return "contains " + ", ".join(repr(c) for c in bad) + ", which MQTT topics forbid"
    if len(open_id) > 256:
        return "is longer than 256 characters"
    return None


#: WLED keeps its MQTT device topic in ``char mqttDeviceTopic[MQTT_MAX_TOPIC_LEN + 1]`` and
#: reads it from its config cut to that size (wled00/wled.h, cfg.cpp); the default is 32.
WLED_MAX_TOPIC_LEN = 32


def wled_topic_problem(url: str, protocol: str) -> str | None:
    """Why ``mqtt:TOPIC`` cannot be a WLED board's device topic, or None."""
    topic = url.removeprefix("mqtt:")
    if protocol != "wled" or topic == url or len(topic) <= WLED_MAX_TOPIC_LEN:
        return None
    return (f"WLED's MQTT device topic {topic} is {len(topic)} characters, WLED takes at most "
            f"{WLED_MAX_TOPIC_LEN} (MQTT_MAX_TOPIC_LEN)")


def _type_word(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false",
            Mapping: "a table"}.get(kind, kind.__name__)


def system_timezone() -> str:
    """The system's IANA time zone name (``/etc/timezone`` or the ``/etc/localtime`` link),
    ``$TZ`` first; ``UTC`` when none can be found."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        return env
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"
