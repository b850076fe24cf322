"""The broker side of the MQTT trust boundary: a Mosquitto ACL and one password per node.

Every node logs in with its node name as MQTT user name. The ACL lets the bridge alone write
room topics (and Home Assistant discovery); every node reads the schedules and the nodes'
availability, and writes only its own ``{p}/v1/nodes/{name}/…`` topics (its ``online`` and its
last will). ``mqtt:TOPIC`` devices are granted to the node that drives them.

``python -m display.cli.mqtt_acl`` (``scripts/mqtt-credentials``) writes, into ``--out``:
``room-display.acl``, ``passwd`` (hashed by ``mosquitto_passwd``), ``room-display.conf`` (the
lines for ``mosquitto.conf``) and ``credentials/NAME/mqtt-password`` (0600) to copy to each
node's ``/etc/room-display/credentials/mqtt-password``. Existing passwords are kept unless
``--rotate`` is given, so running it again after adding a node changes nothing else.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from display.transport.mqtt_schema import valid_topic_level


@dataclass(frozen=True)
class Site:
    """The nodes of one site and the topics they use."""

    bridges: tuple[str, ...]
    agents: tuple[str, ...] = ()
    devices: tuple[tuple[str, str], ...] = ()  # (node name, topic of an mqtt:TOPIC device)
    prefix: str = "room-display"
    discovery_prefix: str = "homeassistant"
    birth_topic: str = "homeassistant/status"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.bridges + self.agents))


def acl_text(site: Site) -> str:
    """The Mosquitto ``acl_file`` for ``site``."""
    p = site.prefix
    lines = [
        "# room-display: Mosquitto ACL (written by scripts/mqtt-credentials; docs/MQTT.md, Trust)",
        "# Every node logs in with its node name as user name; anonymous clients get nothing.",
        "",
        "# Every node: read schedules, states and availability; write only its own node topics",
        "# (its online/offline availability, the last will included).",
        f"pattern read {p}/v1/rooms/+/schedule",
        f"pattern read {p}/v1/rooms/+/state",
        f"pattern read {p}/v1/nodes/+/availability",
        f"pattern readwrite {p}/v1/nodes/%u/#",
    ]
    for bridge in site.bridges:
        lines += ["", f"# Bridge {bridge}: the only writer of room topics and HA discovery.",
                  f"user {bridge}", f"topic readwrite {p}/v1/rooms/#",
                  f"topic readwrite {site.discovery_prefix}/#", f"topic read {site.birth_topic}",
                  # Several bridges share what they commit (docs/MQTT.md, "Several bridges").
                  f"topic readwrite {p}/v1/bridges/{bridge}/#", f"topic read {p}/v1/bridges/+/#"]
        lines += [f"topic write {topic}" for node, topic in site.devices if node == bridge]
    for agent in site.agents:
        if agent in site.bridges:
            continue
        topics = [topic for node, topic in site.devices if node == agent]
        if topics:
            lines += ["", f"# Agent {agent}: its mqtt: devices.", f"user {agent}"]
            lines += [f"topic write {topic}" for topic in topics]
    return "\n".join(lines) + "\n"


def device_topics(topic: str) -> list[str]:
    """What an ``mqtt:TOPIC`` device publishes: the topic itself and WLED's ``TOPIC/api``."""
    return [topic, f"{topic}/api"]


def write_site(site: Site, out: Path, *, rotate: bool = False,
               passwd_tool: str = "mosquitto_passwd") -> list[Path]:
    """Write the ACL, the password file, the mosquitto.conf lines and the per-node secrets."""
    tool = shutil.which(passwd_tool)
    if tool is None:
        raise SystemExit(f"mqtt-credentials: {passwd_tool} not found (apt-get install mosquitto)")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    acl = out / "room-display.acl"
    acl.write_text(acl_text(site), encoding="utf-8")
    written.append(acl)
    passwd = out / "passwd"
    passwd.write_text("")
    passwd.chmod(0o600)
    for node in site.nodes:
        secret_file = out / "credentials" / node / "mqtt-password"
        if rotate or not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.parent.chmod(0o700)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
            written.append(secret_file)
        password = secret_file.read_text(encoding="utf-8").strip()
        subprocess.run([tool, "-b", str(passwd), node, password], check=True,
                       capture_output=True)
    written.append(passwd)
    conf = out / "room-display.conf"
    conf.write_text("# Add to mosquitto.conf (or put in /etc/mosquitto/conf.d/):\n"
                    "allow_anonymous false\n"
                    f"password_file {passwd.resolve()}\n"
                    f"acl_file {acl.resolve()}\n", encoding="utf-8")
    written.append(conf)
    return written


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    for value in values:
        if not valid_topic_level(value):
            raise SystemExit(f"mqtt-credentials: {what} {value!r} is not a node name")
    return tuple(values)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``scripts/mqtt-credentials``."""
    parser = argparse.ArgumentParser(
        prog="mqtt-credentials",
        description="Write a Mosquitto ACL and one password per room-display node.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--bridge", action="append", default=[], required=True,
                        help="node name of a bridge (repeat for several)")
    parser.add_argument("--agent", action="append", default=[],
                        help="node name of a panel agent (repeat)")
    parser.add_argument("--device", action="append", default=[], metavar="NODE=TOPIC",
                        help="an mqtt:TOPIC device and the node driving it (repeat)")
    parser.add_argument("--prefix", default="room-display", help="[mqtt] topic_prefix")
    parser.add_argument("--discovery-prefix", default="homeassistant",
                        help="[mqtt] discovery_prefix")
    parser.add_argument("--birth-topic", default="homeassistant/status",
                        help="[mqtt] birth_topic")
    parser.add_argument("--rotate", action="store_true", help="new passwords for every node")
    args = parser.parse_args(argv)
    devices: list[tuple[str, str]] = []
    for item in args.device:
        node, sep, topic = item.partition("=")
        if not sep or not topic or any(c in topic for c in "+#\x00"):
            parser.error(f"--device {item!r}: write NODE=TOPIC (no wildcards)")
        devices += [(node, t) for t in device_topics(topic)]
    site = Site(bridges=_names(args.bridge, "--bridge"), agents=_names(args.agent, "--agent"),
                devices=tuple(devices), prefix=args.prefix.strip("/"),
                discovery_prefix=args.discovery_prefix, birth_topic=args.birth_topic)
    for path in write_site(site, args.out, rotate=args.rotate):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
