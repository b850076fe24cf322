"""``room-display check``: can this node reach what its config names?

Each check yields ``(line, ok)``; the CLI prints them and exits 1 if any failed. Checks are quick
(a few seconds at most each) and never change anything.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from display.config import Config, DeviceConfig, FeishuConfig, MqttConfig
from display.errors import RoomDisplayError

TIMEOUT = 5.0
#: How long after a node connects its status is on the broker (fleet.CHECK_SECONDS, and some).
FLEET_SETTLE = 3.0
#: Linux's major number of /dev/null, /dev/zero, /dev/random...: never a serial port.
_MEMORY_DEVICES = 1


def run_checks(config: Config) -> Iterator[tuple[str, bool]]:
    """Every check that applies to this config, in a stable order.

    Whatever ``run`` would refuse or fail on is named here first, with ``ok`` False.
    """
    if config.feishu is not None:
        yield from check_feishu_settings(config.feishu)
        yield from check_listen_clash(config)
        yield check_feishu(config.feishu)
    if config.mqtt is not None:
        running = _running(config)
        # The broker binds client ids to user names (docs/MQTT.md, Trust): a second connection
        # with the node's account would take over the running node's own connection, so the
        # broker it uses is reported from its status; the others of the list (standbys, where
        # it has no connection to take over) are probed: a standby that is down is worth knowing.
        in_use = None
        if running is not None:
            in_use = running["node"]["mqtt"].get("broker")
            yield check_broker_of_running(config.mqtt, running)
        for broker in config.mqtt.brokers:
            if running is None or f"{broker[0]}:{broker[1]}" != in_use:
                yield check_broker(config.mqtt, config.node.name, broker)
        if config.feishu is not None:
            yield check_bridge_reads_status(config, running)
    for _room, device in config.devices():
        if device.scheme == "mqtt" and config.mqtt is None:
            yield (f"device {device.id} ({device.kind}, {device.url}): mqtt: devices need an "
                   "[mqtt] section with the broker's url", False)
            continue
        yield check_device(device)
    yield from check_shared_ports(config)
    state = config.node.state_dir
    yield _writable(state, f"state directory {state}")
    yield check_store(config)


def check_feishu_settings(feishu: FeishuConfig) -> Iterator[tuple[str, bool]]:
    """Settings the intake child refuses at start (it would be restarted forever)."""
    if feishu.mode == "webhook" and not feishu.verification_token:
        yield ("Feishu webhook: no verification_token; every event would be refused (set "
               "[feishu] verification_token from the app's Events page)", False)
    if feishu.mode == "webhook" and feishu.encrypt_key:
        from display.intake.feishu.checks import short_window

        note = short_window(feishu.replay_window_seconds)
        if note is not None:
            yield f"Feishu webhook: {note}", False


def _same_socket(a: str, b: str) -> bool:
    """Would binding ``HOST:PORT`` ``a`` and then ``b`` collide? Same port, and the same address
    or a wildcard (``0.0.0.0`` takes every IPv4 address, ``::`` every address)."""
    host_a, port_a = a.rsplit(":", 1)
    host_b, port_b = b.rsplit(":", 1)
    if port_a != port_b or int(port_a) == 0:  # port 0: each gets a free port of its own
        return False

    def address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        host = host.strip("[]")
        try:
            return ipaddress.ip_address("127.0.0.1" if host == "localhost" else host or "::")
        except ValueError:  # a host name: compared as written
            return None

    ip_a, ip_b = address(host_a), address(host_b)
    if ip_a is None or ip_b is None:
        return host_a == host_b
    if ip_a == ip_b or ipaddress.ip_address("::") in (ip_a, ip_b):
        return True
    return ip_a.version == ip_b.version == 4 and ipaddress.ip_address("0.0.0.0") in (ip_a, ip_b)


def check_listen_clash(config: Config) -> Iterator[tuple[str, bool]]:
    """The webhook and the web page cannot listen on one socket: the second to start fails."""
    feishu, web = config.feishu, config.web
    if feishu is None or feishu.mode != "webhook" or web is None:
        return
    if _same_socket(feishu.listen, web.listen):
        yield (f"[feishu] listen {feishu.listen} clashes with [web] listen {web.listen} (one "
               "port, one program): give one of them another port", False)


def check_shared_ports(config: Config) -> Iterator[tuple[str, bool]]:
    """Two devices on one serial port would fight over it: name each extra one."""
    owners: dict[str, str] = {}
    for _room, device in config.devices():
        if device.scheme != "serial" or "://" in device.url:
            continue
        port = os.path.realpath(device.url.split("?", 1)[0])
        if port in owners:
            yield (f"device {device.id}: port {port} is already used by device "
                   f"{owners[port]} (one device per port)", False)
        else:
            owners[port] = device.id


def check_store(config: Config) -> tuple[str, bool]:
    """A damaged ``schedule.db``: ``run`` moves it aside and starts empty; say so first."""
    from display.store import store_path
    from display.storeopen import corruption

    path = store_path(config)
    reason = corruption(path)
    if reason is not None:
        return (f"schedule store {path} is corrupt ({reason}); run will move it aside and "
                "start empty (re-sync refills it)", False)
    return f"schedule store {path}: " + ("readable" if path.exists() else "none yet"), True


def check_feishu(feishu: FeishuConfig) -> tuple[str, bool]:
    """Ask Feishu for a tenant token: proves the domain is reachable and the app credentials
    are right, without opening a long connection that would steal events from a running node."""
    if not feishu.app_id or not feishu.app_secret:
        if feishu.mode == "webhook" and not feishu.resync_enabled:
            return "Feishu webhook: no app credentials (webhook only, re-sync off)", True
        return (f"Feishu {feishu.mode}: re-sync is on but there are no app credentials (set "
                "[feishu] app_id and app_secret, or resync = false)", False)
    url = f"{feishu.domain}/open-apis/auth/v3/tenant_access_token/internal"
    body = json.dumps({"app_id": feishu.app_id,
                       "app_secret": feishu.app_secret.reveal()}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"Feishu {feishu.domain}: HTTP {exc.code} from the token endpoint", False
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"Feishu {feishu.domain}: unreachable ({reason})", False
    if answer.get("code") == 0:
        return f"Feishu {feishu.domain}: app {feishu.app_id} credentials accepted", True
    return (f"Feishu {feishu.domain}: credentials rejected (code {answer.get('code')}: "
            f"{answer.get('msg')}); check [feishu] app_id / app_secret", False)


def check_broker(mqtt: MqttConfig, node_name: str = "check",
                 broker: tuple[str, int] | None = None) -> tuple[str, bool]:
    """A real MQTT handshake with ``broker`` (default the first): CONNECT, then the broker's
    CONNACK within :data:`TIMEOUT`."""
    from display.transport.mqtt_client import (  # paho is only imported when [mqtt] is configured
        probe,
    )

    ok, line = probe(mqtt, node_name, TIMEOUT, broker)
    return line, ok


def _running(config: Config) -> dict[str, Any] | None:
    """The running node's status document, or None when no node runs for this config."""
    from display.status import read_status

    try:
        doc = read_status(config)
    except (OSError, RoomDisplayError):  # no readable store either: certainly not running
        return None
    node = doc.get("node", {})
    return doc if node.get("running") and isinstance(node.get("mqtt"), dict) else None


