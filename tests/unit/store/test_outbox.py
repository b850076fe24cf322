"""The replication outbox: written with each commit, numbered, never fed by peers' events, and
what two bridges exchange through it converges."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.errors import EventError, StoreError
from display.intake.envelope import parse_envelope
from display.model import RoomEvent
from display.outbox import OUTBOX_KEEP, Outbox, event_from_json, event_to_json, install
from display.store import ApplyResult, Outcome, ScheduleStore
from display.testing.envelopes import envelope

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T10 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T11 = T10 + timedelta(hours=1)


class Bridge:
    """One bridge's store as its two processes open it: the intake's connection (with the
    journal) and the node's (without: peers' events go through it)."""

    def __init__(self, path: Path) -> None:
        self.now = NOW
        self.intake = ScheduleStore(path, durable=False)
        install(self.intake, lambda: self.now)
        self.node = ScheduleStore(path, durable=False)
        self.outbox = Outbox(self.node)

    def accept(self, env: dict[str, Any]) -> Outcome:
        return self.intake.apply(parse_envelope(env), self.now).outcome

    def receive(self, rows: list[tuple[int, RoomEvent]]) -> list[ApplyResult]:
        return self.node.apply_many([e for _, e in rows], self.now)

    def sent(self, after: int = 0) -> list[tuple[int, RoomEvent]]:
        return [(r.seq, event_from_json(json.loads(r.event))) for r in self.outbox.after(after)]

    def close(self) -> None:
        self.intake.close()
        self.node.close()


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[tuple[Bridge, Bridge]]:
    a, b = Bridge(tmp_path / "a.db"), Bridge(tmp_path / "b.db")
    yield a, b
    a.close()
    b.close()


def booking(uid: str, kind: str = "created", event_time: int = 1,
            rooms: tuple[str, ...] = ("omm_a",), uuid: str | None = None) -> dict[str, Any]:
    return envelope(kind, uid=uid, start=T10, end=T11, event_time=event_time, rooms=rooms,
                    uuid=uuid)


def test_each_applied_event_gets_the_next_sequence_number(bridges: tuple[Bridge, Bridge]
                                                          ) -> None:
    a, _ = bridges
    first = booking("bk1")
    assert a.accept(first) is Outcome.APPLIED
    assert a.accept(first) is Outcome.DUPLICATE  # nothing new to send
    assert a.accept(booking("bk1", event_time=0)) is Outcome.SUPERSEDED
    assert a.accept(booking("bk2")) is Outcome.APPLIED
    sent = a.sent()
    assert [(seq, e.uid) for seq, e in sent] == [(1, "bk1"), (2, "bk2")]
    assert sent[0][1] == parse_envelope(first)  # the validated event, whole
    assert a.outbox.last_seq() == 2 and [s for s, _ in a.sent(after=1)] == [2]


def test_a_peers_event_is_applied_but_never_sent_on(bridges: tuple[Bridge, Bridge]) -> None:
    a, b = bridges
    a.accept(booking("bk1"))
    results = b.receive(a.sent())
    assert [r.outcome for r in results] == [Outcome.APPLIED]
    assert [x.uid for x in b.node.bookings("omm_a")] == ["bk1"]
    assert b.sent() == [] and b.outbox.last_seq() == 0  # no ping-pong
    # The same delivery reaching b from Feishu later is a duplicate there, and not sent either.
    assert b.accept(booking("bk1", uuid=a.sent()[0][1].uuid)) is Outcome.DUPLICATE
    assert b.sent() == []


def test_an_event_whose_outbox_row_cannot_be_written_is_not_committed(tmp_path: Path) -> None:
    """Same transaction: a commit that fails leaves neither the booking nor the row, so the
    delivery is not acknowledged and Feishu sends it again."""
    bridge = Bridge(tmp_path / "s.db")
    try:
        journal = bridge.intake.journal
        assert journal is not None

        def failing(db: sqlite3.Connection, results: list[tuple[RoomEvent, ApplyResult]]) -> None:
            journal(db, results)
            raise sqlite3.OperationalError("disk I/O error")

        bridge.intake.journal = failing
        with pytest.raises(StoreError, match="disk I/O error"):
            bridge.accept(booking("bk1"))
        assert bridge.node.bookings("omm_a") == [] and bridge.sent() == []
        bridge.intake.journal = journal
        assert bridge.accept(booking("bk1", uuid="again")) is Outcome.APPLIED
        assert [s for s, _ in bridge.sent()] == [1]
    finally:
        bridge.close()


def test_pruning_keeps_the_window_and_numbers_never_repeat(bridges: tuple[Bridge, Bridge]
                                                           ) -> None:
    a, _ = bridges
    a.accept(booking("bk1"))
    a.now = NOW + OUTBOX_KEEP - timedelta(minutes=1)
    a.accept(booking("bk2"))
    assert a.outbox.prune(NOW + OUTBOX_KEEP + timedelta(seconds=1)) == 1
    assert [(s, e.uid) for s, e in a.sent()] == [(2, "bk2")]
    assert a.outbox.prune(NOW + OUTBOX_KEEP + timedelta(seconds=1)) == 0
    a.accept(booking("bk3"))
    assert [s for s, _ in a.sent()] == [2, 3]  # 1 is never given again
    assert a.outbox.last_seq() == 3


def test_after_returns_rows_in_order_in_bounded_pages(bridges: tuple[Bridge, Bridge]) -> None:
    a, _ = bridges
    for i in range(7):
        a.accept(booking(f"bk{i}"))
    pages, seq = [], 0
    while rows := a.outbox.after(seq, limit=3):
        pages.append([r.seq for r in rows])
        seq = rows[-1].seq
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]


def test_the_event_codec_round_trips_and_names_a_bad_field() -> None:
    event = parse_envelope(booking("bk1", rooms=("omm_a", "omm_b")))
    doc = json.loads(json.dumps(event_to_json(event)))
    assert event_from_json(doc) == event
    for field, value, where in (("kind", "nonsense", "kind"), ("start", "yesterday", "start"),
                                ("room_ids", "omm_a", "room_ids"), ("uuid", "", "uuid"),
                                ("event_time_ms", -1, "event_time_ms"),
                                ("start", "9999-01-01T00:00:00+00:00", "start")):
        bad = {**doc, field: value}
        with pytest.raises(EventError) as info:
            event_from_json(bad)
        assert info.value.field == where
    with pytest.raises(EventError):
        event_from_json(["not", "an", "object"])
    with pytest.raises(EventError, match="end"):
        event_from_json({**doc, "end": doc["start"], "start": doc["end"]})


_uuids = itertools.count()
ROOM_SETS = (("omm_a",), ("omm_b",), ("omm_a", "omm_b"))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["k1", "k2", "k3"]),
                          st.sampled_from(["created", "updated", "deleted"]),
                          st.integers(1, 5)),
                max_size=12),
       st.randoms())
def test_two_bridges_converge_whatever_reaches_which(tmp_path: Path, deliveries: list[Any],
                                                     rnd: Any) -> None:
    """Feishu hands each event to either bridge; each applies the other's in whatever order
    replays bring them (twice, too): both end with the same schedule.

    One version of a booking (its ``event_time``) has one content: the rooms follow from the
    key and the version (two different bookings at the same millisecond are not Feishu's)."""
    directory = tmp_path / f"run{next(_uuids)}"
    a, b = Bridge(directory / "a.db"), Bridge(directory / "b.db")
    try:
        for target, uid, kind, event_time in deliveries:
            rooms = ROOM_SETS[(int(uid[1:]) + event_time) % len(ROOM_SETS)]
            (a if target == "a" else b).accept(booking(uid, kind, event_time, rooms))
        to_b, to_a = a.sent(), b.sent()
        for rows in (to_b, to_a):
            rows.extend(rows[: len(rows) // 2])  # a replay sends some again
            rnd.shuffle(rows)
        b.receive(to_b)
        a.receive(to_a)
        for room in ("omm_a", "omm_b"):
            assert a.node.bookings(room) == b.node.bookings(room)
        assert {s for s, _ in a.sent()} == set(range(1, len(a.sent()) + 1))
    finally:
        a.close()
        b.close()
