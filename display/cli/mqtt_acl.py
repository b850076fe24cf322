"""The broker side of the MQTT trust boundary: Mosquitto's settings, ACL and accounts.

Every node logs in with its node name as MQTT user name; Home Assistant and each ``mqtt:``
device get accounts of their own. The ACL gives each account exactly what it uses
(``docs/MQTT.md``, "Trust"): the bridge alone writes room topics and discovery and reads every
node's status; an agent reads schedules and its bridges' availability and writes its own node
topics and its devices' topics; Home Assistant reads discovery, room states and the bridges'
availability and writes its birth topic; a device reads and writes its own topics only.

``python -m display.cli.mqtt_acl`` (``scripts/mqtt-credentials``, as root) writes into
``--out``: ``room-display.acl`` and ``passwd`` (root:mosquitto 0640, so the broker can read
them after dropping to its ``mosquitto`` user and nobody else can), ``room-display.conf`` (for
``/etc/mosquitto/conf.d/``) and ``credentials/USER/mqtt-password`` (root only; to copy to each
node, or to type into Home Assistant or a device). With ``--broker-bridge NAME=PRIMARY`` it also
writes ``room-display-bridge-NAME.conf``: the standby broker's own Mosquitto bridge to the primary,
logging in as account ``NAME`` (for the standby's ``conf.d`` only; docs/MQTT.md, "Two
brokers"). Running it again adds what is new and keeps
every password, and every ``passwd`` line of an account it does not manage; passwords are
hashed here (Mosquitto's ``$7$`` PBKDF2-SHA512) and never appear on a command line.
"""

from __future__ import annotations

import argparse
import base64
import grp
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from display.transport.mqtt_schema import valid_topic_level

#: Where the docs and examples/mosquitto/ put the generated files.
DEFAULT_OUT = Path("/etc/mosquitto/room-display")
#: The largest legitimate MQTT packet: an e-ink image for the largest panel the config accepts
#: (2000x2000, black and red planes: 1,000,000 bytes before deflate, a little more for
#: incompressible pixels) with its header and topic. Schedules are at most 256 KiB, statuses
#: 64 KiB. Mosquitto refuses a bigger packet and disconnects its sender.
MAX_PACKET_BYTES = 1024 * 1024
#: Mosquitto 2.0's password hash: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt (mosquitto_passwd).
HASH_ITERATIONS = 101
SALT_BYTES = 12
#: What WLED reads and writes under its device topic (wled00/mqtt.cpp): it subscribes to the
#: topic, ``/col`` and ``/api``, and publishes ``/g`` (brightness), ``/c`` (colour), ``/v``
#: (XML state) and ``/status`` (online, and offline as its last will).
DEVICE_READS = ("", "/col", "/api")
DEVICE_WRITES = ("/status", "/g", "/c", "/v")
#: The ACL's last generated line: what an administrator writes below it survives a re-run.
KEEP_MARKER = "# Your own lines below this one are kept when scripts/mqtt-credentials runs again."


@dataclass(frozen=True)
class Device:
    """An ``mqtt:TOPIC`` device: the node that drives it and the account it logs in with."""

    node: str
    topic: str
    user: str


@dataclass(frozen=True)
class BrokerBridge:
    """A standby broker's Mosquitto bridge to the primary: its account and where it connects."""

    user: str
    address: str | None = None  # the primary's HOST:PORT; None: the account only