def check_broker_of_running(mqtt: MqttConfig, doc: dict[str, Any]) -> tuple[str, bool]:
    """The broker as the running node sees it (check does not connect beside it)."""
    link = doc["node"]["mqtt"]
    where = f"broker {link.get('broker') or f'{mqtt.host}:{mqtt.port}'}"
    if link.get("connected"):
        return f"{where}: connected (the running node's own connection)", True
    return f"{where}: the running node is not connected ({link.get('error')})", False


def check_bridge_reads_status(config: Config, running: dict[str, Any] | None
                              ) -> tuple[str, bool]:
    """Whether the broker lets this bridge read every node's status (its fleet view).

    A node that has said ``online``/``offline`` on its availability topic has published its
    status too (every node does after each connect), so a node whose availability reaches the
    bridge but whose status does not is the broker's ACL denying the bridge ``{p}/v1/nodes/+/
    status``. Read from the running bridge's fleet, else from the broker's retained messages.
    """
    assert config.mqtt is not None
    prefix = config.mqtt.topic_prefix
    if running is not None:
        heard, with_status = _fleet_names(running)
        if heard - with_status:
            # A bridge publishes its own status within 2 s of connecting: ask again once
            # that long later before calling anything missing.
            time.sleep(FLEET_SETTLE)
            again = _running(config)
            if again is not None:
                heard, with_status = _fleet_names(again)
    else:
        try:
            heard, with_status = _retained_nodes(config.mqtt, config.node.name)
        except OSError as exc:
            return f"node status on the broker: not checked ({exc})", False
    missing = sorted(heard - with_status)
    if missing:
        user = config.mqtt.username or config.node.name
        return (f"node status on the broker: {', '.join(missing)} said online/offline but this "
                f"bridge cannot read their status; the broker's ACL must let {user} read "
                f"{prefix}/v1/nodes/+/status (scripts/mqtt-credentials writes it; docs/MQTT.md, "
                "Trust)"), False
    if not with_status:
        return "node status on the broker: no node has published yet", True
    return (f"node status on the broker: this bridge reads {len(with_status)} node(s) "
            f"({', '.join(sorted(with_status))})"), True


