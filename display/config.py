"""Load and validate the TOML configuration into frozen values.

Every problem becomes one :class:`~display.errors.ConfigError` line naming the file, the key and
the fix. Unknown keys are errors too: a typo must not silently fall back to a default.
Secrets may be written ``"env:NAME"`` or ``"file:/path"``; they are resolved here and wrapped in
:class:`Secret` so they never reach a log line, ``status`` or MQTT by accident.

The schema is said once: each section is a frozen dataclass whose fields are its keys, with
their defaults, types and checks (:mod:`display.config_schema`); the closed sets are enums.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from display import config_schema as schema
from display.config_schema import Invalid, rule, setting
from display.errors import ConfigError
from display.hours import ALWAYS, HoursError, OpenHours, parse_open_hours
from display.model import State
from display.outputs import RGB, Effect, Palette, parse_hex

CONFIG_ENV = "ROOM_DISPLAY_CONFIG"
SYSTEM_CONFIG = Path("/etc/room-display/config.toml")
LOCAL_CONFIG = Path("room-display.toml")
#: ``[feishu] replay_window_seconds``: default (past Feishu's last retry) and largest value. The
#: store remembers a uuid 24 h (``store.DEDUPE_KEEP``, by the wall clock): half of that leaves
#: 12 h for a clock stepping forward before a replay inside the window could be applied again.
REPLAY_WINDOW = 8 * 3600
MAX_REPLAY_WINDOW = 12 * 3600


class Language(StrEnum):
    """What a sign (and the status page) speaks."""

    ZH = "zh"
    EN = "en"
    ZH_EN = "zh+en"


class ClockMode(StrEnum):
    """``[node] clock``: wait for systemd-timesyncd's sync flag (``auto``) or not (``trust``)."""

    AUTO = "auto"
    TRUST = "trust"


class LedPalette(StrEnum):
    """The LED colours: ``default`` (green, amber, red, magenta) or ``colourblind`` (Okabe-Ito's
    blue, yellow, vermillion and reddish purple, apart under red-green colour blindness)."""

    DEFAULT = "default"
    COLOURBLIND = "colourblind"


class FeishuMode(StrEnum):
    """How events arrive from Feishu."""

    LONG_CONNECTION = "long_connection"
    WEBHOOK = "webhook"


class MqttProtocol(StrEnum):
    """MQTT protocol version spoken to the broker."""

    V311 = "3.1.1"
    V5 = "5"


class CheckinMode(StrEnum):
    """``[checkin] mode``: what happens to a booking nobody checked in to."""

    OFF = "off"
    DRY_RUN = "dry-run"  # logged and shown in status, nothing released
    RELEASE = "release"  # released in Feishu (NOT_CHECK_IN)


class DeviceKind(StrEnum):
    """What a panel shows: a light, or an e-ink sign."""

    LED = "led"
    EINK = "eink"


class DeviceProtocol(StrEnum):
    """How a panel is spoken to (README "Door panels")."""

    PANEL = "panel"
    WLED = "wled"
    JSON = "json"


#: The states a device's ``colours`` and ``effects`` may name.
STATES_WITH_STALE = (*(s.value for s in State), "stale")

#: What a device's ``colours`` may name: the states, stale, and quiet hours (``closed``).
COLOUR_KEYS = (*STATES_WITH_STALE, "closed")

#: What an unread secret holds when secrets are not resolved (never sent anywhere).
UNRESOLVED = "<unresolved>"
SECRET_SCHEMES = ("env:", "file:", "credential:")
# An empty secret file: a service holds the copy systemd made when it started (LoadCredential=).
EMPTY_SECRET_FIX = ("write the secret there (one line); a running service reads credentials "
                    "only when it starts: systemctl restart room-display")


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


# -- checks of single values (the parser adds file and key to what they raise) -----------------

