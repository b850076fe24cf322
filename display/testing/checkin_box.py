"""A single box's node with check-in on a :class:`~display.testing.clock.FakeClock`, for tests.

The same parts as ``room-display run`` (:class:`~display.node.Node`, the store, the
:class:`~display.checkin.service.CheckinService` releasing through the real helper process and
lark-oapi) without the intake child: bookings go straight into the store, and the Feishu
stand-in answers free/busy and ``instance/reply``. A 10-minute window costs no real time.

``python -m display.testing.checkin_box CONFIG ISO_TIME...`` runs one such node in a process of
its own, runs a pass of its loop at each of those (fake) times, prints ``ticked`` and waits for
stdin to close: a test kills it with SIGKILL to play a node dying during the window.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from display.checkin.releaser import run_helper
from display.checkin.service import Action, CheckinService
from display.config import Config, load_config
from display.devices.factory import make_device
from display.model import Booking, EventKind, RoomEvent
from display.node import Node
from display.store import ScheduleStore, store_path
from display.testing.clock import FakeClock

#: Monday 09:00 UTC, a meeting's start in the tests.
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def write_box_config(path: Path, *, domain: str, app_id: str, app_secret: str,
                     mode: str = "release", window: int = 10, rooms: tuple[str, ...] = ("omm_a",),
                     extra: str = "", devices: str = "") -> Path:
    """A single box's config: ``[feishu]`` at ``domain``, ``[checkin]``, the rooms (``extra``:
    more tables, e.g. ``[mqtt]``; ``devices``: ``[[rooms.devices]]`` of the first room)."""
    lines = ["[node]", f"state_dir = {json.dumps(str(path.parent / 'state'))}",
             'timezone = "UTC"', "", "[feishu]", f"app_id = {json.dumps(app_id)}",
             f"app_secret = {json.dumps(app_secret)}", f"domain = {json.dumps(domain)}",
             "", "[checkin]", f"mode = {json.dumps(mode)}", f"window_minutes = {window}", extra]
    for i, room in enumerate(rooms):
        lines += ["", "[[rooms]]", f"open_id = {json.dumps(room)}", devices if i == 0 else ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class CheckinBox:
    """Node + store + check-in service at ``clock``; a context manager."""

    def __init__(self, config_path: Path, clock: FakeClock, *, reply_timeout: float = 5.0,
                 python: str = sys.executable) -> None:
        self.config: Config = load_config(config_path)
        self.clock = clock
        self.store = ScheduleStore(store_path(self.config), durable=False)
        self.node = Node(self.config, self.store, clock, make_device)
        self.service = CheckinService(
            self.config, self.store, clock, self.node.notify,
            releaser=lambda path, room, booking, status: run_helper(
                path, room, booking, status, python=python, reply_timeout=reply_timeout))
        self.node.set_checkin(self.service.room_checkin)
        self.node.add_status_source("checkin", self.service.status)
        # As App wires it: a panel's button press goes to the service.
        self.node.on_press = self._pressed
        self._events = 0

    def _pressed(self, room: str, action: str) -> None:
        self.service.press(room, Action(action), "button")

    def __enter__(self) -> CheckinBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.service.close()
        self.node.close()
        self.store.close()

    def book(self, uid: str, start: datetime, end: datetime, *, room: str = "omm_a",
             organizer: str = "ou_alice", original_time: int = 0) -> Booking:
        """Commit a booking as the intake would (a ``created`` event at the clock's time)."""
        self._events += 1
        event = RoomEvent(uuid=f"ev-{uid}-{self._events}", kind=EventKind.CREATED,
                          event_id=f"{uid}_{original_time}", uid=uid,
                          original_time=original_time,
                          event_time_ms=int(self.clock.now().timestamp() * 1000) + self._events,
                          start=start, end=end, room_ids=(room,), organizer_open_id=organizer)
        self.store.apply(event, self.clock.now())
        self.node.notify([room])
        return event.booking()

    def tick_at(self, when: datetime) -> None:
        """Move the clock to ``when`` and run one pass of the loop."""
        if when >= self.clock.now():
            self.clock.advance(when - self.clock.now())  # time passing, not a clock step
        else:
            self.clock.set(when)
        self.node.tick()

    def view(self, room: str = "omm_a") -> Any:
        return self.node.views()[room]


def main(argv: list[str]) -> int:
    """See the module docstring."""
    times = [datetime.fromisoformat(t) for t in argv[1:]]
    box = CheckinBox(Path(argv[0]), FakeClock(times[0]))
    for when in times:
        box.tick_at(when)
    print("ticked", flush=True)
    sys.stdin.read()  # until the test closes it (or kills us)
    box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
