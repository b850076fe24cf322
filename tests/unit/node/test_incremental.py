"""The incremental node against the full recomputation: random schedules, clocks and edits.

The reference node recomputes every room at every pass (as the loop did before it kept a queue
of next changes); the node under test recomputes only the rooms whose bookings changed or whose
next change is due. Both see the same store, clock, link changes and edits, in the same passes;
after each pass their views, the views their listeners were given and their status documents
must be the same, and every view must be what :func:`occupancy` says of the store at that
instant.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.clock import Clock
from display.config import Config, DeviceConfig, parse_config
from display.devices.base import Device
from display.model import Booking, RoomView
from display.node import LOOKBACK, Node, status_path
from display.occupancy import Thresholds, next_change, occupancy
from display.store import ScheduleStore
from display.testing.clock import FakeClock

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # 18:00 on a Friday in Shanghai
ROOMS = ("omm_a", "omm_b", "omm_c")

CONFIG = """
[node]
name = "prop-node"
timezone = "Asia/Shanghai"
state_dir = "state"
open_hours = "Mon-Fri 08:00-20:00"
[occupancy]
stale_after_minutes = 15
soon_minutes = 10
ending_minutes = 5
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms]]
open_id = "omm_b"
name = "Room B"
open_hours = "always"
[[rooms]]
open_id = "omm_c"
name = "Room C"
"""


class FullNode(Node):
    """The reference: every room recomputed at every pass."""

    def tick(self) -> float:
        self._recompute_all = True
        return super().tick()


def no_device(dev: DeviceConfig, clock: Clock) -> Device:
    raise AssertionError("no devices in this test")


booking = st.tuples(st.sampled_from(ROOMS), st.integers(-180, 24 * 60),
                    st.integers(1, 240))
step = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 6 * 3600)),
    st.tuples(st.just("book"), booking),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("link"), st.booleans()),
)


def comparable(view: RoomView) -> tuple[Any, ...]:
    occ = view.occupancy  # ``at`` is the instant of the last recomputation: it may differ
    return (view.open_id, view.name, view.stale, view.as_of, view.closed_until, occ.state,
            occ.since, occ.until, occ.current, occ.next, occ.today)


def status_rooms(node: Node) -> Any:
    return node.status()["rooms"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(initial=st.lists(booking, max_size=8), steps=st.lists(step, min_size=1, max_size=25))
def test_incremental_node_matches_the_full_recomputation(
        tmp_path_factory: Any, initial: list[tuple[str, int, int]],
        steps: list[tuple[str, Any]]) -> None:
    tmp: Path = tmp_path_factory.mktemp("inc")
    config: Config = parse_config(CONFIG, tmp / "inc" / "room-display.toml")
    full_config: Config = parse_config(CONFIG, tmp / "full" / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(tmp / "schedule.db", durable=False)
    made: list[Booking] = []

    def add(room: str, offset: int, minutes: int) -> None:
        start = clock.now() + timedelta(minutes=offset)
        made.append(Booking(f"e{len(made)}", f"u{len(made)}", 0, start,
                            start + timedelta(minutes=minutes), "ou_x"))
        rooms_of[made[-1].event_id] = room
        store.replace_room(room, [b for b in made if rooms_of[b.event_id] == room])

    rooms_of: dict[str, str] = {}
    for room, offset, minutes in initial:
        add(room, offset, minutes)
    shown: dict[str, list[tuple[Any, ...]]] = {"inc": [], "full": []}
    inc = Node(config, store, clock, no_device,
               listeners=[lambda v: shown["inc"].append(comparable(v))])
    full = FullNode(full_config, store, clock, no_device,
                    listeners=[lambda v: shown["full"].append(comparable(v))])
    try:
        for node in (inc, full):
            node.set_link("feishu", True)
        for kind, arg in [("advance", 0), *steps]:
            changed: set[str] = set()
            if kind == "advance":
                clock.advance(timedelta(seconds=arg))
            elif kind == "book":
                add(*arg)
                changed.add(arg[0])
            elif kind == "cancel" and made:
                gone = made.pop(arg % len(made))
                room = rooms_of[gone.event_id]
                store.replace_room(room, [b for b in made if rooms_of[b.event_id] == room])
                changed.add(room)
            elif kind == "link":
                for node in (inc, full):
                    node.set_link("feishu", arg)
            for node in (inc, full):
                node.notify(changed)
                node.tick()
            now = clock.now()
            assert ({k: comparable(v) for k, v in inc.views().items()}
                    == {k: comparable(v) for k, v in full.views().items()})
            assert shown["inc"] == shown["full"]
            assert status_rooms(inc) == status_rooms(full)
            written = [json.loads(status_path(c).read_text())["rooms"]
                       for c in (config, full_config)]
            assert written[0] == written[1] == status_rooms(inc)  # the file, joined per room
            for room in ROOMS:
                want = occupancy(store.bookings(room, ending_after=now - LOOKBACK), now,
                                 Thresholds(timedelta(minutes=10), timedelta(minutes=5)),
                                 config.node.tz)
                assert inc.views()[room].occupancy.state is want.state
                assert inc.views()[room].occupancy.next == want.next
    finally:
        for node in (inc, full):
            node.close()
        store.close()


@given(bookings=st.lists(st.tuples(st.integers(-300, 3000), st.integers(1, 300)), max_size=6),
       at=st.integers(0, 2 * 24 * 3600))
def test_occupancy_holds_until_its_next_change(bookings: list[tuple[int, int]], at: int) -> None:
    """Between ``now`` and :func:`next_change` the occupancy is the same; at it, it may move."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    items = [Booking(f"e{i}", f"u{i}", 0, START + timedelta(minutes=s),
                     START + timedelta(minutes=s + d), "ou_x")
             for i, (s, d) in enumerate(bookings)]
    now = START + timedelta(seconds=at)
    th = Thresholds(timedelta(minutes=10), timedelta(minutes=5))
    edge = next_change(items, now, th, tz)
    assert edge > now
    here = occupancy(items, now, th, tz)
    for t in (now + (edge - now) / 2, edge - timedelta(microseconds=1)):
        there = occupancy(items, t, th, tz)
        assert (there.state, there.since, there.until, there.current, there.next, there.today) \
            == (here.state, here.since, here.until, here.current, here.next, here.today)
