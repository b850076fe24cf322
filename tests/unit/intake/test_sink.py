"""EventSink.accept_many: the webhook's committer hands it every waiting delivery at once."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.clock import SystemClock
from display.errors import EventError
from display.intake.feishu.channel import ParentChannel
from display.intake.feishu.reports import StoreWatch
from display.intake.sink import Accepted, EventSink, Verdict
from display.model import RoomEvent
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for

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


def test_an_event_naming_only_unconfigured_rooms_is_counted_apart_and_warned_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    configured = {"omm_a"}
    with ScheduleStore(tmp_path / "s.db") as store:
        sink = EventSink(store, SystemClock(), on_count=counted.append,
                         rooms=lambda: configured)
        with caplog.at_level(logging.WARNING, logger="display.intake.sink"):
            typo = [sink.accept(envelope(uid=f"t{i}", start=T10, end=T11, rooms=("omm_typo",),
                                         event_time=1)) for i in range(3)]
            mixed = sink.accept(envelope(uid="m", start=T10, end=T11,
                                         rooms=("omm_a", "omm_typo"), event_time=1))
            known = sink.accept(envelope(uid="k", start=T10, end=T11, event_time=1))
        assert [a.verdict for a in typo] == [Verdict.UNKNOWN_ROOM] * 3
        assert mixed.verdict is Verdict.APPLIED and known.verdict is Verdict.APPLIED
        assert counted == ["unknown_room"] * 3 + ["applied"] * 2
        assert sink.counts()["unknown_room"] == 3 and sink.counts()["applied"] == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "omm_typo" in warnings[0]
        # Still stored and acknowledged: a room added to the config later shows it.
        assert [b.uid for b in store.bookings("omm_typo")] == ["m", "t0", "t1", "t2"]
        configured.add("omm_typo")
        later = sink.accept(envelope(uid="t9", start=T10, end=T11, rooms=("omm_typo",),
                                     event_time=1))
        assert later.verdict is Verdict.APPLIED


def test_the_first_commit_is_no_recovery_but_a_store_that_failed_is(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = io.StringIO()
    writable: list[bool] = []
    with ScheduleStore(tmp_path / "s.db") as store, \
            caplog.at_level(logging.INFO, logger="display.intake.feishu.reports"):
        watch: StoreWatch | None = None
        sink = EventSink(store, SystemClock(),
                         on_store=lambda ok, error: watch.changed(ok, error) if watch else None)
        watch = StoreWatch(ParentChannel(lines), store, sink.note_store,
                           lambda: writable.append(True), retry_seconds=0.05)
        sink.accept(envelope(uid="first", start=T10, end=T11, event_time=1))
        sink.accept(envelope(uid="second", start=T10, end=T11, event_time=1))
        assert "writable again" not in caplog.text and writable == []
        assert [json.loads(x) for x in lines.getvalue().splitlines()] == [
            {"store": {"ok": True, "error": None}}]
        sink.note_store(False, "disk full")  # what a failed commit calls
        wait_for(lambda: writable, timeout=5, what="the retry's write")
        assert "cannot write the schedule store" in caplog.text
        assert caplog.text.count("schedule store writable again") == 1
