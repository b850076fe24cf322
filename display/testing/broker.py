"""A real Mosquitto on a free loopback port, and a real paho subscriber that records messages.

Tests skip (with the reason) when no ``mosquitto`` binary exists; ``scripts/bootstrap``
installs Debian's package where it can.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from display.testing.waiting import wait_for


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; :meth:`kill` and :meth:`start` again keep the same port."""

    def __init__(self, directory: Path, *, persistence: bool = False,
                 users: dict[str, str] | None = None, acl_file: Path | None = None,
                 password_file: Path | None = None, log_subscriptions: bool = False,
                 extra: tuple[str, ...] = ()) -> None:
        """``users`` become a password file here; or pass a ready ``password_file`` (hashed
        by mosquitto_passwd) and an ``acl_file``, as ``scripts/mqtt-credentials`` writes.
        ``log_subscriptions`` logs every SUBSCRIBE (client id, QoS, filter) to :attr:`log`.
        ``extra`` lines go at the end of its config (e.g. a Mosquitto bridge to another
        broker, as docs/MQTT.md's two-broker recipe writes it)."""
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("no mosquitto binary (apt-get install mosquitto; scripts/bootstrap "
                        "does it as root)")
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistence = persistence
        self.users = users
        self.acl_file = acl_file
        self.password_file = password_file
        self.extra = extra
        self.log_subscriptions = log_subscriptions
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _conf(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr", "log_type error",
                 "log_type warning"] + (["log_type subscribe"] if self.log_subscriptions else [])
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/",
                      "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if self.users or self.password_file:
            pw = self.password_file or self.directory / "passwords"
            if self.users:
                pw.write_text("")
                for user, password in self.users.items():
                    subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password],
                                   check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
            if self.acl_file:
                lines.append(f"acl_file {self.acl_file}")
            if os.geteuid() == 0:
                # As root, mosquitto drops to user "mosquitto", who cannot read pytest's tmp dir.
                lines.append("user root")
        else:
            lines.append("allow_anonymous true")
        lines += self.extra
        conf = self.directory / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        conf = self._conf()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, timeout=10, what="mosquitto listening")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no saving (what a power cut does)."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file on the way out."""
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


def running_broker(tmp_path: Path) -> Iterator[Broker]:
    """Body of the ``broker`` fixture each MQTT test module declares."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Recorder:
    """A real paho subscriber: the last message per topic, with its retain flag, plus counts."""

    def __init__(self, port: int, topic_filter: str = "#", *, username: str | None = None,
                 password: str | None = None, host: str = "127.0.0.1") -> None:
        self.last: dict[str, tuple[bytes, bool]] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{free_port()}")
        if username:
            self.client.username_pw_set(username, password)
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, 1)
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("recorder could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.last[msg.topic] = (bytes(msg.payload), bool(msg.retain))
            self.counts[msg.topic] = self.counts.get(msg.topic, 0) + 1

    def get(self, topic: str) -> tuple[bytes, bool] | None:
        with self._lock:
            return self.last.get(topic)

    def count(self, topic: str) -> int:
        with self._lock:
            return self.counts.get(topic, 0)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the broker as deployed ------------------------------------------------------------------------

#: Debian's stock /etc/mosquitto/mosquitto.conf (package mosquitto 2.0.x), its paths under ROOT.
DEBIAN_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file {root}/run/mosquitto/mosquitto.pid

persistence true
persistence_location {root}/var/lib/mosquitto/

log_dest file {root}/var/log/mosquitto/mosquitto.log

include_dir {root}/etc/mosquitto/conf.d
"""