@dataclass(frozen=True)
class Site:
    """The accounts of one site and the topics they use."""

    bridges: tuple[str, ...]
    agents: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    homeassistant: str | None = None  # Home Assistant's user name, None: no account
    prefix: str = "room-display"
    discovery_prefix: str = "homeassistant"
    birth_topic: str = "homeassistant/status"
    broker_bridges: tuple[BrokerBridge, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.bridges + self.agents))

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every user name this site manages, nodes first."""
        ha = (self.homeassistant,) if self.homeassistant else ()
        return tuple(dict.fromkeys(self.nodes + ha + tuple(d.user for d in self.devices)
                                   + tuple(b.user for b in self.broker_bridges)))

    def carried(self) -> tuple[str, ...]:
        """The topic filters a broker bridge carries between two brokers: everything a node,
        Home Assistant or a device of this site publishes or reads."""
        filters = [f"{self.prefix}/#", f"{self.discovery_prefix}/#"]
        if not self.birth_topic.startswith(f"{self.discovery_prefix}/"):
            filters.append(self.birth_topic)
        for device in self.devices:
            filters += [device.topic, f"{device.topic}/#"]
        return tuple(dict.fromkeys(filters))


@dataclass(frozen=True)
class Listener:
    """Where the broker listens: ``port`` on ``address`` (None: every interface)."""

    port: int = 1883
    address: str | None = None


def device_user(topic: str) -> str:
    """The default account of the device on ``topic``: ``lights/3f-east`` -> ``lights-3f-east``."""
    return topic.strip("/").replace("/", "-")


def acl_text(site: Site) -> str:
    """The Mosquitto ``acl_file`` for ``site`` (``user``/``topic`` lines only: no ``pattern``)."""
    p, dp = site.prefix, site.discovery_prefix
    lines = [
        "# room-display: Mosquitto ACL (written by scripts/mqtt-credentials; docs/MQTT.md, Trust)",
        "# One account per node (its node name), for Home Assistant and for each mqtt: device;",
        "# each reads and writes only what it uses. Anonymous clients get nothing.",
    ]

    def own(node: str) -> list[str]:
        # Its availability (online, the last will offline; read back to notice an overwrite)
        # and its status; nothing else under its node topic.
        return [f"topic readwrite {p}/v1/nodes/{node}/availability",
                f"topic write {p}/v1/nodes/{node}/status"]

    def driven(node: str) -> list[str]:
        return [f"topic write {d.topic}{tail}" for d in site.devices if d.node == node
                for tail in ("", "/api")]

    for bridge in site.bridges:
        lines += ["", f"# Bridge {bridge}: the only writer of room topics and discovery; reads",
                  "# every node's status and availability (its fleet view), Home Assistant's",
                  "# birth message, the rooms' check-ins, and the schedules on the broker (with",
                  "# several bridges the next publisher continues their versions upwards); shares",
                  "# what it commits with the other bridges (docs/MQTT.md, Several bridges).",
                  f"user {bridge}", *own(bridge),
                  f"topic readwrite {p}/v1/rooms/+/schedule", f"topic write {p}/v1/rooms/+/state",
                  f"topic read {p}/v1/rooms/+/checkin",
                  f"topic read {p}/v1/nodes/+/status", f"topic read {p}/v1/nodes/+/availability",
                  f"topic write {dp}/binary_sensor/+/occupancy/config",
                  f"topic write {dp}/sensor/+/state/config",
                  f"topic write {dp}/button/+/checkin/config",
                  f"topic write {dp}/button/+/end_meeting/config",
                  f"topic read {site.birth_topic}",
                  f"topic readwrite {p}/v1/bridges/{bridge}/#", f"topic read {p}/v1/bridges/+/#",
                  *driven(bridge)]
    for agent in site.agents:
        if agent in site.bridges:
            continue
        lines += ["", f"# Agent {agent}: reads schedules and its bridges' availability; sends its",
                  "# door buttons' check-ins (docs/CHECKIN.md).",
                  f"user {agent}", *own(agent), f"topic read {p}/v1/rooms/+/schedule",
                  f"topic write {p}/v1/rooms/+/checkin"]
        lines += [f"topic read {p}/v1/nodes/{bridge}/availability" for bridge in site.bridges]
        lines += driven(agent)
    if site.homeassistant:
        lines += ["", f"# Home Assistant ({site.homeassistant}): discovery, room states, the "
                  "bridges' availability;", "# writes its birth message (and its last will) and "
                  "its buttons' check-ins.",
                  f"user {site.homeassistant}",
                  f"topic read {dp}/binary_sensor/+/occupancy/config",
                  f"topic read {dp}/sensor/+/state/config", f"topic read {p}/v1/rooms/+/state",
                  f"topic read {dp}/button/+/checkin/config",
                  f"topic read {dp}/button/+/end_meeting/config",
                  f"topic write {p}/v1/rooms/+/checkin"]
        lines += [f"topic read {p}/v1/nodes/{bridge}/availability" for bridge in site.bridges]
        lines.append(f"topic readwrite {site.birth_topic}")
    for device in site.devices:
        lines += ["", f"# Device {device.user} on {device.topic} (driven by {device.node}): "
                  "its own topics (WLED's set).", f"user {device.user}"]
        lines += [f"topic read {device.topic}{tail}" for tail in DEVICE_READS]
        lines += [f"topic write {device.topic}{tail}" for tail in DEVICE_WRITES]
    for link in site.broker_bridges:
        lines += ["", f"# Broker bridge {link.user}: the standby broker's own bridge to this "
                  "one (docs/MQTT.md,", "# Two brokers) carries every topic of the site both "
                  "ways.", f"user {link.user}"]
        lines += [f"topic readwrite {topic}" for topic in site.carried()]
    return "\n".join([*lines, "", KEEP_MARKER]) + "\n"


def conf_text(out: Path, listener: Listener = Listener()) -> str:
    """``room-display.conf`` for ``/etc/mosquitto/conf.d/``, naming the files in ``out``."""
    where = f"listener {listener.port}" + (f" {listener.address}" if listener.address else "")
    return "\n".join([
        "# room-display: Mosquitto settings (written by scripts/mqtt-credentials; docs/MQTT.md,",
        "# Trust). Copy to /etc/mosquitto/conf.d/ and restart mosquitto.",
        "#",
        "# Plain MQTT for the Pis, on every interface unless an address follows the port.",
        where,
        "# Or TLS (then mqtts://broker:8883 and ca_file on the nodes):",
        "#listener 8883",
        "#cafile /etc/mosquitto/ca_certificates/ca.crt",
        "#certfile /etc/mosquitto/certs/server.crt",
        "#keyfile /etc/mosquitto/certs/server.key",
        "",
        "allow_anonymous false",
        f"password_file {out}/passwd",
        f"acl_file {out}/room-display.acl",
        "# The client id is the user name, so one account cannot take over (and so disconnect)",
        "# another account's connection.",
        "use_username_as_clientid true",
        "# The largest legitimate packet is an e-ink image for a 2000x2000 panel; a bigger one is",
        "# refused and its sender disconnected before it reaches another client.",
        f"max_packet_size {MAX_PACKET_BYTES}",
    ]) + "\n"


def bridge_conf_text(site: Site, bridge: BrokerBridge, password: str) -> str:
    """``room-display-bridge-USER.conf``: the standby's Mosquitto bridge to the primary at
    ``bridge.address``, logging in as ``bridge.user`` (docs/MQTT.md, "Two brokers")."""
    return "\n".join([
        "# room-display: the standby broker's bridge to the primary (written by",
        "# scripts/mqtt-credentials; docs/MQTT.md, Two brokers). On the standby only, readable",
        "# by the broker alone (it holds a password):",
        f"#   sudo install -m 0640 -g mosquitto room-display-bridge-{bridge.user}.conf "
        "/etc/mosquitto/conf.d/",
        f"connection room-display-{bridge.user}",
        f"address {bridge.address}",
        *(f"topic {topic} both 1" for topic in site.carried()),
        "# A bridge connection: the retain flag is kept, nothing is sent back where it came from.",
        "try_private true",
        "cleansession true",
        "restart_timeout 1 5",
        f"remote_username {bridge.user}",
        f"remote_password {password}",
    ]) + "\n"


# -- passwords -------------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``$7$101$SALT$HASH`` as ``mosquitto_passwd`` writes it (base64, PBKDF2-HMAC-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    return (f"$7${HASH_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def password_matches(stored: str, password: str) -> bool:
    """Whether the ``$7$`` hash ``stored`` is of ``password`` (False for any other format)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, wanted = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, wanted)


