"""``room-display send-test-event ROOM [--minutes N] [--cancel]``: a booking through the node's own
intake, as Feishu would make it, so an installer sees a panel change before touching Feishu.

The event is a v1 envelope of the third-party room family with a fresh ``uuid``:

- **webhook node**: sealed as Feishu seals it (encrypted and signed with the node's own Encrypt
  Key, carrying its Verification Token; :func:`~display.intake.feishu.checks.seal`) and POSTed
  to the node's ``[feishu] listen`` and ``path``: every check a real delivery meets applies.
- **long-connection node**: there is no local socket to deliver to (the Feishu connection is
  outgoing), so the envelope takes the intake's own path in this process, validate, dedupe and
  commit to the node's store (:class:`~display.intake.sink.EventSink`, as ``run --replay``
  does), and the running node is told the store changed (``SIGUSR2``); it shows the change at
  once.

The booking's ``uid`` is fixed per room (:func:`booking_uid`), and each booking is an occurrence
of it (``original_time`` = its start), so no targeted re-sync follows it (that is only asked for
after an event for a whole series, ``original_time`` 0). ``--cancel`` deletes the room's test
series, ``original_time`` 0: every test booking of that room goes at once, and a later booking
(a newer ``event_time``) is applied again. Feishu does not know these bookings, so the next full
re-sync pass (``resync_minutes``) removes them too.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from display.clock import to_epoch_ms
from display.config import Config, FeishuConfig, FeishuMode, RoomConfig
from display.errors import ConfigError, RoomDisplayError

#: Seconds to wait for the node's webhook to answer (it answers after its commit).
TIMEOUT = 10.0
MAX_MINUTES = 24 * 60
UID_PREFIX = "room-display-test-"


class SendError(RoomDisplayError):
    """The test event could not be delivered: no node runs, or its intake refused it."""


@dataclass(frozen=True, slots=True)
class Sent:
    """What :func:`send_test_event` did, for the lines printed."""

    room: RoomConfig
    cancel: bool
    start: datetime
    end: datetime
    via: str  # "webhook http://..." or "the store of the node (pid N)"
    verdict: str


def booking_uid(room_id: str) -> str:
    """The booking uid of a room's test bookings (one per room, so --cancel finds them)."""
    return UID_PREFIX + room_id


def find_room(config: Config, ref: str) -> RoomConfig:
    """A configured room by ``open_id``, else by exact name; :class:`ConfigError` otherwise."""
    for room in config.rooms:
        if room.open_id == ref:
            return room
    named = [r for r in config.rooms if r.name == ref]
    if len(named) == 1:
        return named[0]
    known = ", ".join(f"{r.open_id} ({r.name})" for r in config.rooms) or "none"
    problem = f"{len(named)} rooms are named {ref!r}" if named else f"no room {ref!r}"
    raise ConfigError(str(config.path), "rooms", problem,
                      f"use an open_id or name from 'room-display map list' (known: {known})")


def build_envelope(feishu: FeishuConfig, room_id: str, *, cancel: bool, start: datetime,
                  end: datetime, event_time: datetime) -> dict[str, Any]:
    """The v1 envelope Feishu would send for this booking (or its cancellation)."""
    kind = "deleted" if cancel else "created"
    uid = booking_uid(room_id)
    original_time = 0 if cancel else int(start.timestamp())
    return {
        "ts": f"{event_time.timestamp():.3f}",
        "uuid": f"{UID_PREFIX}{uuid.uuid4()}",
        "token": feishu.verification_token.reveal(),
        "type": "event_callback",
        "event": {
            "app_id": feishu.app_id or "room-display-test",
            "tenant_key": "room-display-test",
            "type": f"third_party_meeting_room_event_{kind}",
            "event_id": f"{uid}_{original_time}",
            "event_time": str(to_epoch_ms(event_time)),
            "uid": uid,
            "original_time": original_time,
            "start": {"time_stamp": str(to_epoch_ms(start))},
            "end": {"time_stamp": str(to_epoch_ms(end))},
            "meeting_rooms": [{"open_id": room_id}],
        },
    }


def send_test_event(config: Config, ref: str, *, minutes: int = 30, cancel: bool = False,
                    now: datetime | None = None) -> Sent:
    """Book ``ref`` from now for ``minutes`` (or cancel its test bookings) through the running
    node's intake; raises :class:`SendError` or :class:`ConfigError` with one line."""
    feishu = config.feishu
    if feishu is None:
        raise ConfigError(str(config.path), "feishu", "this node has no Feishu intake (a panel "
                          "agent)", "send the test event on the bridge, whose config has "
                          "[feishu]")
    if not 0 < minutes <= MAX_MINUTES:
        raise ConfigError(str(config.path), "--minutes", f"{minutes} is not 1..{MAX_MINUTES}")
    if feishu.mode is FeishuMode.WEBHOOK and not feishu.verification_token:
        raise ConfigError(str(config.path), "feishu.verification_token", "is not set: the "
                          "webhook refuses every event", "copy it from the app's Events page")
    room = find_room(config, ref)
    pid = _running_node(config)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = now.replace(microsecond=0)  # a whole second: it is the occurrence's original_time
    end = start + timedelta(minutes=minutes if not cancel else 1)
    env = build_envelope(feishu, room.open_id, cancel=cancel, start=start, end=end,
                        event_time=now)
    if feishu.mode is FeishuMode.WEBHOOK:
        via, verdict = post_event(feishu, env)
    else:
        via, verdict = commit_event(config, env, pid)
    return Sent(room, cancel, start, end, via, verdict)


