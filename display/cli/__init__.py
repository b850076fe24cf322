"""The ``room-display`` command.

Exit codes (README): 0 ok, 1 a problem was found (bad config, unreachable device...),
2 usage error. Errors are one line naming the file, key and fix; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from display import __version__
from display.cli.signals import install_signal_handlers
from display.config import Config, DeviceKind, DeviceProtocol, default_config_path, load_config
from display.errors import RoomDisplayError
from display.outputs import Palette

log = logging.getLogger("display")

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 300 seconds")
    return value


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``-c`` and ``-v``: accepted before the command, after it, and after a ``map`` verb.

    Sub-parsers use ``SUPPRESS`` as default so a later level that did not see the option does
    not overwrite what an earlier level parsed (argparse copies sub-parser defaults over).
    """
    parser.add_argument("-c", "--config", metavar="FILE", default=default,
                        help="config file (default: $ROOM_DISPLAY_CONFIG, then "
                             "/etc/room-display/config.toml, then ./room-display.toml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if default is None else default,
                        help="log debug details")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="room-display",
        description="Show Feishu meeting-room bookings on LED lights and e-ink door signs.")
    parser.add_argument("--version", action="version", version=f"room-display {__version__}")
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", parents=[common], help="run the node as configured")
    run.add_argument("--replay", metavar="FILE", type=Path,
                     help="apply Feishu events from a JSON-lines file first")

    demo = sub.add_parser("demo", parents=[common],
                          help="run the built-in demo: local webhook, virtual panels, no account")
    demo.add_argument("--dir", type=Path, default=Path("demo-state"),
                      help="where the demo keeps its config, store and panels (default: "
                           "./demo-state)")
    demo.add_argument("--port", type=int, default=7777, help="webhook port (default 7777)")
    demo.add_argument("--web-port", type=int, default=None,
                      help="the web page's port (default 8470, skipped when taken; 0: any "
                           "free port)")

    status = sub.add_parser("status", parents=[common],
                            help="every room's state, bookings and device health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true",
                        help="refresh in place every second (with --json: one JSON document "
                             "per line, every second)")

    sub.add_parser("check", parents=[common],
                   help="validate the config and check Feishu, broker and devices")

    preview = sub.add_parser("preview", parents=[common], help="the image an e-ink sign shows now")
    preview.add_argument("room", help="room open_id or name")
    preview.add_argument("-o", "--output", type=Path, help="PNG file (default: ROOM.png)")
    preview.add_argument("--size", help="panel size WxH when the room has no e-ink device")

    _add_map_parser(sub, common)

    identify = sub.add_parser("identify", parents=[common],
                              help="blink an LED or draw a test pattern on a sign")
    identify.add_argument("device", help="device id")
    identify.add_argument("--seconds", type=_positive_seconds, default=10.0,
                          help="how long to show the pattern, up to 300 (default 10)")

    rooms = sub.add_parser("rooms", parents=[common],
                           help="list the Feishu tenant's meeting rooms and their omm_ ids")
    rooms.add_argument("name", nargs="?", default="",
                       help="show only rooms whose name contains this (any case)")
    rooms.add_argument("--json", action="store_true", help="machine-readable output")

    test_event = sub.add_parser(
        "send-test-event", parents=[common],
        help="book (or cancel) a test meeting through the running node's own intake")
    test_event.add_argument("room", help="room open_id or name")
    test_event.add_argument("--minutes", type=_minutes, default=30,
                            help="length of the booking from now, 1 to 1440 (default 30)")
    test_event.add_argument("--cancel", action="store_true",
                            help="cancel the room's test bookings instead")

    checkin = sub.add_parser("checkin", parents=[common],
                             help="check in to a room's meeting (or end it) on the running node")
    checkin.add_argument("room", help="room open_id or name")
    checkin.add_argument("--end", action="store_true",
                         help="end the meeting now and free the room (ENDED_BEFORE_DUE)")
    return parser