def merge_passwd(existing: str, passwords: dict[str, str]) -> str:
    """``existing`` with a line for every account in ``passwords``: a line whose hash already
    matches is kept as it is, any other line (accounts added by hand) is kept untouched."""
    lines, seen = [], set()
    for line in existing.splitlines():
        user, sep, stored = line.partition(":")
        if sep and user in passwords:
            seen.add(user)
            if not password_matches(stored, passwords[user]):
                line = f"{user}:{hash_password(passwords[user])}"
        lines.append(line)
    lines += [f"{user}:{hash_password(pw)}" for user, pw in passwords.items() if user not in seen]
    return "\n".join(lines) + "\n"


# -- writing ---------------------------------------------------------------------------------------


def _broker_gid(group: str) -> int | None:
    """The broker's group when we may give files to it (root, group exists), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _write(path: Path, text: str, mode: int, gid: int | None = None) -> None:
    """Replace ``path`` with ``text``, owned root:``gid`` (when given) with ``mode``, never
    readable by anyone else on the way."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if gid is not None:
                os.fchown(f.fileno(), 0, gid)
            os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _directory(path: Path, mode: int, gid: int | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if gid is not None:
        os.chown(path, 0, gid)
    path.chmod(mode)


def _secret(out: Path, user: str, rotate: bool) -> tuple[str, Path | None]:
    """The account's password, made (root-only file) when missing or when rotating."""
    secret_file = out / "credentials" / user / "mqtt-password"
    if not rotate and secret_file.exists():
        return secret_file.read_text(encoding="utf-8").strip(), None
    _directory(secret_file.parent, 0o700)
    password = secrets.token_urlsafe(24)
    _write(secret_file, password + "\n", 0o600)
    return password, secret_file


def write_site(site: Site, out: Path, *, rotate: bool = False, listener: Listener = Listener(),
               group: str = "mosquitto") -> list[Path]:
    """Write the ACL, the password file, the conf.d file and each account's password.

    As root, ``out``, the ACL and ``passwd`` belong to root:``group`` (0750, 0640): the broker
    reads them after dropping to that group's user; ``credentials/`` stays root's (0700).
    """
    out = out.resolve()
    gid = _broker_gid(group)
    _directory(out, 0o750, gid)
    _directory(out / "credentials", 0o700)
    written: list[Path] = []
    passwords: dict[str, str] = {}
    for user in site.accounts:
        passwords[user], made = _secret(out, user, rotate)
        if made is not None:
            written.append(made)
    acl = out / "room-display.acl"
    own = ""
    if acl.exists():
        _, marker, own = acl.read_text(encoding="utf-8").partition(KEEP_MARKER + "\n")
        own = own if marker else ""
    _write(acl, acl_text(site) + own, 0o640, gid)
    passwd = out / "passwd"
    existing = passwd.read_text(encoding="utf-8") if passwd.exists() else ""
    _write(passwd, merge_passwd(existing, passwords), 0o640, gid)
    conf = out / "room-display.conf"
    _write(conf, conf_text(out, listener), 0o644)
    bridges = []
    for bridge in site.broker_bridges:
        if bridge.address is not None:
            path = out / f"room-display-bridge-{bridge.user}.conf"
            _write(path, bridge_conf_text(site, bridge, passwords[bridge.user]), 0o640, gid)
            bridges.append(path)
    return [*written, acl, passwd, conf, *bridges]


# -- command line ----------------------------------------------------------------------------------


def _names(values: Iterable[str], what: str) -> tuple[str, ...]:
    for value in values:
        if not valid_topic_level(value):
            raise SystemExit(f"mqtt-credentials: {what} {value!r} is not a node name "
                             "(letters, digits, - _ .)")
    return tuple(values)


def _device(item: str) -> Device:
    parts = item.split("=")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].strip("/") \
            or any(c in parts[1] for c in "+#\x00"):
        raise SystemExit(f"mqtt-credentials: --device {item!r}: write NODE=TOPIC or "
                         "NODE=TOPIC=USER (no wildcards)")
    node, topic = parts[0], parts[1]
    user = parts[2] if len(parts) == 3 else device_user(topic)
    _names([node], "--device node")
    _names([user], "--device user")
    return Device(node, topic, user)