def describe(sent: Sent, config: Config, config_arg: str | None) -> str:
    """The lines printed: what was done, through what, and how to see it."""
    tz = config.node.tz
    what = (f"cancelled the test bookings of {sent.room.name} ({sent.room.open_id})"
            if sent.cancel else
            f"booked {sent.room.name} ({sent.room.open_id}) from "
            f"{sent.start.astimezone(tz):%H:%M} to {sent.end.astimezone(tz):%H:%M}")
    option = f" -c {config_arg}" if config_arg else ""
    again = f"room-display send-test-event {sent.room.open_id}{option}"
    return (f"{what} through {sent.via}: {sent.verdict}\n"
            f"see it: room-display status{option}\n"
            f"{'book again' if sent.cancel else 'undo'}: {again}"
            f"{'' if sent.cancel else ' --cancel'}")


def _running_node(config: Config) -> int:
    from display.status import read_status

    doc = read_status(config)
    node = doc.get("node", {})
    if not node.get("running"):
        reason = node.get("note") or "no running node answers for this config"
        raise SendError(f"no node is running for {config.path} ({reason}); start it "
                        "(systemctl start room-display, or room-display run) and try again")
    return int(node["pid"])


def post_event(feishu: FeishuConfig, env: dict[str, Any]) -> tuple[str, str]:
    """POST ``env`` sealed with the node's keys to its webhook; ``(where, verdict)``."""
    from display.intake.feishu.checks import seal

    body, headers = seal(env, feishu.encrypt_key.reveal(), time.time())
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(feishu.listen_host,
                                                                     feishu.listen_host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{feishu.listen_port}{feishu.path}"
    conn = http.client.HTTPConnection(host, feishu.listen_port, timeout=TIMEOUT)
    try:
        conn.request("POST", feishu.path, body=body, headers=headers)
        response = conn.getresponse()
        status, raw = response.status, response.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SendError(f"cannot reach the node's webhook {url} ({reason}); is the node "
                        "running and its Feishu intake up? (room-display status)") from None
    except http.client.HTTPException as exc:
        raise SendError(f"the node's webhook {url} answered no HTTP: "
                        f"{type(exc).__name__}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {}
    if status != 200 or not isinstance(answer, dict):
        msg = answer.get("msg") if isinstance(answer, dict) else None
        raise SendError(f"the node's webhook {url} refused the test event: HTTP {status}"
                        f"{f': {msg}' if msg else ''}")
    return f"the webhook {url}", str(answer.get("verdict", "accepted"))


def commit_event(config: Config, env: dict[str, Any], pid: int) -> tuple[str, str]:
    """Commit ``env`` through the intake's sink to the node's store, then tell node ``pid``."""
    from display.clock import SystemClock
    from display.errors import EventError, StoreError
    from display.intake.sink import EventSink
    from display.store import ScheduleStore, store_path

    if catches(pid, signal.SIGUSR2) is False:  # its default action would end the node
        raise SendError(f"the running node (pid {pid}) does not take test events yet (it "
                        "started before this version was installed): restart it first")
    path = store_path(config)
    try:
        with ScheduleStore(path) as store:
            accepted = EventSink(store, SystemClock()).accept(env)
    except (StoreError, OSError) as exc:
        raise SendError(f"cannot write the schedule store {path}: {exc} (run as the node's "
                        "user or root: sudo room-display send-test-event)") from None
    except EventError as exc:  # our own envelope: only a bug gets here
        raise SendError(f"the intake refused the test event: {exc}") from None
    try:
        os.kill(pid, signal.SIGUSR2)  # the node re-reads its rooms from the store
    except ProcessLookupError:
        raise SendError(f"the node (pid {pid}) stopped; the test event is stored and "
                        "shows when it starts again") from None
    except PermissionError:
        raise SendError(f"the test event is stored but the node (pid {pid}) belongs to "
                        "another user: run as root (sudo) so it shows at once") from None
    return f"the store of the running node (pid {pid})", accepted.verdict.value


def catches(pid: int, signum: int) -> bool | None:
    """Whether process ``pid`` has a handler for ``signum`` (Linux's ``/proc/PID/status``
    ``SigCgt`` mask); ``None`` when that cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        mask = int(fields["SigCgt"].strip(), 16)
    except (OSError, KeyError, ValueError):
        return None
    return bool(mask >> (signum - 1) & 1)
