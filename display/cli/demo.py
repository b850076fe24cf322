"""``room-display demo``: the whole pipeline on one machine with no account and no broker.

It writes a demo config (webhook intake on 127.0.0.1, two rooms, virtual LED and e-ink panels),
runs the same :class:`~display.app.App` as ``run``, and prints commands to paste in another
terminal that book a room from now and cancel it again, so the state change can be watched.
"""

from __future__ import annotations

import json
import logging
import shlex
import socket
import sys
import threading
import time
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from display.clock import to_epoch_ms
from display.config import load_config
from display.errors import RoomDisplayError
from display.headline import headline_words

if TYPE_CHECKING:
    from display.app import App
from display.model import RoomView

log = logging.getLogger(__name__)

DEMO_TOKEN = "demo-verification-token"  # demo only: not a secret, the intake is on 127.0.0.1
ROOMS = (("omm_demo_3f_large", "3F 大会议室 Large", "3f-large"),
         ("omm_demo_5f_focus", "5F Focus Room 专注室", "5f-focus"))

CONFIG = """\
# room-display demo: rewritten by `room-display demo` at every start.
# Copy it as a starting point for a real single-box node (examples/ has more).
[node]
name = "demo"
language = "zh+en"
state_dir = "state"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{port}"
path = "/webhook/event"
verification_token = "{token}"   # demo only; real configs use "env:NAME" or "file:/path"
resync = false                   # no Feishu app in the demo: nothing to re-sync from

{rooms}"""

ROOM = """\
[[rooms]]
open_id = "{open_id}"
name = "{name}"

[[rooms.devices]]
id = "{slug}-led"
kind = "led"
url = "virtual:panels"

[[rooms.devices]]
id = "{slug}-sign"
kind = "eink"
url = "virtual:panels"
size = "296x128"
palette = "bwr"
"""


def write_demo_config(directory: Path, port: int) -> Path:
    """Write the demo's config into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    rooms = "\n".join(ROOM.format(open_id=o, name=n, slug=s) for o, n, s in ROOMS)
    path = directory / "room-display.toml"
    path.write_text(CONFIG.format(port=port, token=DEMO_TOKEN, rooms=rooms), encoding="utf-8")
    return path


def booking_envelope(kind: str, room: str, uid: str, start: datetime, end: datetime,
                     version: datetime) -> dict[str, object]:
    """A Feishu v1 envelope as the platform would post it (plain, no encryption)."""
    return {
        "uuid": uuidlib.uuid4().hex, "token": DEMO_TOKEN, "type": "event_callback",
        "ts": f"{version.timestamp():.3f}",
        "event": {
            "type": f"third_party_meeting_room_event_{kind}", "app_id": "cli_demo",
            "tenant_key": "demo", "uid": uid, "original_time": 0, "event_id": f"{uid}_0",
            "event_time": str(to_epoch_ms(version)),
            "start": {"time_stamp": str(to_epoch_ms(start))},
            "end": {"time_stamp": str(to_epoch_ms(end))},
            "meeting_rooms": [{"open_id": room}],
            "organizer": {"open_id": "ou_demo_organizer"},
        },
    }


def curl(url: str, body: dict[str, object]) -> str:
    return (f"curl -s -X POST {url} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}")


def instructions(config_path: Path, url: str, panels: Path, now: datetime) -> str:
    start = now.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=30)
    room, name, _slug = ROOMS[0]
    book = booking_envelope("created", room, "demo-booking", start, end, now)
    cancel = booking_envelope("deleted", room, "demo-booking", start, end,
                              now + timedelta(seconds=1))
    soon_room, soon_name, _ = ROOMS[1]
    soon_start = start + timedelta(minutes=5)
    soon = booking_envelope("created", soon_room, "demo-soon", soon_start,
                            soon_start + timedelta(minutes=25), now)
    cfg = shlex.quote(str(config_path))
    return f"""
room-display demo is running: webhook intake at {url}
Virtual panels are written to {panels}/ (*.json state, *-sign.png e-ink images).

1. Book "{name}" from now for 30 minutes (the panel turns busy within a second):
   {curl(url, book)}

2. Cancel it again (the panel turns free):
   {curl(url, cancel)}

3. Book "{soon_name}" starting in 5 minutes (the panel shows "starting soon"):
   {curl(url, soon)}

Watch all rooms:   room-display status -c {cfg} --watch
See the e-ink sign: room-display preview -c {cfg} {room} -o sign.png
Stop with Ctrl-C. State changes are printed below.
"""


def port_taken(port: int) -> None:
    """Fail at once, in one line, when the demo's port is in use (another demo, a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RoomDisplayError(f"demo --port {port}: 127.0.0.1:{port} is taken "
                                   f"({exc.strerror}); stop what uses it or pick another "
                                   "--port") from None


def _wait_ready(app: App, timeout: float) -> str | None:
    """The intake's listen address once it answers (importing lark_oapi takes seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not app.stopped:
        if app.intake is not None and app.intake.ready_listen:
            return app.intake.ready_listen
        time.sleep(0.1)
    return None


def run_demo(directory: Path, port: int) -> int:
    """Run the demo until Ctrl-C; returns the exit code."""
    from display.app import App

    directory = directory.resolve()
    port_taken(port)
    try:
        written = write_demo_config(directory, port)
    except OSError as exc:
        raise RoomDisplayError(f"demo --dir {directory}: not usable ({exc.strerror or exc}); "
                               "pass a writable folder") from None
    config = load_config(written)
    def on_view(view: RoomView) -> None:
        occ = view.occupancy
        local = occ.at.astimezone(view_tz).strftime("%H:%M:%S")
        words = headline_words(occ, view_tz)  # the sign's "until", by the one rule
        until = f" {words}" if words else ""
        meeting = occ.current or (occ.next[0] if occ.next else None)
        span = (f" (meeting {meeting.start.astimezone(view_tz):%H:%M}-"
                f"{meeting.end.astimezone(view_tz):%H:%M})") if meeting else ""
        stale = " (stale)" if view.stale else ""
        print(f"{local}  {view.name}: {occ.state.value.upper()}{until}{span}{stale}", flush=True)

    view_tz = config.node.tz
    with App(config) as app:
        from display.cli.signals import install_signal_handlers

        install_signal_handlers(app)
        app.node.add_listener(on_view)
        print(f"room-display demo: starting (config {directory / 'room-display.toml'}) ...",
              flush=True)
        app.start_intake()
        app.watch_config()  # `room-display map -c ...` edits show up in the demo too
        runner = threading.Thread(target=app.run, name="node", daemon=True)
        runner.start()
        listen = _wait_ready(app, 120)
        if listen is None:
            print("room-display demo: the webhook intake did not start within 120 s; see the "
                  "log above", file=sys.stderr)
            app.stop()
            return 1
        url = f"http://{listen}{config.feishu.path if config.feishu else ''}"
        print(instructions(directory / "room-display.toml", url, directory / "panels",
                           datetime.now(UTC)), flush=True)
        if app.web is not None:
            print(f"Every room live in a browser: http://{app.web.address}/ "
                  f"(lobby board: /board)\n", flush=True)
        runner.join()
    return 0
