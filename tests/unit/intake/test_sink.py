"""EventSink.accept_many: the webhook's committer hands it every waiting delivery at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from display.clock import SystemClock
from display.errors import EventError
from display.intake.sink import Accepted, EventSink, Verdict
from display.model import RoomEvent
from display.store import ScheduleStore
from display.testing.envelopes import envelope

T10 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T11 = T10 + timedelta(hours=1)


def test_one_batch_answers_each_delivery_and_tells_the_node_once(tmp_path: Path) -> None:
    changes: list[frozenset[str]] = []
    applied: list[str] = []
    with ScheduleStore(tmp_path / "s.db") as store:
        sink = EventSink(store, SystemClock(), changes.append,
                         on_applied=lambda event, rooms: applied.append(event.uid))
        good = envelope(uid="a", start=T10, end=T11, rooms=("omm_a",), event_time=1)
        bad = envelope(uid="b", start=T10, end=T11, event_time=1)
        bad["event"]["end"] = bad["event"]["start"]
        unknown = envelope(uid="c", start=T10, end=T11, event_time=1)
        unknown["event"]["type"] = "im.message.receive_v1"
        other = envelope(uid="d", start=T10, end=T11, rooms=("omm_b",), event_time=1)
        out = sink.accept_many([good, bad, unknown, other, good])
        assert [o.verdict if isinstance(o, Accepted) else type(o) for o in out] == [
            Verdict.APPLIED, EventError, Verdict.IGNORED, Verdict.APPLIED, Verdict.DUPLICATE]
        assert isinstance(out[1], EventError) and out[1].field == "event.end"
        assert changes == [frozenset({"omm_a", "omm_b"})]  # one redraw request per batch
        assert applied == ["a", "d"]
        assert not store.seen(bad["uuid"]) and not store.seen(unknown["uuid"])
        assert [b.uid for b in store.bookings("omm_b")] == ["d"]


def test_prepare_then_commit_is_what_accept_does(tmp_path: Path) -> None:
    with ScheduleStore(tmp_path / "s.db") as store:
        sink = EventSink(store, SystemClock())
        env = envelope(uid="p", start=T10, end=T11, event_time=1)
        event = sink.prepare(env)
        assert isinstance(event, RoomEvent)
        assert not store.seen(env["uuid"])  # validating commits nothing
        assert [a.verdict for a in sink.commit_many([event])] == [Verdict.APPLIED]
        assert sink.accept(env).verdict is Verdict.DUPLICATE
        assert sink.commit_many([]) == []
