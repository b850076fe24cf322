"""The broker recipe rehearsed as deployed (docs/MQTT.md, "Trust").

``scripts/mqtt-credentials`` writes the site's files as root; Debian's own mosquitto 2.0 starts
from Debian's stock ``mosquitto.conf`` with the generated ``room-display.conf`` in ``conf.d``,
drops to user ``mosquitto`` and listens on an address outside loopback (a network namespace of
its own). A bridge and an agent (whole ``room-display run`` processes) log in through
``password = "credential:mqtt-password"``; Home Assistant's and a WLED device's accounts are
real paho clients. An observer account, added below the ACL's keep-line as an administrator
would, sees what gets through. Runs as root (CI does); skips, saying why, otherwise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from display import __version__
from display.cli.mqtt_acl import MAX_PACKET_BYTES, hash_password
from display.testing.broker import DeployedBroker, free_port
from display.testing.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
P = "room-display/v1"

BRIDGE = """
[node]
name = "bridge-1"
timezone = "Asia/Shanghai"
state_dir = "state"
[feishu]
mode = "webhook"
listen = "127.0.0.1:{hook}"
verification_token = "vtoken"
resync = false
[mqtt]
url = "{url}"
username = "bridge-1"
password = "credential:mqtt-password"
homeassistant = true
[web]
listen = "127.0.0.1:{web}"
[[rooms]]
open_id = "omm_a"
name = "Room A"
"""

AGENT = """
[node]
name = "agent-1"
timezone = "Asia/Shanghai"
state_dir = "state"
[mqtt]
url = "{url}"
username = "agent-1"
password = "credential:mqtt-password"
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "agent-1-led"
kind = "led"
url = "virtual:panels"
[[rooms.devices]]
id = "agent-1-wled"
kind = "led"
protocol = "wled"
url = "mqtt:lights/a"
"""

OBSERVER_ACL = "user observer\ntopic readwrite #\n"


def credentials(out: Path) -> list[str]:
    """``scripts/mqtt-credentials`` as an administrator runs it for this site."""
    return ["--out", str(out), "--bridge", "bridge-1", "--agent", "agent-1", "--agent",
            "agent-2", "--device", "agent-1=lights/a=wled-a", "--homeassistant", "ha"]


def mqtt_credentials(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(ROOT / "scripts" / "mqtt-credentials"), *args],
                          capture_output=True, text=True, timeout=60, env=env, check=True)


def password(out: Path, user: str) -> str:
    return (out / "credentials" / user / "mqtt-password").read_text().strip()


class Node:
    """``room-display run`` with its password in ``$CREDENTIALS_DIRECTORY`` (as systemd's
    ``LoadCredential=`` gives it)."""

    def __init__(self, directory: Path, text: str, secret: str) -> None:
        directory.mkdir(parents=True)
        creds = directory / "credentials"
        creds.mkdir(mode=0o700)
        (creds / "mqtt-password").write_text(secret + "\n")
        self.config = directory / "room-display.toml"
        self.config.write_text(text)
        self.env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
        self.err = directory / "stderr.txt"
        self.proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c",
                                      str(self.config)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=self.err.open("w"))

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        assert self.proc.poll() is None, self.log()
        done = subprocess.run([sys.executable, "-m", "display", "status", "--json", "-c",
                               str(self.config)], capture_output=True, text=True, timeout=60,
                              env=self.env)
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class Client:
    """A real paho client on the deployed broker, recording what it receives."""

    def __init__(self, broker: DeployedBroker, user: str, secret: str, *,
                 client_id: str | None = None, subscribe: tuple[str, ...] = ()) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"{user}-{free_port()}")
        self.client.username_pw_set(user, secret)
        self.client.on_message = self._on_message

        self.refused = False

        def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
            if reason.is_failure:
                self.refused = True
                self.subscribed.set()
            else:
                self.connected.set()
                if subscribe:
                    c.subscribe([(t, 1) for t in subscribe])
                else:
                    self.subscribed.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self.subscribed.wait(15) or self.refused:
            self.close()
            raise AssertionError(f"{user} could not connect and subscribe")

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def got(self, topic: str, payload: bytes | None = None) -> bool:
        with self.lock:
            return any(t == topic and (payload is None or p == payload)
                       for t, p, _r in self.messages)

    def count(self, topic: str, payload: bytes, *, retained: bool | None = None) -> int:
        with self.lock:
            return sum(1 for t, p, r in self.messages if t == topic and p == payload
                       and retained in (None, r))

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _p, _r in self.messages}

    def sizes(self, topic: str) -> list[int]:
        with self.lock:
            return [len(p) for t, p, _r in self.messages if t == topic]

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Site:
    broker: DeployedBroker
    out: Path
    bridge: Node
    agent: Node
    web: int
    observer: Client

    def api(self) -> dict[str, Any]:
        """The bridge's ``/api/status`` node section ({} until its web page is up)."""
        assert self.bridge.proc.poll() is None, self.bridge.log()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/api/status",
                                        timeout=10) as answer:
                doc: dict[str, Any] = json.loads(answer.read())
        except OSError:
            return {}
        node: dict[str, Any] = doc["node"]
        return node

    def fleet(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api().get("fleet", {})
        return result

    def bridge_mqtt(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api().get("mqtt", {})
        return result

    def sync(self, client: Client | None = None, topic: str = "sync") -> None:
        """Every message published before this call (by ``client``, on a ``topic`` it may
        write, or by the observer) has been handled: the broker takes one connection's packets
        in order, so the marker's arrival means the earlier ones were delivered or dropped."""
        marker = f"sync-{free_port()}".encode()
        (client or self.observer).publish(topic, marker)
        wait_for(lambda: self.observer.got(topic, marker), timeout=15, what="the sync marker")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    broker = DeployedBroker()
    nodes: list[Node] = []
    clients: list[Client] = []
    try:
        out = broker.etc
        mqtt_credentials(*credentials(out))
        # An administrator's own account, below the ACL's keep-line and in passwd.
        with (out / "room-display.acl").open("a") as acl:
            acl.write(OBSERVER_ACL)
        with (out / "passwd").open("a") as passwd:
            passwd.write(f"observer:{hash_password('observer-secret')}\n")
        broker.start(out / "room-display.conf")
        observer = Client(broker, "observer", "observer-secret", subscribe=("#",))
        clients.append(observer)
        web = free_port()
        tmp = broker.root / "nodes"
        bridge = Node(tmp / "bridge", BRIDGE.format(hook=free_port(), url=broker.url, web=web),
                      password(out, "bridge-1"))
        nodes.append(bridge)
        agent = Node(tmp / "agent", AGENT.format(url=broker.url), password(out, "agent-1"))
        nodes.append(agent)
        yield Site(broker, out, bridge, agent, web, observer)
    finally:
        for node in nodes:
            node.stop()
        for client in clients:
            client.close()
        broker.close()


def _owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def test_debians_broker_starts_with_the_generated_files_as_user_mosquitto(site: Site) -> None:
    out, broker = site.out, site.broker
    assert _owner(out / "passwd") == ("root", "mosquitto", 0o640)
    assert _owner(out / "room-display.acl") == ("root", "mosquitto", 0o640)
    assert _owner(out) == ("root", "mosquitto", 0o750)
    assert _owner(out / "credentials") == ("root", "root", 0o700)
    assert _owner(out / "credentials" / "agent-1" / "mqtt-password") == ("root", "root", 0o600)
    assert broker.proc is not None
    uid = next(line.split()[1] for line in Path(f"/proc/{broker.proc.pid}/status").read_text()
               .splitlines() if line.startswith("Uid:"))
    assert int(uid) == pwd.getpwnam("mosquitto").pw_uid, "it dropped to user mosquitto"
    wait_for(lambda: "New client connected" in broker.log_text(), timeout=15,
             what="a client in the broker's log")
    text = broker.log_text()
    assert "Opening ipv4 listen socket on port 1883" in text
    for word in ("Warning", "Error", "Note", "Unable"):
        assert word not in text, text
    assert not broker.host.startswith("127.")


def test_the_bridge_sees_the_agent_its_version_and_devices(site: Site) -> None:
    def agent_seen() -> bool:
        seen = site.fleet().get("agent-1", {})
        return bool(seen.get("online") and len(seen.get("devices", [])) == 2)

    wait_for(agent_seen, timeout=60, what="agent-1 and its devices on the bridge's page")
    seen = site.fleet()["agent-1"]
    assert seen["version"] == __version__ and seen["role"] == "agent"
    assert sorted(d["id"] for d in seen["devices"]) == ["agent-1-led", "agent-1-wled"]
    wait_for(lambda: site.fleet().get("bridge-1", {}).get("version") == __version__,
             timeout=30, what="the bridge's own status read back through the ACL")
    # ... and the agent follows the bridge's schedules and availability through its ACL (as
    # its own status on the bridge's page says).
    wait_for(lambda: site.fleet()["agent-1"]["links"].get("bridge", {}).get("up"), timeout=60,
             what="the agent's bridge link up")
    assert " WARNING " not in site.agent.log(), site.agent.log()


def test_check_on_the_running_bridge_reads_node_status(site: Site) -> None:
    def in_snapshot() -> bool:  # what check reads: the running node's status document
        node = site.bridge.status()["node"]
        return bool(node.get("mqtt", {}).get("connected")
                    and node.get("fleet", {}).get("agent-1", {}).get("version"))

    wait_for(in_snapshot, timeout=60, what="agent-1 in the bridge's status document")
    connects = site.bridge_mqtt()["connects"]
    done = subprocess.run([sys.executable, "-m", "display", "check", "-c",
                           str(site.bridge.config)], capture_output=True, text=True,
                          timeout=60, env=site.bridge.env)
    assert "ok      broker " in done.stdout and "the running node's own connection" \
        in done.stdout, done.stdout
    assert "ok      node status on the broker: this bridge reads" in done.stdout, done.stdout
    assert "agent-1" in done.stdout
    site.sync()
    assert site.bridge_mqtt()["connects"] == connects, "check did not take the bridge's place"


def test_home_assistant_does_its_part_and_nothing_else(site: Site) -> None:
    ha = Client(site.broker, "ha", password(site.out, "ha"), subscribe=("#",))
    try:
        discovery = "homeassistant/binary_sensor/room_display_omm_a/occupancy/config"
        wait_for(lambda: ha.got(discovery) and ha.got(f"{P}/rooms/omm_a/state")
                 and ha.got(f"{P}/nodes/bridge-1/availability", b"online"), timeout=30,
                 what="discovery, the room's state and the bridge's availability")
        config = next(p for t, p, _r in list(ha.messages) if t == discovery)
        before = ha.count(discovery, config, retained=False)
        ha.publish("homeassistant/status", "online")  # its birth: the bridge announces again
        wait_for(lambda: ha.count(discovery, config, retained=False) > before, timeout=30,
                 what="discovery sent again after HA's birth")
        # What it may not do: write a schedule or the bridge's availability.
        ha.publish(f"{P}/rooms/omm_a/schedule", b'{"open_id": "omm_a"}', retain=True)
        ha.publish(f"{P}/nodes/bridge-1/availability", "offline", retain=True)
        site.sync(ha, "homeassistant/status")
        assert not site.observer.got(f"{P}/rooms/omm_a/schedule", b'{"open_id": "omm_a"}')
        assert not site.observer.got(f"{P}/nodes/bridge-1/availability", b"offline")
        assert site.observer.got("homeassistant/status", b"online"), "its birth went through"
        # What it may not read: schedules, node status, the devices' topics.
        unreadable = {t for t in ha.topics() if t.startswith(("lights/", f"{P}/nodes/agent"))
                      or t.endswith(("/schedule", f"{P}/nodes/bridge-1/status"))}
        assert not unreadable
    finally:
        ha.close()


def test_a_wled_device_does_its_part_and_nothing_else(site: Site) -> None:
    wled = Client(site.broker, "wled-a", password(site.out, "wled-a"),
                  subscribe=("lights/a", "lights/a/api", "lights/a/col", "room-display/#"))
    try:
        # It reads what the agent drives it with (retained WLED JSON state) ...
        wait_for(lambda: wled.got("lights/a/api"), timeout=30, what="the agent's WLED state")
        # ... and publishes what WLED publishes.
        wled.publish("lights/a/status", "online", retain=True)
        wled.publish("lights/a/g", "128")
        # Not another device's topics, not its own command topic, not the room's.
        wled.publish("lights/b/api", '{"on": true}')
        wled.publish("lights/a/api", '{"on": false}')
        wled.publish(f"{P}/rooms/omm_a/schedule", b"{}", retain=True)
        site.sync(wled, "lights/a/g")
        assert site.observer.got("lights/a/status", b"online")
        assert site.observer.got("lights/a/g", b"128")
        assert not site.observer.got("lights/b/api")
        assert not site.observer.got("lights/a/api", b'{"on": false}')
        assert not site.observer.got(f"{P}/rooms/omm_a/schedule", b"{}")
        assert not any(t.startswith("room-display/") for t in wled.topics())
        wled.publish("lights/a/status", b"", retain=True)
    finally:
        wled.close()


def test_an_agents_password_cannot_kick_the_bridge(site: Site) -> None:
    wait_for(lambda: site.bridge_mqtt()["connected"], timeout=30, what="bridge connected")
    connects = site.bridge_mqtt()["connects"]
    offline = f"{P}/nodes/bridge-1/availability"
    before = site.observer.count(offline, b"offline")
    for _ in range(3):  # agent-2's account, the bridge's client id
        rogue = Client(site.broker, "agent-2", password(site.out, "agent-2"),
                       client_id="room-display-bridge-1")
        rogue.close()
    site.sync()
    assert site.observer.count(offline, b"offline") == before, "no last will"
    assert site.bridge_mqtt()["connects"] == connects and site.bridge_mqtt()["connected"]


def test_no_payload_over_the_cap_reaches_another_node(site: Site) -> None:
    topic = f"{P}/nodes/agent-2/status"
    rogue = Client(site.broker, "agent-2", password(site.out, "agent-2"))
    try:
        rogue.publish(topic, b"x" * (2 * MAX_PACKET_BYTES), retain=True)
        assert rogue.disconnected.wait(15), "the broker closes the sender's connection"
    finally:
        rogue.close()
    # The largest legitimate payload (a 2000x2000 two-colour e-ink image) still goes through.
    legit = Client(site.broker, "agent-2", password(site.out, "agent-2"))
    try:
        legit.publish(topic, b"y" * 1_000_100, retain=True)
        legit.publish(topic, b"", retain=True)  # after it, in order: clears the retained copy
        wait_for(lambda: site.observer.got(topic, b""), timeout=30, what="the empty status")
        assert site.observer.sizes(topic) == [1_000_100, 0], "only the legitimate one arrived"
    finally:
        legit.close()
    assert site.bridge.proc.poll() is None and site.agent.proc.poll() is None


def test_running_the_script_again_keeps_every_password_and_account(site: Site) -> None:
    out = site.out
    subprocess.run(["mosquitto_passwd", "-b", str(out / "passwd"), "by-hand", "hand-secret"],
                   check=True, capture_output=True)  # an account the administrator added
    before = (out / "passwd").read_text()
    secrets_before = {u: password(out, u) for u in ("bridge-1", "agent-1", "ha", "wled-a")}
    mqtt_credentials(*credentials(out), "--agent", "agent-3")
    after = (out / "passwd").read_text()
    assert after.startswith(before), "every line kept as it was; the new account appended"
    assert after[len(before):].startswith("agent-3:$7$101$")
    assert {u: password(out, u) for u in secrets_before} == secrets_before
    assert (out / "room-display.acl").read_text().endswith(OBSERVER_ACL)
    assert _owner(out / "passwd") == ("root", "mosquitto", 0o640)
    assert site.broker.proc is not None
    site.broker.proc.send_signal(signal.SIGHUP)  # systemctl reload mosquitto

    def logs_in(user: str, secret: str) -> bool:
        try:
            Client(site.broker, user, secret).close()
        except AssertionError:
            return False
        return True

    wait_for(lambda: logs_in("agent-3", password(out, "agent-3")), timeout=30,
             what="the new agent logs in after a reload")
    assert logs_in("by-hand", "hand-secret") and logs_in("observer", "observer-secret")


# -- check against a broker whose ACL hides node status from the bridge ----------------------------

#: What scripts/mqtt-credentials wrote before: every node reads availability, the bridge no status.
OLD_ACL = f"""\
pattern read {P}/nodes/+/availability
pattern readwrite {P}/nodes/%u/#
user bridge-1
topic readwrite {P}/rooms/#
"""


@pytest.mark.parametrize("acl", ["old", "generated"])
def test_check_says_when_the_bridge_cannot_read_node_status(tmp_path: Path, acl: str) -> None:
    from display.cli.check import check_bridge_reads_status
    from display.cli.mqtt_acl import Site as Accounts
    from display.cli.mqtt_acl import write_site
    from display.config import parse_config
    from display.testing.broker import Broker

    out = tmp_path / "site"
    write_site(Accounts(bridges=("bridge-1",), agents=("agent-1",)), out)
    if acl == "old":
        (out / "room-display.acl").write_text(OLD_ACL)
    broker = Broker(tmp_path / "broker", acl_file=out / "room-display.acl",
                    password_file=out / "passwd")
    broker.start()
    try:
        # An agent has been here: its availability and status are retained.
        agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-1")
        agent.username_pw_set("agent-1", password(out, "agent-1"))
        agent.connect("127.0.0.1", broker.port)
        agent.loop_start()
        for tail, payload in (("availability", "online"),
                              ("status", json.dumps({"name": "agent-1", "role": "agent"}))):
            agent.publish(f"{P}/nodes/agent-1/{tail}", payload, qos=1,
                          retain=True).wait_for_publish(10)
        agent.disconnect()
        agent.loop_stop()
        (tmp_path / "pw").write_text(password(out, "bridge-1"))
        config = parse_config(BRIDGE.format(hook=free_port(), url=broker.url, web=free_port())
                              .replace("credential:mqtt-password", f"file:{tmp_path}/pw"),
                              tmp_path / "bridge.toml")
        line, ok = check_bridge_reads_status(config, None)
    finally:
        broker.stop()
    if acl == "old":
        assert not ok
        assert line.startswith("node status on the broker: agent-1 said online/offline but "
                               "this bridge cannot read their status")
        assert f"let bridge-1 read {P}/nodes/+/status" in line
    else:
        assert ok and line == "node status on the broker: this bridge reads 1 node(s) (agent-1)"


def test_check_says_when_the_broker_cannot_be_asked(tmp_path: Path) -> None:
    from display.cli.check import check_bridge_reads_status
    from display.config import parse_config

    config = parse_config(BRIDGE.format(hook=free_port(), url=f"mqtt://127.0.0.1:{free_port()}",
                                        web=free_port())
                          .replace('"credential:mqtt-password"', '"env:NONE_SET_HERE"'),
                          tmp_path / "bridge.toml", resolve_secrets=False)
    line, ok = check_bridge_reads_status(config, None)
    assert not ok and line.startswith("node status on the broker: not checked (broker 127.0.0.1:")


# -- TLS, as docs/MQTT.md says to turn it on -------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path, ip: str) -> None:
    """A CA and a server certificate for ``ip`` (what a site's own CA would issue)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=site CA",
             "-days", "2", cwd=folder)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=broker",
             cwd=folder)
    (folder / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=folder)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_the_documented_tls_lines_work(tmp_path: Path) -> None:
    from display.config import parse_config
    from display.transport.mqtt_client import probe

    broker = DeployedBroker()
    try:
        mqtt_credentials(*credentials(broker.etc))
        etc = broker.root / "etc" / "mosquitto"
        _certificates(tmp_path, broker.host)
        for name, folder in (("ca.crt", "ca_certificates"), ("server.crt", "certs"),
                             ("server.key", "certs")):
            (etc / folder).mkdir(exist_ok=True)
            shutil.copy(tmp_path / name, etc / folder / name)
        # mosquitto 2.0 loads the key after dropping to user mosquitto (a root-only key makes
        # every TLS handshake fail): readable by the broker's group, as docs/MQTT.md says.
        os.chown(etc / "certs" / "server.key", 0, grp.getgrnam("mosquitto").gr_gid)
        (etc / "certs" / "server.key").chmod(0o640)
        # docs/MQTT.md: uncomment the four TLS lines (here with the tree's paths).
        text = (broker.etc / "room-display.conf").read_text()
        for line in ("listener 8883", "cafile", "certfile", "keyfile"):
            text = text.replace(f"#{line}", line)
        for folder in ("ca_certificates", "certs"):
            text = text.replace(f" /etc/mosquitto/{folder}/", f" {etc}/{folder}/")
        conf = tmp_path / "room-display.conf"
        conf.write_text(text)
        broker.start(conf)
        (tmp_path / "pw").write_text(password(broker.etc, "agent-1"))
        config = parse_config(AGENT.replace("{url}", f"mqtts://{broker.host}:8883").replace(
            '"credential:mqtt-password"', f'"file:{tmp_path}/pw"\nca_file = '
            f'"{tmp_path}/ca.crt"'), tmp_path / "agent.toml")
        assert config.mqtt is not None and config.mqtt.tls
        assert probe(config.mqtt, "agent-1", 10) == (
            True, f"broker {broker.host}:8883: connected (MQTT 3.1.1, TLS)")
        text = broker.log_text()
        assert "Opening ipv4 listen socket on port 8883" in text
        for word in ("Warning", "Error", "Note", "Unable"):
            assert word not in text, text
    finally:
        broker.close()