def _fleet_names(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Node names the running bridge heard of, and those whose status it has."""
    fleet = doc["node"].get("fleet") or {}
    return set(fleet), {name for name, node in fleet.items() if node.get("role") is not None}


def _retained_nodes(mqtt: MqttConfig, own: str) -> tuple[set[str], set[str]]:
    """Node names with a retained availability, and with a retained status, as this account
    receives them. Raises OSError when the broker cannot be reached or refuses us."""
    import paho.mqtt.client as paho

    from display.transport.mqtt_client import build_client
    from display.transport.mqtt_schema import Topics

    topics = Topics(mqtt.topic_prefix)
    head = f"{mqtt.topic_prefix}/v1/nodes/"
    heard: set[str] = set()
    with_status: set[str] = set()
    subacks: list[int] = []
    done = threading.Event()
    lock = threading.Lock()
    client = build_client(mqtt, f"room-display-check-{own}-{os.getpid()}")

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if reason.is_failure:
            done.set()
            return
        client.subscribe([(f"{head}+/status", 0), (topics.all_availability, 0)])

    def on_subscribe(client: paho.Client, userdata: Any, mid: int, reasons: Any,
                     properties: Any) -> None:
        subacks.append(mid)
        if len(subacks) == 1:
            # The broker sends the retained messages of one SUBSCRIBE before it answers the
            # next: once this second one is acknowledged, every retained one has arrived.
            client.subscribe(topics.availability(own), 0)
        else:
            done.set()

    def on_message(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if not message.retain or not message.topic.startswith(head) or not message.payload:
            return
        name, _, tail = message.topic[len(head):].partition("/")
        with lock:
            if tail == "availability":
                heard.add(name)
            elif tail == "status":
                heard.add(name)
                with_status.add(name)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    where = f"broker {mqtt.host}:{mqtt.port}"
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=max(5, mqtt.keepalive))
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"{where} unreachable") from exc
    client.loop_start()
    try:
        if not done.wait(TIMEOUT) or len(subacks) < 2:
            raise OSError(f"{where} did not answer or refused the subscription")
        with lock:
            return set(heard), set(with_status)
    finally:
        client.disconnect()
        client.loop_stop()


def check_device(device: DeviceConfig) -> tuple[str, bool]:
    """Is the device's port or directory there?"""
    label = f"device {device.id} ({device.kind}, {device.url})"
    if device.scheme == "virtual":
        return _writable(Path(device.url.removeprefix("virtual:")), label)
    if device.scheme == "mqtt":
        return f"{label}: published through the broker", True
    path = device.url.split("?", 1)[0]
    if "://" in path:
        return f"{label}: network/URL port, checked when the node opens it", True
    if not os.path.exists(path):
        return f"{label}: {path} does not exist (unplugged? see hardware/README.md)", False
    mode = os.stat(path).st_mode
    if not stat.S_ISCHR(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(
            mode) else "not a character device"
        return f"{label}: {path} is {what}, not a serial port", False
    if os.major(os.stat(path).st_rdev) == _MEMORY_DEVICES:
        return f"{label}: {path} is a memory device (/dev/null...), not a serial port", False
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{label}: no permission on {path} (add the user to group dialout)", False
    return f"{label}: port present", True


def _writable(directory: Path, label: str) -> tuple[str, bool]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".room-display-check"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return f"{label}: not writable ({exc.strerror})", False
    return f"{label}: writable", True