_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_COLOUR = re.compile(r"^#([0-9a-fA-F]{6})$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


_minutes = rule(lambda v: 0 <= v <= 24 * 60, "{value} is out of range", "use 0 to 1440 minutes")
_url_path = rule(lambda v: v.startswith("/"), "{value!r} must start with '/'")
_mqtt_url = rule(lambda v: urlparse(v).scheme in ("mqtt", "mqtts") and urlparse(v).hostname,
                 "{value!r} is not an MQTT URL", 'e.g. url = "mqtt://broker.local:1883"')
_birth_topic = rule(lambda v: v and not any(c in v for c in "#+\x00"), "{value!r} is not a topic",
                    'Home Assistant\'s default is "homeassistant/status"')
_device_id = rule(_ID.match, "{value!r} is not a valid device id",
                  "1-64 letters, digits, '-', '_' or '.'")
_rotation = rule(lambda v: v in (0, 90, 180, 270), "{value} is not supported",
                 "use 0, 90, 180 or 270")
_brightness = rule(lambda v: 0 <= v <= 255, "{value} is out of range", "use 0 to 255")


def _node_name(value: str) -> str:
    name = value or socket.gethostname()
    if not _ID.match(name):
        raise Invalid(f"{name!r} is not a valid node name", "use letters, digits, '-', '_' or '.'")
    return name


def _timezone(value: str) -> str:
    tz = value or system_timezone()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        if not value and os.environ.get("TZ"):
            # The zone came from the environment, not the file: name what to fix.
            raise ConfigError("TZ", "", f"unknown time zone {tz!r} in the TZ environment "
                              "variable", 'unset TZ or set [node] timezone, e.g. '
                              '"Asia/Shanghai"') from None
        raise Invalid(f"unknown time zone {tz!r}",
                      'use an IANA name such as "Asia/Shanghai"') from None
    return tz


def _listen(default: str) -> Any:
    """A ``HOST:PORT`` setting whose fix shows its default."""
    def check(value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise Invalid(f"{value!r} is not HOST:PORT", f'e.g. listen = "{default}"')
        return value
    return setting(default, check=check)


def _http_url(value: str) -> str:
    url = value.rstrip("/")
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
        raise Invalid(f"{url!r} is not an http(s) URL", 'e.g. "https://open.feishu.cn"')
    return url


def _topic_prefix(value: str) -> str:
    prefix = value.strip("/")
    if not prefix or any(c in prefix for c in "#+"):
        raise Invalid(f"{prefix!r} is not a valid topic prefix", "no '#', '+' or empty prefix")
    return prefix


def _open_hours(value: str) -> OpenHours:
    try:
        return parse_open_hours(value)
    except HoursError as exc:
        raise Invalid(str(exc), EXAMPLE_HOURS) from None


EXAMPLE_HOURS = 'e.g. "Mon-Fri 08:00-20:00, Sat 09:00-13:00", or "always"'


def _closed_led(value: str) -> str:
    if value != "off" and not _COLOUR.match(value):
        raise Invalid(f"{value!r} is not \"off\" or a colour", 'e.g. "off" or "#100800"')
    return value.lower()


def _or_none(value: str) -> str | None:
    return value or None


def _room_id(value: str) -> str:
    if not value:
        raise Invalid("is required", 'the room\'s Feishu id, e.g. open_id = "omm_..."')
    problem = room_id_problem(value)
    if problem:
        raise Invalid(f"{value!r} {problem}", "copy the room's id (omm_...) from Feishu")
    return value


def _device_url(value: str) -> str:
    if not value:
        raise Invalid("is required", 'a serial port, pyserial URL, "mqtt:TOPIC" or "virtual:DIR"')
    if value.startswith("mqtt:") and len(value) <= 5:
        raise Invalid("mqtt: needs a topic", 'e.g. "mqtt:lights/room-3f"')
    return value


def _replay_window(value: int) -> int:
    if value <= 0:
        raise Invalid("is too small")
    if value > MAX_REPLAY_WINDOW:  # a replay older than the store's memory of uuids
        raise Invalid(f"{value} is too large (at most {MAX_REPLAY_WINDOW}: delivery ids are "
                      "remembered 24 h)", f"leave it out (default {REPLAY_WINDOW}, 8 h)")
    return value


def _size(value: str) -> tuple[int, int]:
    m = _SIZE.match(value)
    if not m or not (32 <= int(m[1]) <= 2000 and 32 <= int(m[2]) <= 2000):
        raise Invalid(f"{value!r} is not a panel size", 'write WIDTHxHEIGHT, e.g. size = "800x480"')
    return int(m[1]), int(m[2])


# -- the schema: one frozen dataclass per section, one field per key ---------------------------
# Field order is the order keys are checked in (the first problem found is the one reported).


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """``[node]``: who this node is and how it shows time."""

    name: str = setting(check=_node_name)  # default: the host name
    timezone: str = setting(check=_timezone)  # default: the system's ($TZ first)
    language: Language = Language.EN
    state_dir: Path  # default: $STATE_DIRECTORY, else state/ beside the file
    clock: ClockMode = ClockMode.AUTO
    #: Outside these hours rooms are in quiet hours (README "Quiet hours"); rooms may override.
    open_hours: OpenHours = setting(ALWAYS, check=_open_hours)
    closed_led: str = setting("off", check=_closed_led)  # LEDs in quiet hours: off or a colour
    led_palette: LedPalette = setting(LedPalette.DEFAULT, what="an LED palette")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def closed_colour(self) -> tuple[int, int, int] | None:
        """The LEDs' colour in quiet hours; None: off."""
        return None if self.closed_led == "off" else parse_hex(self.closed_led)


@dataclass(frozen=True, kw_only=True)
class OccupancyConfig:
    """``[occupancy]``: thresholds of the README's "Occupancy", in minutes."""

    soon_minutes: int = setting(10, check=_minutes)
    ending_minutes: int = setting(10, check=_minutes)
    stale_after_minutes: int = setting(10, check=_minutes)


@dataclass(frozen=True, kw_only=True)
class FeishuConfig:
    """``[feishu]``: present only on the bridge (or a single box)."""

    mode: FeishuMode = FeishuMode.LONG_CONNECTION
    app_id: str = ""  # required for long_connection and for re-sync
    app_secret: Secret = Secret("")  # required with app_id
    listen: str = _listen("127.0.0.1:7777")
    path: str = setting("/webhook/event", check=_url_path)
    domain: str = setting("https://open.feishu.cn", check=_http_url)
    # 8 h: Feishu's last retry comes ~7.1 h after the first delivery; at most 12 h, well inside
    # the 24 h the store remembers uuids for, so a replay inside the window is a duplicate.
    replay_window_seconds: int = setting(REPLAY_WINDOW, check=_replay_window)
    max_body_bytes: int = setting(65536, check=rule(lambda v: v >= 1024, "is too small"))
    verification_token: Secret = Secret("")
    encrypt_key: Secret = Secret("")
    resync: bool = True  # pull free/busy at start, after reconnects and every resync_minutes
    resync_minutes: int = setting(15, check=_minutes)  # 0 = off (README), as is resync = false
    #: Room names follow Feishu's room directory (re-read with each re-sync pass).
    room_names: bool = False

    @property
    def resync_enabled(self) -> bool:
        """Re-sync runs unless ``resync = false`` or ``resync_minutes = 0`` (README: 0 = off)."""
        return self.resync and self.resync_minutes > 0

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """``[mqtt]``: the broker every node of a site shares."""

    #: One broker URL, or a list: the node uses the first it can reach and moves to the next
    #: when it loses it (two brokers joined by Mosquitto's bridge; docs/MQTT.md). Read by
    #: :meth:`_Parser.mqtt`: a TOML string or an array of strings.
    url: tuple[str, ...] = setting(custom=True)
    topic_prefix: str = setting("room-display", check=_topic_prefix)
    protocol: MqttProtocol = MqttProtocol.V311
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    password: Secret | None = None
    username: str | None = setting(None, check=_or_none)
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    #: Home Assistant's birth topic is its own setting in HA (MQTT options), not derived from
    #: the discovery prefix; when HA publishes ``online`` there, discovery is sent again.
    birth_topic: str = setting("homeassistant/status", check=_birth_topic)
    keepalive: int = 30
    client_id: str | None = setting(None, check=_or_none)

    @property
    def tls(self) -> bool:
        return self.url[0].startswith("mqtts://")

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        """Every broker's ``(host, port)``, in the order the node tries them."""
        default_port = 8883 if self.tls else 1883
        return tuple((urlparse(u).hostname or "localhost", urlparse(u).port or default_port)
                     for u in self.url)

    @property
    def host(self) -> str:
        """The first broker's host (``check`` and ``status`` name it)."""
        return self.brokers[0][0]

    @property
    def port(self) -> int:
        return self.brokers[0][1]


_window = rule(lambda v: 1 <= v <= 24 * 60, "{value} is out of range", "use 1 to 1440 minutes")


@dataclass(frozen=True, kw_only=True)
class CheckinConfig:
    """``[checkin]``: releasing rooms nobody checked in to (see :mod:`display.checkin`)."""

    mode: CheckinMode = setting(CheckinMode.OFF, what="a check-in mode")
    window_minutes: int = setting(10, check=_window)
    rooms: tuple[str, ...] = setting((), custom=True)  # allow-list; empty: every room


WEB_LISTEN = "127.0.0.1:8470"
#: ``[web] enabled = false`` turns the page off: the one key that is no field (``Config.web``
#: is then None).
WEB_SWITCH = "enabled"


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """``[web]``: the read-only status page (on by default except on a panel agent)."""

    listen: str = _listen(WEB_LISTEN)
    token: Secret = Secret("")  # required when listen is not loopback

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
#: ``led_palette = "colourblind"``: Okabe and Ito's colour-blind-safe set (blue, yellow,
#: vermillion, reddish purple), told apart under deuteranopia and protanopia by lightness and the
#: blue-yellow axis that those viewers keep.
COLOURBLIND_LED_COLOURS: Mapping[str, str] = {
    "free": "#0072b2",
    "soon": "#f0e442",
    "busy": "#d55e00",
    "ending": "#cc79a7",
}
LED_PALETTES: Mapping[str, Mapping[str, str]] = {
    "default": DEFAULT_LED_COLOURS, "colourblind": COLOURBLIND_LED_COLOURS}
DEFAULT_LED_EFFECTS: Mapping[str, str] = {
    "free": "steady",
    "soon": "pulse",
    "busy": "steady",
    "ending": "pulse",
    "stale": "blink",
}


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """``[[rooms.devices]]``: one panel. Kind-specific keys are ignored by the other kind."""

    id: str = setting(check=_device_id)
    kind: DeviceKind = setting(DeviceKind.LED, what="a device kind")
    url: str = setting(check=_device_url)
    protocol: DeviceProtocol = DeviceProtocol.PANEL  # "json" when the url is mqtt:TOPIC
    # e-ink
    size: tuple[int, int] = setting((296, 128), check=_size)
    palette: Palette = setting(Palette.BW, what="a palette")
    rotation: int = setting(0, check=_rotation)
    language: Language | None = None  # None: the node's
    # LED
    brightness: int = setting(128, check=_brightness)
    led_palette: LedPalette | None = setting(None, what="an LED palette")  # None: the node's
    # e-ink again (checked after brightness, as ever)
    full_refresh_every: int = 20
    full_refresh_hours: int = 24
    # LED: merged with DEFAULT_LED_COLOURS / DEFAULT_LED_EFFECTS by the parser
    colours: Mapping[str, tuple[int, int, int]] = setting(factory=dict, aliases=("colors",),
                                                          custom=True)
    effects: Mapping[str, Effect] = setting(factory=dict, custom=True)

    @property
    def scheme(self) -> str:
        """``virtual``, ``mqtt`` or ``serial`` (any pyserial URL or path)."""
        if self.url.startswith("virtual:"):
            return "virtual"
        if self.url.startswith("mqtt:"):
            return "mqtt"
        return "serial"


@dataclass(frozen=True, kw_only=True)
class DetailsConfig:
    """``[details]``: what a sign may say about who booked a room and why; off by default.

    Only the node holding the Feishu connection fetches them; a room may override either key
    (``[rooms.details]``).
    """

    organizer: bool = False
    title: bool = False

    @property
    def any(self) -> bool:
        """True when at least one detail is shown."""
        return self.organizer or self.title


@dataclass(frozen=True)
class RoomConfig:
    """``[[rooms]]``: a Feishu meeting room and the panels by its door."""

    open_id: str = setting(check=_room_id)
    name: str = ""  # "": the open_id
    devices: tuple[DeviceConfig, ...] = setting((), custom=True)
    open_hours: OpenHours | None = setting(None, check=_open_hours)  # None: the node's
    details: DetailsConfig | None = setting(None, custom=True)  # None: the node's [details]
    # Per-room override of [checkin] (None: the section's value).
    checkin: CheckinMode | None = setting(None, what="a check-in mode")
    checkin_window_minutes: int | None = setting(None, check=_window)

    @property
    def named(self) -> bool:
        """False when the config gives no ``name`` (it reads as the open id): an agent then
        shows the name its bridge publishes."""
        return self.name != self.open_id


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one node; each field but ``path`` is a section."""

    path: Path
    node: NodeConfig
    occupancy: OccupancyConfig
    rooms: tuple[RoomConfig, ...]
    feishu: FeishuConfig | None = None
    mqtt: MqttConfig | None = None
    web: WebConfig | None = None  # None: no web page (an agent without [web], or enabled = false)
    details: DetailsConfig = DetailsConfig()
    checkin: CheckinConfig = CheckinConfig()

    @property
    def role(self) -> str:
        """``bridge`` (Feishu + broker), ``single`` (Feishu, no broker) or ``agent``."""
        if self.feishu is None:
            return "agent"
        return "bridge" if self.mqtt is not None else "single"

    @functools.cached_property
    def _rooms_by_id(self) -> dict[str, RoomConfig]:
        # Made on first use (a frozen dataclass keeps it in its own __dict__): looked up per
        # event and per status, so not a scan of 20,000 rooms each time.
        return {r.open_id: r for r in self.rooms}

    def room(self, open_id: str) -> RoomConfig | None:
        """The room with this ``open_id``, or None."""
        return self._rooms_by_id.get(open_id)

    def hours(self, room: RoomConfig) -> OpenHours:
        """The room's opening hours: its own, else the node's."""
        return room.open_hours if room.open_hours is not None else self.node.open_hours

    def room_details(self, room: RoomConfig) -> DetailsConfig:
        """What the room may show: its own ``[rooms.details]`` keys, else the node's."""
        return room.details if room.details is not None else self.details

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


class _Parser(schema.Reader):
    """Reads the whole tree; adds secrets and paths beside the file to the generic reader."""

    def __init__(self, path: Path, resolve_secrets: bool = True) -> None:
        super().__init__(path)
        self.resolve_secrets = resolve_secrets

    def convert(self, raw: Any, kind: type, f: Field[Any]) -> Any:
        """Secrets resolved, paths beside the file (``""``: none), enums as the reader does."""
        if kind is Secret:
            return self.secret(raw)
        if kind is Path:
            return self.relative(raw) if raw else None
        return super().convert(raw, kind, f)

    def secret(self, raw: str) -> Secret:
        if not self.resolve_secrets and raw.startswith(SECRET_SCHEMES):
            return Secret(UNRESOLVED)
        if raw.startswith("env:"):
            var = raw[4:]
            if var not in os.environ:
                raise Invalid(f"environment variable {var} is not set",
                              f"export {var}=... or use file:/path")
            return Secret(os.environ[var])
        if raw.startswith("file:"):
            file = self.relative(raw[5:])
            try:
                return Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise Invalid(f"cannot read secret file {file}: {exc.strerror}",
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
                raise Invalid(f"cannot read credential {file}: {exc.strerror}", fix) from exc
        return Secret(raw)

    def relative(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    # -- sections: what one key alone cannot say --

    def config(self, data: Mapping[str, Any]) -> Config:
        top = schema.keys(Config) - {"path"}
        unknown = sorted(set(data) - top)
        if unknown:
            raise self.fail(unknown[0], "unknown section", "allowed: " + ", ".join(sorted(top)))
        node = self.node(data)
        occupancy = OccupancyConfig(**self.section(data, "occupancy", OccupancyConfig))
        feishu = self.feishu(data) if "feishu" in data else None
        mqtt = self.mqtt(data) if "mqtt" in data else None
        details = DetailsConfig(**self.section(data, "details", DetailsConfig))
        rooms = self.rooms(data, node, details)
        # The page is on by default where Feishu comes in (bridge, single box); a panel agent
        # serves it only when its config has a [web] section.
        web = self.web(data) if "web" in data or feishu is not None else None
        checkin = self.checkin(data, rooms)
        releasing = checkin.mode is CheckinMode.RELEASE or any(
            r.checkin is CheckinMode.RELEASE for r in rooms)
        if releasing and feishu is not None and (not feishu.app_id or not feishu.app_secret):
            raise self.fail("checkin.mode", "releasing needs [feishu] app_id and app_secret",
                            'copy them from the developer console, or use mode = "dry-run"')
        return Config(path=self.path, node=node, occupancy=occupancy, rooms=rooms,
                      feishu=feishu, mqtt=mqtt, web=web, details=details,
                      checkin=checkin)

    def checkin(self, data: Mapping[str, Any], rooms: tuple[RoomConfig, ...]) -> CheckinConfig:
        t = self.table(data, "checkin", schema.keys(CheckinConfig))
        values = self.values(t, "checkin", CheckinConfig)
        raw = t.get("rooms", [])
        if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
            raise self.fail("checkin.rooms", f"must be a list of room ids, got {raw!r}",
                            'e.g. rooms = ["omm_..."] (leave it out for every room)')
        known = {r.open_id for r in rooms}
        stray = [r for r in raw if r not in known]
        if stray:
            raise self.fail("checkin.rooms", f"room {stray[0]} is not in [[rooms]]",
                            "list open_ids of configured rooms")
        return CheckinConfig(**values, rooms=tuple(raw))

    def node(self, data: Mapping[str, Any]) -> NodeConfig:
        values = self.section(data, "node", NodeConfig)
        if values["state_dir"] is None:
            env = os.environ.get("STATE_DIRECTORY")
            values["state_dir"] = Path(env.split(":")[0]) if env else self.path.parent / "state"
        return NodeConfig(**values)

    def feishu(self, data: Mapping[str, Any]) -> FeishuConfig:
        t = self.table(data, "feishu", schema.keys(FeishuConfig))
        # Missing credentials, the usual mistake, are named before any key after them.
        first = ("mode", "app_id", "app_secret")
        values = self.values(t, "feishu", FeishuConfig, first)
        app_id, app_secret = values["app_id"], values["app_secret"]
        if values["mode"] == FeishuMode.LONG_CONNECTION and (not app_id or not app_secret):
            key = "app_id" if not app_id else "app_secret"
            empty = self.empty_reference(t, key)
            raise self.fail(f"feishu.{key}", "is required" + empty, EMPTY_SECRET_FIX if empty else
                            "long_connection needs the app credentials from the developer console")
        rest = [f.name for f in fields(FeishuConfig) if f.name not in first]
        feishu = FeishuConfig(**values, **self.values(t, "feishu", FeishuConfig, rest))
        token = feishu.verification_token.reveal()
        if token != token.strip():  # never equal to what Feishu sends: every event refused
            raise self.fail("feishu.verification_token",
                            "is only whitespace" if not token.strip()
                            else "has whitespace at its start or end",
                            "copy the token from the app's Events page")
        return feishu

    def mqtt(self, data: Mapping[str, Any]) -> MqttConfig:
        t = self.table(data, "mqtt", schema.keys(MqttConfig))
        raw = t.get("url", "")
        if not isinstance(raw, str | list):
            raise self.fail("mqtt.url", f"must be a string, got {raw!r}")
        urls = raw if isinstance(raw, list) else [raw]
        if not urls:
            raise self.fail("mqtt.url", "is an empty list", 'e.g. url = "mqtt://broker.local:1883"')
        for url in urls:
            if not isinstance(url, str):
                raise self.fail("mqtt.url", f"must be a string or a list of strings, got {url!r}")
            try:
                _mqtt_url(url)
            except Invalid as exc:
                raise self.fail("mqtt.url", exc.problem, exc.fix) from None
        if len({u.startswith("mqtts://") for u in urls}) > 1:
            raise self.fail("mqtt.url", "mixes mqtt:// and mqtts://",
                            "use TLS for every broker or for none")
        if len(set(urls)) < len(urls):
            raise self.fail("mqtt.url", "names a broker twice", "list each broker once")
        return MqttConfig(url=tuple(urls), **self.values(t, "mqtt", MqttConfig))

    def web(self, data: Mapping[str, Any]) -> WebConfig | None:
        t = self.table(data, "web", schema.keys(WebConfig) | {WEB_SWITCH})
        if not self.get(t, "web", WEB_SWITCH, bool, True):
            return None
        web = WebConfig(**self.values(t, "web", WebConfig))
        if not web.token and not is_loopback(web.host):
            empty = self.empty_reference(t, "token")
            raise self.fail("web.token", f"is required when listen ({web.listen}) is not loopback"
                            + empty, EMPTY_SECRET_FIX if empty else
                            'set token = "env:NAME" (or listen on 127.0.0.1)')
        return web

    def empty_reference(self, t: Mapping[str, Any], key: str) -> str:
        """``", but credential:NAME is empty"`` when ``key`` names a secret that resolved empty.

        "Not set" would mislead there: the key is in the file, its secret is what is missing
        (often a credential written after the service started, which reads them at start).
        """
        raw = t.get(key)
        if self.resolve_secrets and isinstance(raw, str) and raw.startswith(SECRET_SCHEMES):
            return f", but {raw} is empty"
        return ""

    def rooms(self, data: Mapping[str, Any], node: NodeConfig,
              details: DetailsConfig = DetailsConfig()) -> tuple[RoomConfig, ...]:
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
            self.known(item, key, schema.keys(RoomConfig))
            open_id = self.values(item, key, RoomConfig, ["open_id"])["open_id"]
            if open_id in seen_rooms:
                raise self.fail(f"{key}.open_id", f"room {open_id} is listed twice",
                                "remove one of the [[rooms]] entries")
            seen_rooms.add(open_id)
            given = self.values(item, key, RoomConfig, ["name"])["name"]
            name = given or open_id
            hours = self.values(item, key, RoomConfig, ["open_hours"])["open_hours"]
            devices_raw = item.get("devices", [])
            if not isinstance(devices_raw, list):
                raise self.fail(f"{key}.devices", "must be an array of tables",
                                "write [[rooms.devices]]")
            devices = []
            for j, d in enumerate(devices_raw):
                dev = self.device(d, f"{key}.devices[{j}]", node)
                if dev.id in seen_devices:
                    raise self.fail(f"{key}.devices[{j}].id", f"device id {dev.id!r} is used twice",
                                    "give every device its own id")
                seen_devices.add(dev.id)
                devices.append(dev)
            own = None
            if "details" in item:  # only the keys it names override the node's [details]
                t = self.table(item, f"{key}.details", schema.keys(DetailsConfig))
                values = self.values(t, f"{key}.details", DetailsConfig)
                own = DetailsConfig(**{k: values[k] if k in t else getattr(details, k)
                                       for k in values})
            override = self.values(item, key, RoomConfig, ["checkin", "checkin_window_minutes"])
            rooms.append(RoomConfig(open_id=open_id, name=name, devices=tuple(devices),
                                    open_hours=hours, details=own, **override))
        return tuple(rooms)

    def device(self, d: Any, key: str, node: NodeConfig) -> DeviceConfig:
        if not isinstance(d, Mapping):
            raise self.fail(key, "must be a table", "write [[rooms.devices]]")
        values = self.values(self.known(d, key, schema.keys(DeviceConfig)), key, DeviceConfig)
        url = values["url"]
        if url.startswith("virtual:"):
            values["url"] = "virtual:" + str(self.relative(url[8:] or "."))
        elif url.startswith("mqtt:") and "protocol" not in d:
            values["protocol"] = DeviceProtocol.JSON  # a topic carries the state JSON by default
        wled_problem = wled_topic_problem(values["url"], values["protocol"])
        if wled_problem is not None:
            raise self.fail(f"{key}.url", wled_problem, 'use a shorter topic, e.g. '
                            '"mqtt:wled/3f-east", and set the same Device Topic in WLED')
        base = dict(LED_PALETTES[values["led_palette"] or node.led_palette])
        if node.closed_led != "off":
            base["closed"] = node.closed_led  # quiet hours (a device's colours.closed wins)
        return DeviceConfig(**values, colours=self.colours(d, key, base),
                            effects=self.effects(d, key))

    def colours(self, d: Mapping[str, Any], key: str,
                base: Mapping[str, str] = DEFAULT_LED_COLOURS) -> Mapping[str, RGB]:
        name = "colours" if "colours" in d else "colors"
        raw = self.get(d, key, name, Mapping, {})
        merged = {**base, **raw}
        out: dict[str, tuple[int, int, int]] = {}
        for state, value in merged.items():
            if state not in COLOUR_KEYS:
                raise self.fail(f"{key}.{name}.{state}", "unknown state",
                                "use " + ", ".join(COLOUR_KEYS))
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
                out[state] = schema.choose(Effect, value, "an effect")
            except Invalid as exc:
                raise self.fail(f"{key}.effects.{state}", exc.problem, exc.fix) from None
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