def _broker_bridge(item: str) -> BrokerBridge:
    user, sep, address = item.partition("=")
    _names([user], "--broker-bridge")
    if any(c.isspace() for c in user):  # it goes into a Mosquitto config line
        raise SystemExit(f"mqtt-credentials: --broker-bridge {user!r}: no spaces in a name")
    if not sep:
        return BrokerBridge(user)
    # HOST, HOST:PORT, [IPV6] or [IPV6]:PORT; a bare IPv6 address has no port.
    bare_v6 = address.count(":") > 1 and not address.startswith("[")
    host, colon, port = ("", "", "") if bare_v6 else address.rpartition(":") \
        if address.rpartition(":")[2].isdigit() else (address, "", "")
    host = address if bare_v6 else host
    if not host.strip("[]") or any(c.isspace() for c in address) \
            or (colon and not 0 < int(port) < 65536):
        raise SystemExit(f"mqtt-credentials: --broker-bridge {item!r}: write NAME or "
                         "NAME=PRIMARY[:PORT] (the primary broker's address; an IPv6 "
                         "address with a port in brackets)")
    # Mosquitto's bridge takes the last colon as the port's, and no brackets.
    return BrokerBridge(user, f"{host.strip('[]')}:{port or 1883}")


def _listener(value: str) -> Listener:
    address, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"mqtt-credentials: --listen {value!r}: write PORT or ADDRESS:PORT")
    return Listener(int(port), address.strip("[]") or None)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``scripts/mqtt-credentials``."""
    parser = argparse.ArgumentParser(
        prog="mqtt-credentials",
        description="Write Mosquitto's settings, ACL and accounts for a room-display site.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder to write into (default {DEFAULT_OUT})")
    parser.add_argument("--bridge", action="append", default=[], required=True,
                        help="node name of a bridge (repeat for several)")
    parser.add_argument("--agent", action="append", default=[],
                        help="node name of a panel agent (repeat)")
    parser.add_argument("--device", action="append", default=[], metavar="NODE=TOPIC[=USER]",
                        help="an mqtt:TOPIC device, the node driving it and the device's own "
                             "user name (default: TOPIC with / as -); repeat")
    parser.add_argument("--homeassistant", metavar="USER",
                        help="an account for Home Assistant with this user name")
    parser.add_argument("--broker-bridge", action="append", default=[],
                        metavar="NAME[=PRIMARY[:PORT]]",
                        help="an account for a standby broker's bridge to the primary; with "
                             "the primary's address, also its room-display-bridge-NAME.conf "
                             "(docs/MQTT.md, Two brokers)")
    parser.add_argument("--listen", default="1883", metavar="[ADDRESS:]PORT",
                        help="where the broker listens (default 1883 on every interface)")
    parser.add_argument("--prefix", default="room-display", help="[mqtt] topic_prefix")
    parser.add_argument("--discovery-prefix", default="homeassistant",
                        help="[mqtt] discovery_prefix")
    parser.add_argument("--birth-topic", default="homeassistant/status",
                        help="[mqtt] birth_topic")
    parser.add_argument("--group", default="mosquitto",
                        help="the broker's group, allowed to read passwd and the ACL")
    parser.add_argument("--rotate", action="store_true", help="new passwords for every account")
    args = parser.parse_args(argv)
    site = Site(bridges=_names(args.bridge, "--bridge"), agents=_names(args.agent, "--agent"),
                devices=tuple(_device(d) for d in args.device),
                homeassistant=_names([args.homeassistant], "--homeassistant")[0]
                if args.homeassistant else None,
                prefix=args.prefix.strip("/"), discovery_prefix=args.discovery_prefix,
                birth_topic=args.birth_topic,
                broker_bridges=tuple(_broker_bridge(b) for b in args.broker_bridge))
    strays = sorted({d.node for d in site.devices} - set(site.nodes))
    if strays:
        raise SystemExit(f"mqtt-credentials: --device names {', '.join(strays)}, which is "
                         "neither a --bridge nor an --agent")
    clash = set(site.nodes) & ({site.homeassistant} | {d.user for d in site.devices}
                               | {b.user for b in site.broker_bridges})
    if clash:
        raise SystemExit(f"mqtt-credentials: {', '.join(sorted(clash))}: a node name cannot "
                         "also be Home Assistant's, a device's or a broker bridge's user name")
    links = {b.user for b in site.broker_bridges}
    taken = links & ({site.homeassistant} | {d.user for d in site.devices})
    if taken or len(links) < len(site.broker_bridges):
        names = ", ".join(sorted(taken)) or "a name"
        raise SystemExit(f"mqtt-credentials: --broker-bridge {names}: give each broker bridge "
                         "a user name of its own")
    listener = _listener(args.listen)
    try:
        paths = write_site(site, args.out, rotate=args.rotate, listener=listener,
                           group=args.group)
    except OSError as exc:
        raise SystemExit(f"mqtt-credentials: {exc.filename or args.out}: {exc.strerror}; "
                         "run it as root") from None
    for path in paths:
        print(path)
    if _broker_gid(args.group) is None:
        print(f"mqtt-credentials: note: not root or no group {args.group!r}: give "
              f"{args.out}/passwd and room-display.acl to the broker's group (0640)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
