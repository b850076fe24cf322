"""``room-display demo``: the whole pipeline on one machine with no account and no broker.

It writes a demo config (webhook intake and web page on 127.0.0.1, two rooms, virtual LED and
e-ink panels), runs the same :class:`~display.app.App` as ``run``, and prints commands to paste
in another terminal that book a room from now and cancel it again, so the state change can be
watched. Each ``curl`` command makes a fresh delivery id and version when it runs (the shell
fills them in), so it works every time it is pasted, not once; the ``room-display`` commands
name the program as this shell can run it (the absolute path when it is not on ``PATH``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

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

[web]                            # the live page: every room and panel
listen = "127.0.0.1:{web_port}"

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


#: The demo's web page port unless ``--web-port`` says otherwise (the ``[web]`` default).
WEB_PORT = 8470


def write_demo_config(directory: Path, port: int, web_port: int = WEB_PORT) -> Path:
    """Write the demo's config into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    rooms = "\n".join(ROOM.format(open_id=o, name=n, slug=s) for o, n, s in ROOMS)
    path = directory / "room-display.toml"
    path.write_text(CONFIG.format(port=port, web_port=web_port, token=DEMO_TOKEN, rooms=rooms),
                    encoding="utf-8")
    return path


def program() -> str:
    """How this shell can run ``room-display``: the bare name when ``PATH`` finds this very
    program, else the absolute path of the script beside this Python (``scripts/demo`` runs
    ``.venv/bin/room-display``, which is not on ``PATH``), else ``python -m display``."""
    beside = Path(sys.executable).parent / "room-display"
    found = shutil.which("room-display")
    if found is not None and beside.exists() and os.path.samefile(found, beside):
        return "room-display"
    if beside.exists():
        return shlex.quote(str(beside.absolute()))
    return f"{shlex.quote(sys.executable)} -m display"


def booking_envelope(kind: str, room: str, uid: str, start: str, end: str, version: str,
                     delivery: str, sent: str) -> dict[str, object]:
    """A Feishu v1 envelope as the platform would post it (plain, no encryption); times are
    epoch milliseconds (``sent``: seconds) as the strings Feishu sends."""
    return {
        "uuid": delivery, "token": DEMO_TOKEN, "type": "event_callback", "ts": sent,
        "event": {
            "type": f"third_party_meeting_room_event_{kind}", "app_id": "cli_demo",
            "tenant_key": "demo", "uid": uid, "original_time": 0, "event_id": f"{uid}_0",
            "event_time": version, "start": {"time_stamp": start}, "end": {"time_stamp": end},
            "meeting_rooms": [{"open_id": room}],
            "organizer": {"open_id": "ou_demo_organizer"},
        },
    }


#: Filled in by the shell each time a printed command runs (POSIX sh, GNU date): a new delivery
#: id (Feishu's ``uuid``, deduplicated), a newer version (``event_time`` in ms, so a booking
#: made again after its cancel wins) and times from the current minute. Each placeholder sits
#: inside a JSON string of the single-quoted body: the shell closes the quote around it.
_SHELL = {
    "@UUID@": "$(cat /proc/sys/kernel/random/uuid)",
    "@VERSION_MS@": "$(date +%s%3N)",
    "@NOW_S@": "$(date +%s)",
}
_START = re.compile(r"@START(\d+)@")


def _minute_ms(offset_minutes: int) -> str:
    """Shell arithmetic: the current minute plus ``offset_minutes``, in epoch ms."""
    return f"$(( $(date +%s) / 60 * 60000 + {offset_minutes * 60000} ))"


def repeatable_booking(kind: str, room: str, uid: str, start_minutes: int,
                       minutes: int) -> dict[str, object]:
    """A demo envelope with placeholders the shell fills in when the command runs."""
    return booking_envelope(kind, room, uid, f"@START{start_minutes}@",
                            f"@START{start_minutes + minutes}@", "@VERSION_MS@", "@UUID@",
                            "@NOW_S@")


def curl(url: str, body: dict[str, object]) -> str:
    """A ``curl`` command posting ``body``; its placeholders are filled in by the shell."""
    text = shlex.quote(json.dumps(body, separators=(",", ":")))
    for placeholder, shell in _SHELL.items():
        text = text.replace(placeholder, f"'\"{shell}\"'")
    for minutes in sorted({int(m) for m in _START.findall(text)}):
        text = text.replace(f"@START{minutes}@", f"'\"{_minute_ms(minutes)}\"'")
    return f"curl -s -X POST {url} -H 'Content-Type: application/json' -d {text}"


def instructions(config_path: Path, url: str, panels: Path) -> str:
    room, name, _slug = ROOMS[0]
    book = repeatable_booking("created", room, "demo-booking", 0, 30)
    cancel = repeatable_booking("deleted", room, "demo-booking", 0, 30)
    soon_room, soon_name, _ = ROOMS[1]
    soon = repeatable_booking("created", soon_room, "demo-soon", 5, 25)
    cfg = shlex.quote(str(config_path))
    run = program()
    return f"""
room-display demo is running: webhook intake at {url}
Virtual panels are written to {panels}/ (*.json state, *-sign.png e-ink images).

1. Book "{name}" from now for 30 minutes (the panel turns busy within a second):
   {curl(url, book)}

2. Cancel it again (the panel turns free):
   {curl(url, cancel)}

3. Book "{soon_name}" starting in 5 minutes (the panel shows "starting soon"):
   {curl(url, soon)}

Each command works again and again (the shell gives it a fresh id and time).

Watch all rooms:   {run} status -c {cfg} --watch
See the e-ink sign: {run} preview -c {cfg} {room} -o sign.png
Stop with Ctrl-C. State changes are printed below.
"""


def port_taken(port: int, option: str = "--port") -> None:
    """Fail at once, in one line, when the demo's port is in use (another demo, a server)."""
    if port == 0:  # any free port
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RoomDisplayError(f"demo {option} {port}: 127.0.0.1:{port} is taken "
                                   f"({exc.strerror}); stop what uses it or pick another "
                                   f"{option}") from None


def _wait_ready(app: App, timeout: float) -> str | None:
    """The intake's listen address once it answers (importing lark_oapi takes seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not app.stopped:
        if app.intake is not None and app.intake.ready_listen:
            return app.intake.ready_listen
        time.sleep(0.1)
    return None


def run_demo(directory: Path, port: int, web_port: int | None = None) -> int:
    """Run the demo until Ctrl-C; returns the exit code.

    ``web_port``: the page's port, refused at once when taken; ``None`` tries
    :data:`WEB_PORT` and, when that is taken (a node already serves its page there), runs on
    without the page, saying so.
    """
    from display.app import App

    directory = directory.resolve()
    if web_port is not None and port == web_port and port != 0:
        raise RoomDisplayError(f"demo --port {port} --web-port {web_port}: the webhook and the "
                               "web page need a port each; pick another --web-port")
    port_taken(port)
    if web_port is not None:
        port_taken(web_port, "--web-port")
    else:
        web_port = WEB_PORT
    try:
        written = write_demo_config(directory, port, web_port)
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
        print(instructions(directory / "room-display.toml", url, directory / "panels"),
              flush=True)
        if app.web is not None:
            print(f"Every room live in a browser: http://{app.web.address}/ "
                  f"(lobby board: /board)\n", flush=True)
        else:
            print(f"No web page: 127.0.0.1:{web_port} could not be used (see the log above); "
                  "pick another --web-port\n", flush=True)
        runner.join()
    return 0
