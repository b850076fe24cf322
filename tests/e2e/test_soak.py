"""kill -9 of a whole bridge (node and intake child) while Feishu keeps delivering: every
delivery answered 200 is in the store afterwards and on the retained topics a new agent reads.

The short version of ``scripts/bench soak`` (``display/testing/soak.py`` says how it works).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.clock import SystemClock
from display.intake.sink import EventSink
from display.store import ScheduleStore
from display.testing.feishu_sender import Delivery, Workload
from display.testing.soak import Soak, SoakPlan, acceptable, wrong_bookings


@pytest.mark.slow
def test_the_whole_bridge_killed_again_and_again_loses_nothing_answered(tmp_path: Path) -> None:
    plan = SoakPlan(kills=4, rate=30, rooms=3, kill_after=(0.8, 1.6), duplicate_share=0.2,
                    seed=23, drain_timeout=30, agent_timeout=20)
    report = Soak(tmp_path, plan).run()
    assert report.kills == 4
    assert report.retried > 0, "no kill caught a delivery: the soak proved nothing"
    assert report.again > 0 and report.verdicts.get("duplicate", 0) >= report.again
    assert report.lost == () and report.wrong == () and report.unanswered == ()
    assert report.acked == report.sent > 60
    assert len(report.ready) == report.kills
    assert report.tracebacks == 0


def test_the_check_finds_an_answered_change_that_is_not_in_effect(tmp_path: Path) -> None:
    """What the soak counts as lost: the newest answered version missing from a store."""
    rooms = ["omm_1", "omm_2"]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    made = Delivery("u1", "bk", "created", 1, ("omm_1",), start, start + timedelta(hours=1))
    moved = Delivery("u2", "bk", "updated", 2, ("omm_1",), start + timedelta(hours=2),
                     start + timedelta(hours=3))
    gone = Delivery("u3", "bk", "deleted", 3, ("omm_1",), start, start + timedelta(hours=1))
    by_uid = {"bk": [made, moved, gone]}
    with ScheduleStore(tmp_path / "schedule.db") as store:
        sink = EventSink(store, SystemClock())
        sink.accept(made.envelope())
        answered = {"u1", "u2"}
        found = wrong_bookings(store, rooms, by_uid, answered)
        assert list(found) == ["bk"] and "omm_1" in found["bk"]
        sink.accept(moved.envelope())
        assert wrong_bookings(store, rooms, by_uid, answered) == {}
        assert wrong_bookings(store, rooms, {}, set()) == {
            "bk": "booking bk is in the store but was never delivered"}
        # A newer delivery never answered may or may not have been committed before a kill.
        sink.accept(gone.envelope())
        assert wrong_bookings(store, rooms, by_uid, answered) == {}
        assert wrong_bookings(store, rooms, by_uid, {"u1", "u2", "u3"}) == {}
        assert list(wrong_bookings(store, rooms, by_uid, {"u1"})) == []  # u2, u3 may be in
        assert list(wrong_bookings(store, rooms, {"bk": [made, moved]}, answered)) == ["bk"]
    assert acceptable([made, moved], {"u1"}) == {moved.effect, made.effect}
    assert acceptable([made], set()) == {frozenset(), made.effect}


def test_the_workload_keeps_each_booking_in_its_rooms_and_versions_growing() -> None:
    workload = Workload(random.Random(5), ["omm_1", "omm_2", "omm_3"], "t")
    deliveries = [workload.next() for _ in range(400)]
    assert [d.version for d in deliveries] == list(range(1, 401))
    kinds = {d.kind for d in deliveries}
    assert kinds == {"created", "updated", "deleted"}
    rooms: dict[str, tuple[str, ...]] = {}
    for d in deliveries:
        assert rooms.setdefault(d.uid, d.rooms) == d.rooms  # Feishu's updates move times only
    deleted = {d.uid for d in deliveries if d.kind == "deleted"}
    assert not any(d.uid in deleted and d.version > max(
        e.version for e in deliveries if e.uid == d.uid and e.kind == "deleted")
        for d in deliveries)  # nothing follows a cancellation
