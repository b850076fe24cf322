"""A real Mosquitto on a free loopback port, and a real paho subscriber that records messages.

Tests skip (with the reason) when no ``mosquitto`` binary exists; ``scripts/bootstrap``
installs Debian's package where it can.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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
                 password_file: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        """``users`` become a password file here; or pass a ready ``password_file`` (hashed
        by mosquitto_passwd) and an ``acl_file``, as ``scripts/mqtt-credentials`` writes.
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
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _conf(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr", "log_type error",
                 "log_type warning"]
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
                 password: str | None = None) -> None:
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
        self.client.connect("127.0.0.1", port)
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