def _deploy_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the deployed broker needs root (network namespace, user mosquitto); CI runs as root"
    if mosquitto_binary() is None:
        return "no mosquitto binary (apt-get install mosquitto; scripts/bootstrap does it)"
    if shutil.which("ip") is None:
        return "no ip command (apt-get install iproute2; scripts/bootstrap does it)"
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return "no user mosquitto (Debian's mosquitto package creates it)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class DeployedBroker:
    """Mosquitto as Debian runs it, reached over a network like a Pi reaches it.

    Started as root from Debian's stock ``mosquitto.conf`` (``include_dir`` of a ``conf.d``) in a
    temporary tree the ``mosquitto`` user can traverse, with no ``user`` line, so it drops to
    ``mosquitto`` before reading its password file and ACL; it runs in a network namespace of
    its own, joined to ours by a veth pair, and clients reach it on :attr:`host` (a 10.231.x.y
    address, not loopback). ``site`` is the folder ``scripts/mqtt-credentials`` wrote (with the
    ownership it left); its ``room-display.conf`` is copied into ``conf.d``. Skips, saying why,
    when not root. :meth:`close` removes the namespace, the link and the tree, whatever happened.
    """

    def __init__(self) -> None:
        reason = _deploy_skip_reason()
        if reason is not None:
            pytest.skip(reason)
        # Under /tmp, not pytest's tmp_path: user mosquitto must traverse every ancestor.
        tree = Path(tempfile.mkdtemp(prefix="rd-deployed-broker-", dir="/tmp"))
        self.root = tree
        self.netns = f"rd-broker-{os.getpid()}-{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = tree / "mosquitto.out"
        self._veth = f"rdh{free_port()}"  # at most 15 characters
        self._subnet = self._pick_subnet()
        self.host = f"10.231.{self._subnet}.2"
        self.port = 1883
        self._up = False
        tree.chmod(0o755)
        for sub in ("etc/mosquitto/conf.d", "run/mosquitto", "var/lib/mosquitto",
                    "var/log/mosquitto"):
            (tree / sub).mkdir(parents=True, exist_ok=True)
        ids = pwd.getpwnam("mosquitto")
        for sub in ("run/mosquitto", "var/lib/mosquitto", "var/log/mosquitto"):
            os.chown(tree / sub, ids.pw_uid, ids.pw_gid)
        (tree / "etc/mosquitto/mosquitto.conf").write_text(DEBIAN_CONF.format(root=tree))

    @staticmethod
    def _pick_subnet() -> int:
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                              timeout=10).stdout
        for _ in range(50):
            n = secrets.randbelow(250) + 1
            if f"10.231.{n}." not in used:
                return n
        raise AssertionError("no free 10.231.x.0/30 subnet")

    @property
    def etc(self) -> Path:
        """Where ``scripts/mqtt-credentials --out`` writes: ``etc/mosquitto/room-display``."""
        return self.root / "etc" / "mosquitto" / "room-display"

    @property
    def log(self) -> Path:
        return self.root / "var/log/mosquitto/mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything mosquitto said: its log file and what it wrote before opening it."""
        parts = [p.read_text(errors="replace") for p in (self.output, self.log) if p.exists()]
        return "".join(parts)

    def _network(self) -> None:
        """The namespace and the veth pair to it (once)."""
        if self._up:
            return
        ns, host_side, inner = self.netns, self._veth, f"{self._veth}b"
        _ip("netns", "add", ns)
        self._up = True
        _ip("link", "add", host_side, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("addr", "add", f"10.231.{self._subnet}.1/30", "dev", host_side)
        _ip("link", "set", host_side, "up")
        _ip("-n", ns, "addr", "add", f"{self.host}/30", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def link(self, other: DeployedBroker) -> None:
        """A network between this broker and ``other`` (two machines on a LAN): each reaches
        the other at its :attr:`host`, with no forwarding through our own namespace."""
        self._network()
        other._network()
        here, there = f"rdl{free_port()}", f"rdm{free_port()}"
        _ip("link", "add", here, "netns", self.netns, "type", "veth", "peer", "name", there,
            "netns", other.netns)
        net = secrets.randbelow(250) + 1
        for ns, dev, mine, peer, far in ((self.netns, here, 1, 2, other.host),
                                         (other.netns, there, 2, 1, self.host)):
            _ip("-n", ns, "addr", "add", f"10.232.{net}.{mine}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "route", "add", f"{far}/32", "via", f"10.232.{net}.{peer}")

    def start(self, conf_d: Path, *more: Path) -> None:
        """Install ``conf_d`` (the generated ``room-display.conf``) and any ``more`` conf.d files
        (as ``install -m 0640 -g mosquitto`` puts them) and start the broker."""
        conf_dir = self.root / "etc/mosquitto/conf.d"
        shutil.copy2(conf_d, conf_dir / conf_d.name)
        gid = pwd.getpwnam("mosquitto").pw_gid
        for extra in more:
            shutil.copyfile(extra, conf_dir / extra.name)
            os.chown(conf_dir / extra.name, 0, gid)
            (conf_dir / extra.name).chmod(0o640)
        self._network()
        binary = mosquitto_binary()
        assert binary is not None
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, binary, "-c",
                 str(self.root / "etc/mosquitto/mosquitto.conf")], stdout=out, stderr=out)

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, timeout=15, what=f"mosquitto listening on {self.host}")

    def kill(self) -> None:
        """SIGKILL the broker (what a power cut does); its network stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        """Stop the broker; remove the link, the namespace and the tree."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._up:  # a link to another broker's namespace goes with this one
            for args in (("link", "del", self._veth), ("netns", "del", self.netns)):
                subprocess.run(["ip", *args], capture_output=True, timeout=10)
            self._up = False
        shutil.rmtree(self.root, ignore_errors=True)