def _minutes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of minutes") from None
    if not 0 < value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 1440 minutes")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("Lark").setLevel(logging.WARNING)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except RoomDisplayError as exc:
        print(f"room-display: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `room-display status | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK


def _config(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    """The config named by ``-c`` (or the default); ``secrets=False`` for commands that need
    none, so they neither read credentials nor fail on unreadable ones."""
    return load_config(default_config_path(args.config), resolve_secrets=secrets)


# -- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from display.app import App

    config = _config(args)
    from display.intake.feishu.child import refusal

    problem = refusal(config)  # the intake child would refuse it: say so before starting
    if problem is not None:
        raise problem
    with App(config, intake_args=["-v"] if args.verbose else []) as app:
        install_signal_handlers(app)
        if args.replay:
            app.replay(args.replay)
        app.start_intake()
        app.watch_config()
        log.info("node %s running as %s with %d room(s)", config.node.name, config.role,
                 len(config.rooms))
        app.run()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from display.cli.demo import run_demo

    code: int = run_demo(args.dir, args.port, args.web_port)
    return code


# -- status --------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from display.status import read_status, render_text

    config = _config(args, secrets=False)
    while True:
        doc = read_status(config)
        if args.json and args.watch:
            # A stream for programs: one document per line, no terminal control codes.
            print(json.dumps(doc, ensure_ascii=False), flush=True)
            time.sleep(1)
            continue
        out = json.dumps(doc, ensure_ascii=False, indent=2) if args.json else render_text(doc)
        if not args.watch:
            print(out)
            return EXIT_OK
        # Clear the screen and home the cursor, then redraw: a live board for a terminal.
        sys.stdout.write("\x1b[H\x1b[2J" + out + "\n")
        sys.stdout.flush()
        time.sleep(1)


# -- check ---------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from display.cli.check import run_checks

    path = default_config_path(args.config)
    config = load_config(path)
    print(f"config {path}: ok ({config.role}, {len(config.rooms)} room(s), "
          f"{len(config.devices())} device(s))")
    problems = 0
    for line, ok in run_checks(config):
        print(("ok      " if ok else "PROBLEM ") + line)
        problems += 0 if ok else 1
    return EXIT_OK if problems == 0 else EXIT_PROBLEM


# -- preview / identify ---------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace) -> int:
    from display.cli.preview import preview

    config = _config(args, secrets=False)
    out = preview(config, args.room, args.output, args.size)
    print(out)
    return EXIT_OK


def cmd_identify(args: argparse.Namespace) -> int:
    from display.cli.identify import identify

    config = _config(args)
    print(identify(config, args.device, args.seconds))
    return EXIT_OK


# -- Feishu tools ---------------------------------------------------------------------------------


def cmd_rooms(args: argparse.Namespace) -> int:
    from display.cli.rooms import list_rooms

    print(list_rooms(_config(args), args.name, as_json=args.json))
    return EXIT_OK


def cmd_send_test_event(args: argparse.Namespace) -> int:
    from display.cli.send_test_event import describe, send_test_event

    config = _config(args)
    sent = send_test_event(config, args.room, minutes=args.minutes, cancel=args.cancel)
    print(describe(sent, config, args.config))
    return EXIT_OK


def _add_map_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    mapping = sub.add_parser("map", parents=[common],
                             help="list and edit rooms and devices in the config file")
    verbs = mapping.add_subparsers(dest="verb", metavar="VERB")
    verbs.add_parser("list", parents=[common], help="rooms and their devices (the default)")
    add_room = verbs.add_parser("add-room", parents=[common], help="add a room")
    add_room.add_argument("open_id", metavar="ID_OR_NAME",
                          help="the room's Feishu id (omm_...), or its Feishu name or a unique "
                               "part of it (asks Feishu: needs [feishu] app_id/app_secret)")
    add_room.add_argument("name", nargs="?",
                          help="name shown on the sign (default: Feishu's name, or the id)")
    rename = verbs.add_parser("rename-room", parents=[common], help="change a room's name")
    rename.add_argument("room", help="open_id or current name")
    rename.add_argument("name", help="new name")
    remove_room = verbs.add_parser("remove-room", parents=[common],
                                   help="remove a room and its devices")
    remove_room.add_argument("room", help="open_id or name")
    add_device = verbs.add_parser("add-device", parents=[common], help="add a device to a room")
    add_device.add_argument("room", help="open_id or name")
    add_device.add_argument("id", help="a new device id, e.g. 3f-door-led")
    add_device.add_argument("--kind", choices=[k.value for k in DeviceKind], required=True)
    add_device.add_argument("--url", required=True,
                            help="serial port or pyserial URL, mqtt:TOPIC or virtual:DIR")
    add_device.add_argument("--protocol", choices=[p.value for p in DeviceProtocol])
    add_device.add_argument("--size", help="e-ink size WxH, e.g. 296x128")
    add_device.add_argument("--palette", choices=[p.value for p in Palette])
    add_device.add_argument("--rotation", type=int, choices=[0, 90, 180, 270])
    remove_device = verbs.add_parser("remove-device", parents=[common], help="remove a device")
    remove_device.add_argument("id", help="device id")


def cmd_map(args: argparse.Namespace) -> int:
    from display.cli import mapedit

    path = default_config_path(args.config)
    verb = args.verb or "list"
    if verb == "list":
        print(mapedit.describe(load_config(path, resolve_secrets=False)))
        return EXIT_OK
    if verb == "add-room":  # a name is looked up in Feishu's directory before any edit
        from display.cli.rooms import new_room

        args.open_id, args.name, found = new_room(path, args.open_id, args.name)
        if found is not None:
            print(f"Feishu room {found.name!r}: {found.room_id}")
    changes: dict[str, Any] = {
        "add-room": lambda e: e.add_room(args.open_id, args.name),
        "rename-room": lambda e: e.rename_room(args.room, args.name),
        "remove-room": lambda e: e.remove_room(args.room),
        "add-device": lambda e: e.add_device(args.room, mapedit.DeviceSpec(
            id=args.id, kind=args.kind, url=args.url, protocol=args.protocol, size=args.size,
            palette=args.palette, rotation=args.rotation)),
        "remove-device": lambda e: e.remove_device(args.id),
    }
    config = mapedit.edit(path, changes[verb])
    print(f"{path}: saved ({verb}); a running node (run or demo) reloads it by itself")
    print(mapedit.describe(config))
    return EXIT_OK


def cmd_checkin(args: argparse.Namespace) -> int:
    from display.checkin.control import request
    from display.checkin.service import Action

    config = _config(args, secrets=False)
    result = request(config.node.state_dir, args.room, Action.END if args.end else Action.IN)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return EXIT_OK if result.ok else EXIT_PROBLEM


COMMANDS = {
    "checkin": cmd_checkin,
    "map": cmd_map,
    "run": cmd_run,
    "demo": cmd_demo,
    "status": cmd_status,
    "check": cmd_check,
    "preview": cmd_preview,
    "identify": cmd_identify,
    "rooms": cmd_rooms,
    "send-test-event": cmd_send_test_event,
}

