"""A node serving its web page, for the web tests: :class:`WebNode` runs ``room-display run``
(webhook intake) as a process; :func:`node_with_web` runs a node's loop on a thread of this
process with a fake clock and no intake, for tests that move the clock or feed its status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from display.config import Secret, WebConfig, parse_config
from display.devices.factory import make_device
from display.node import Node
from display.store import ScheduleStore
from display.testing.broker import free_port
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for
from display.web.server import WebServer

XSS_NAME = '<script>alert("x")</script><img src=x onerror=alert(1)> & Co'

DEFAULT_ROOMS = """\
[[rooms]]
open_id = "omm_a"
name = "3F Large 大会议室"

[[rooms.devices]]
id = "a-sign"
kind = "eink"
url = "virtual:panels"
size = "296x128"

[[rooms]]
open_id = "omm_b"
name = "5F Focus"

[[rooms.devices]]
id = "b-led"
kind = "led"
url = "socket://127.0.0.1:{dead}"

[[rooms]]
open_id = "omm_x"
name = {xss}
"""

CONFIG = """\
[node]
name = "{node_name}"
language = "{language}"
timezone = "{timezone}"
state_dir = "state"
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{hook}"
verification_token = "vtoken"
resync = false

[web]
listen = "127.0.0.1:{web}"
{token}

{rooms}
"""


class WebNode:
    """Writes the config, starts and stops the node process, talks HTTP to it."""

    def __init__(self, directory: Path, *, token: str = "", language: str = "en",
                 rooms: list[tuple[str, ...]] | None = None,
                 timezone: str = "", node_name: str = "web-test") -> None:
        """``rooms``: (open_id, name[, devices TOML]) instead of the three default rooms;
        ``timezone``: the node's zone (default: the system's)."""
        self.directory = directory
        self.hook_port = free_port()
        self.web_port = free_port()
        self.token = token
        self.config = directory / "room-display.toml"
        dead = free_port()
        room_text = (DEFAULT_ROOMS.format(dead=dead, xss=json.dumps(XSS_NAME)) if rooms is None
                     else "".join(f"[[rooms]]\nopen_id = {json.dumps(r[0])}\n"
                                  f"name = {json.dumps(r[1])}\n{''.join(r[2:])}\n"
                                  for r in rooms))
        self.config.write_text(CONFIG.format(
            hook=self.hook_port, web=self.web_port, language=language, timezone=timezone,
            node_name=node_name,
            token=f'token = "{token}"' if token else "", rooms=room_text),
            encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "display", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
        wait_for(lambda: self.get("/api/status")[0] == 200 and self.webhook_up(), 120,
                 "the node's web page and webhook")

    def kill(self) -> None:
        """SIGKILL the node and its intake child (its process group), as a crash would."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        if self.token and "token=" not in path and "Authorization" not in (headers or {}):
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except OSError:
            return 0, {}, b""

    def status(self) -> dict[str, Any]:
        code, _, body = self.get("/api/status")
        return json.loads(body) if code == 200 else {}

    def room(self, open_id: str) -> dict[str, Any]:
        return next(r for r in self.status()["rooms"] if r["open_id"] == open_id)

    def webhook_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.hook_port}/healthz",
                                        timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def book(self, room: str | tuple[str, ...], *, kind: str = "created", uid: str = "bk1",
             minutes: int = 30, start: datetime | None = None) -> None:
        """Post a booking of ``room`` (or rooms) from ``start`` (a minute ago by default) to the
        node's webhook, as a Feishu event."""
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        rooms = (room,) if isinstance(room, str) else room
        body = json.dumps(envelope(kind, uid=uid, start=start,
                                   end=start + timedelta(minutes=minutes),
                                   rooms=rooms)).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.hook_port}/webhook/event", data=body,
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200, answer.read()


#: Floors, buildings and room names as a real site has them (the board groups by the prefix).
_KINDS = ("大会议室", "Focus", "洽谈室", "Board Room", "Phone Booth", "培训室", "Huddle", "Studio")


def site_rooms(count: int) -> list[tuple[str, str]]:
    """``count`` rooms on floors 1F.. (eight a floor) with realistic, mixed-language names."""
    rooms = []
    for i in range(count):
        floor, k = divmod(i, len(_KINDS))
        name = f"{floor + 1}F {_KINDS[k]}" + (f" {chr(65 + floor % 3)}" if k % 3 == 0 else "")
        rooms.append((f"omm_{i:03d}", name))
    return rooms


def sign(device_id: str) -> str:
    """A 296x128 e-ink sign on a virtual panel, as TOML for ``WebNode(rooms=...)``."""
    return (f'[[rooms.devices]]\nid = "{device_id}"\nkind = "eink"\nurl = "virtual:panels"\n'
            'size = "296x128"\n')


def unplugged_led(device_id: str) -> str:
    """An LED strip on a port nobody listens on (offline), as TOML for ``WebNode``."""
    return (f'[[rooms.devices]]\nid = "{device_id}"\nkind = "led"\n'
            f'url = "socket://127.0.0.1:{free_port()}"\n')


def book_states(web: WebNode, rooms: list[str]) -> dict[str, str]:
    """Book ``rooms`` into every state, round robin: busy, ending, soon, free until later, free.

    Returns the state each room is meant to be in (one event per state, naming its rooms).
    """
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    plan = {"busy": (now - timedelta(minutes=5), 65), "ending": (now - timedelta(minutes=52), 57),
            "soon": (now + timedelta(minutes=6), 30), "free": (now + timedelta(minutes=95), 30)}
    order = ("busy", "ending", "soon", "free", "free")
    meant = {room: order[i % len(order)] for i, room in enumerate(rooms)}
    for state, (start, minutes) in plan.items():
        picked = tuple(r for i, r in enumerate(rooms) if order[i % len(order)] == state
                       and (state != "free" or i % len(order) == 3))
        if picked:
            web.book(picked, uid=f"states-{state}", start=start, minutes=minutes)
    return meant


@dataclass(frozen=True)
class ServedNode:
    """What :func:`node_with_web` runs: the node, its fake clock and its web server."""

    node: Node
    clock: FakeClock
    web: WebServer

    @property
    def url(self) -> str:
        """The page's address (``http://127.0.0.1:port``)."""
        return f"http://{self.web.address}"


@contextmanager
def node_with_web(directory: Path, config_text: str, now: datetime, *,
                  setup: Callable[[Node, FakeClock], object] | None = None
                  ) -> Iterator[ServedNode]:
    """A node from ``config_text`` (its file in ``directory``) on a :class:`FakeClock` at
    ``now``, its loop on a thread and its web page on a free loopback port without a token.

    ``setup(node, clock)`` runs before the loop starts (status sources, link states). On the
    way out the page closes first, then the loop stops, then the node and its store.
    """
    config = parse_config(config_text, directory / "room-display.toml")
    clock = FakeClock(now)
    store = ScheduleStore(directory / "schedule.db", durable=False)
    node = Node(config, store, clock, make_device)
    stop = threading.Event()
    loop = threading.Thread(target=node.run, args=(stop,), name="node-loop", daemon=True)
    web: WebServer | None = None
    try:
        if setup is not None:
            setup(node, clock)
        loop.start()
        web = WebServer(WebConfig(listen="127.0.0.1:0", token=Secret("")), node)
        if not web.start():
            raise RuntimeError("the node's web page did not start")
        yield ServedNode(node, clock, web)
    finally:
        if web is not None:
            web.close()
        stop.set()
        node.wake()
        if loop.is_alive():
            loop.join(timeout=5)
        node.close()
        store.close()
