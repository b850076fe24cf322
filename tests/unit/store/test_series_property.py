"""Property: any interleaving of pushed events and free/busy answers converges to the truth.

A calendar (the stand-in's :class:`~feishu_standin.Calendar`) changes step by step; every change
makes the event Feishu would push, with ``event_time`` = when it happened. Hypothesis interleaves
the changes with deliveries of those events (in any order, duplicated or never), free/busy
requests (a snapshot of the truth when asked) and the application of their answers (late, out of
order, or never). Whatever the order:

- once every event is delivered, a deleted series or booking shows nowhere, whatever stale
  answer is applied after;
- once every event is delivered and one more answer was asked after the last change, the store
  shows exactly the truth in the window.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.clock import to_epoch_ms
from display.intake.envelope import parse_envelope
from display.intake.feishu.freebusy import parse_freebusy
from display.model import RoomEvent
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.feishu_standin import Calendar, Series

ROOMS = ("omm_a", "omm_b")
UIDS = ("s1", "s2", "s3")
T0 = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)
WINDOW = (T0 - timedelta(hours=1), T0 + timedelta(days=2))
_dbs = itertools.count()

rooms_st = st.sets(st.sampled_from(ROOMS), min_size=1).map(lambda r: tuple(sorted(r)))
change_st = st.one_of(
    st.tuples(st.just("series"), st.sampled_from(UIDS), st.integers(0, 23), rooms_st),
    st.tuples(st.just("oneoff"), st.sampled_from(UIDS), st.integers(0, 40), rooms_st),
    st.tuples(st.just("move"), st.sampled_from(UIDS), st.integers(-3, 3), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.sampled_from(UIDS), st.integers(0, 2)),
    st.tuples(st.just("delete"), st.sampled_from(UIDS), st.booleans()),
)
step_st = st.one_of(
    change_st,
    st.tuples(st.just("deliver"), st.integers(0, 30)),
    st.tuples(st.just("request")),
    st.tuples(st.just("answer"), st.integers(0, 10)),
)


@dataclass
class World:
    """The truth, the events it made and the answers asked so far, on one logical clock."""

    calendar: Calendar = field(default_factory=Calendar)
    kinds: dict[str, str] = field(default_factory=dict)  # uid -> "series" | "oneoff" | "gone"
    events: list[RoomEvent] = field(default_factory=list)
    delivered: set[int] = field(default_factory=set)
    answers: list[tuple[datetime, dict[str, list[Any]]]] = field(default_factory=list)
    tick: int = 0

    def now(self) -> datetime:
        self.tick += 1
        return T0 + timedelta(seconds=self.tick)

    def push(self, kind: str, uid: str, original: int, start: datetime, end: datetime,
             rooms: tuple[str, ...], when: datetime) -> None:
        env = envelope(kind, uid=uid, original_time=original, start=start, end=end,
                       rooms=rooms, uuid=f"u{len(self.events)}-{uid}")
        env["event"]["event_time"] = str(to_epoch_ms(when))
        self.events.append(parse_envelope(env))

    def change(self, step: tuple[Any, ...]) -> None:
        kind, uid = step[0], step[1]
        now = self.now()
        known = self.kinds.get(uid)
        if kind == "series" and known in (None, "series"):
            first = T0 - timedelta(days=3) + timedelta(hours=step[2])
            old = self.calendar.series.get(uid)
            self.calendar.series[uid] = Series(uid, step[3], first, timedelta(minutes=45))
            if old is not None:  # a time change keeps the exceptions Feishu keeps: none here
                for original in old.exceptions:
                    self.push("deleted", uid, original, first, first + timedelta(minutes=1),
                              old.rooms, now)
            self.kinds[uid] = "series"
            self.push("created" if old is None else "updated", uid, 0, first,
                      first + timedelta(minutes=45), step[3], now)
        elif kind == "oneoff" and known in (None, "oneoff"):
            start = T0 + timedelta(hours=step[2])
            self.calendar.one_offs[uid] = (step[3], start, start + timedelta(minutes=30))
            self.kinds[uid] = "oneoff"
            self.push("updated" if known else "created", uid, 0, start,
                      start + timedelta(minutes=30), step[3], now)
        elif kind in ("move", "cancel") and known == "series":
            series = self.calendar.series[uid]
            day = step[-1]
            original, start, end = series.occurrences(T0 + timedelta(days=day - 1),
                                                      T0 + timedelta(days=day))[0]
            if kind == "move":
                span = (start + timedelta(hours=step[2]), end + timedelta(hours=step[2]))
                series.exceptions[original] = span
                self.push("updated", uid, original, *span, series.rooms, now)
            else:
                series.exceptions[original] = None
                self.push("deleted", uid, original, start, end, series.rooms, now)
        elif kind == "delete" and known in ("series", "oneoff"):
            rooms = (self.calendar.series[uid].rooms if known == "series"
                     else self.calendar.one_offs[uid][0])
            self.calendar.series.pop(uid, None)
            self.calendar.one_offs.pop(uid, None)
            self.kinds[uid] = "gone"
            # Feishu may name the rooms, or none: the booking goes from every room either way.
            self.push("deleted", uid, 0, T0, T0 + timedelta(minutes=1),
                      rooms if step[2] else (), now)

    def snapshot(self) -> dict[str, list[Any]]:
        answer = {"code": 0, "data": {"free_busy": {
            room: self.calendar.slots(room, *WINDOW) for room in ROOMS}}}
        return parse_freebusy(answer, ROOMS)


def deliver(store: ScheduleStore, world: World, index: int) -> None:
    store.apply(world.events[index], world.now())
    world.delivered.add(index)


def answer(store: ScheduleStore, world: World, asked: datetime,
           bookings: dict[str, list[Any]]) -> None:
    received = world.now()
    for room in ROOMS:
        store.resync_room(room, WINDOW, bookings[room], asked, received)


def shown(store: ScheduleStore) -> set[tuple[str, str, int, datetime, datetime]]:
    return {(room, b.uid, b.original_time, b.start, b.end) for room in ROOMS
            for b in store.bookings(room) if b.end > WINDOW[0] and b.start < WINDOW[1]}


def truth(world: World) -> set[tuple[str, str, int, datetime, datetime]]:
    return {(room, b.uid, b.original_time, b.start, b.end)
            for room, bookings in world.snapshot().items() for b in bookings}


def fresh_store(tmp: Path) -> Iterator[ScheduleStore]:
    with ScheduleStore(tmp / f"p{next(_dbs)}.db", durable=False) as store:
        yield store


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step_st, max_size=40), order=st.randoms(use_true_random=False))
def test_interleavings_converge_to_the_truth(tmp_path: Path, steps: list[tuple[Any, ...]],
                                             order: Any) -> None:
    world = World()
    for store in fresh_store(tmp_path):
        for step in steps:
            if step[0] == "deliver" and world.events:
                deliver(store, world, step[1] % len(world.events))  # again: a duplicate
            elif step[0] == "request":
                world.answers.append((world.now(), world.snapshot()))
            elif step[0] == "answer" and world.answers:
                answer(store, world, *world.answers[step[1] % len(world.answers)])
            elif step[0] not in ("deliver", "request", "answer"):
                world.change(step)
        late = [i for i in range(len(world.events)) if i not in world.delivered]
        order.shuffle(late)
        for index in late:
            deliver(store, world, index)
        stale = list(world.answers)
        order.shuffle(stale)
        for asked, bookings in stale[:3]:  # answers that were still in flight
            answer(store, world, asked, bookings)
        gone = {uid for uid, kind in world.kinds.items() if kind == "gone"}
        assert not {row for row in shown(store) if row[1] in gone}
        answer(store, world, world.now(), world.snapshot())
        assert shown(store) == truth(world)
