"""Whole ``room-display run`` processes for the end-to-end tests and benchmarks, as a site runs
them under systemd.

Each node runs in a process group of its own (``start_new_session``), so :meth:`NodeProcess.kill`
ends the node *and* its Feishu intake child at once, as a power cut, the OOM killer or
``systemctl kill -s KILL`` would, and :meth:`NodeProcess.start` starts it again on the same config
and state, as ``Restart=`` would; :meth:`NodeProcess.stop` signals the whole group, as systemd's
``KillMode=control-group`` does. Its status is read the way ``room-display status`` reads it (the
status file the node keeps), and a bridge's webhook is fed Feishu's encrypted, signed deliveries.
Used by the process tests (two bridges, two brokers) and the kill -9 soak (bench and test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from display.config import Config, parse_config
from display.status import read_status
from display.testing.broker import free_port
from display.testing.feishu_standin import encrypted_body, signed_headers

#: The webhook's Encrypt Key in :data:`BRIDGE` (deliveries are encrypted and signed with it).
ENCRYPT_KEY = "process-test-key"

BRIDGE = """\
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{hook}"
verification_token = "vtoken"
encrypt_key = "{key}"
resync = false

[web]
listen = "127.0.0.1:{web}"

[mqtt]
url = {url}
{mqtt_extra}
{rooms}"""

AGENT = """\
[node]
name = "{name}"
timezone = "Asia/Shanghai"
state_dir = "state"
clock = "trust"

[mqtt]
url = {url}
{mqtt_extra}
{rooms}"""

#: ``[mqtt]`` lines of a node logging in as itself with ``credential:mqtt-password``.
LOGIN = 'username = "{name}"\npassword = "credential:mqtt-password"\n'


def bridge_text(name: str, url: str | list[str], rooms: tuple[str, ...], *,
                login: bool = False) -> str:
    """A webhook bridge's config (web page and webhook on free loopback ports)."""
    return BRIDGE.format(name=name, hook=free_port(), web=free_port(), key=ENCRYPT_KEY,
                         url=json.dumps(url), rooms=rooms_toml(rooms, devices=False),
                         mqtt_extra=LOGIN.format(name=name) if login else "")


def agent_text(name: str, url: str | list[str], rooms: tuple[str, ...], *,
               login: bool = False, last_room_devices: str = "") -> str:
    """A panel agent's config: a virtual LED light in each room, and ``last_room_devices``
    (``[[rooms.devices]]`` tables) in the last."""
    return AGENT.format(name=name, url=json.dumps(url),
                        rooms=rooms_toml(rooms, devices=True) + last_room_devices,
                        mqtt_extra=LOGIN.format(name=name) if login else "")


def rooms_toml(rooms: tuple[str, ...], *, devices: bool) -> str:
    """``[[rooms]]`` tables for ``rooms``; with ``devices``, a virtual LED light in each."""
    parts = []
    for open_id in rooms:
        parts.append(f'[[rooms]]\nopen_id = "{open_id}"\nname = "Room {open_id}"\n')
        if devices:
            parts.append(f'[[rooms.devices]]\nid = "{open_id}-led"\nkind = "led"\n'
                         'url = "virtual:panels"\n')
    return "\n".join(parts)


class NodeExited(AssertionError):
    """The node process ended on its own (its log's tail is in the message)."""


class NodeProcess:
    """One ``room-display run`` process with its config in ``directory``; its output appended to
    ``directory/node.log`` across restarts."""

    def __init__(self, directory: Path, text: str, *, secret: str | None = None) -> None:
        """``secret``: its MQTT password, handed over as systemd's ``LoadCredential=`` does
        (``$CREDENTIALS_DIRECTORY/mqtt-password``, for ``"credential:mqtt-password"``)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)  # not under systemd here
        if secret is not None:
            creds = directory / "credentials"
            creds.mkdir(mode=0o700, exist_ok=True)
            (creds / "mqtt-password").write_text(secret + "\n")
            self.env["CREDENTIALS_DIRECTORY"] = str(creds)
        self.path = directory / "room-display.toml"
        self.path.write_text(text, encoding="utf-8")
        self.config: Config = parse_config(text, self.path, resolve_secrets=False)
        self.log = directory / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.perf_counter() of the latest start
        self.starts = 0

    @property
    def name(self) -> str:
        """The node's ``[node] name``."""
        return self.config.node.name

    def start(self) -> NodeProcess:
        """Spawn the node in a new session (its own process group, the intake child in it)."""
        with self.log.open("ab") as log:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "display", "run", "-c", str(self.path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                start_new_session=True)
        self.starts += 1
        return self

    def alive(self) -> bool:
        """True while it runs, False when never started or killed; raises :class:`NodeExited`
        with the log's tail once it ended on its own."""
        if self.proc is None or self.proc.poll() is None:
            return self.proc is not None
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        raise NodeExited(f"{self.name} exited with {self.proc.returncode}:\n" + "\n".join(tail))

    def kill(self) -> None:
        """SIGKILL the node's whole process group: no goodbye, no flush, nothing runs on."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # it already ended
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM the group, as systemd stops the unit; SIGKILL it if it does not end in 20 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.proc = None

    def tracebacks(self) -> int:
        """How many Python tracebacks its log holds (there should be none)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Traceback (most recent call last)")

    def status(self) -> dict[str, Any]:
        """What ``room-display status --json`` prints (``node.running`` says if it answered)."""
        return read_status(self.config)

    # -- a bridge's webhook ------------------------------------------------------------------

    @property
    def hook(self) -> str:
        """The webhook intake's base URL."""
        assert self.config.feishu is not None, "not a bridge"
        return f"http://{self.config.feishu.listen}"

    def webhook_up(self) -> bool:
        """The webhook intake answers ``GET /healthz`` with 200 (raises once the node ended)."""
        if not self.alive():
            return False
        try:
            with urllib.request.urlopen(f"{self.hook}/healthz", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def deliver(self, envelope: dict[str, Any]) -> int:
        """POST ``envelope`` as Feishu does (encrypted, signed); the HTTP status (0: no answer)."""
        assert self.config.feishu is not None, "not a bridge"
        body = encrypted_body(envelope, ENCRYPT_KEY)
        request = urllib.request.Request(f"{self.hook}{self.config.feishu.path}", data=body,
                                         headers=signed_headers(body, ENCRYPT_KEY),
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0
