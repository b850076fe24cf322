"""Replaying a JSON-lines file through the real sink and store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.intake.replay import replay_file
from display.intake.sink import EventSink, Verdict
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T10, T11 = NOW + timedelta(hours=1), NOW + timedelta(hours=2)


@pytest.fixture
def store(tmp_path: Path) -> ScheduleStore:
    with ScheduleStore(tmp_path / "schedule.db") as s:
        yield s


def test_replay_applies_skips_and_reports(store: ScheduleStore, tmp_path: Path) -> None:
    created = envelope("created", uid="r1", start=T10, end=T11, event_time=1, rooms=("omm_a",))
    updated = envelope("updated", uid="r1", start=T10, end=T11 + timedelta(hours=1),
                       event_time=2, rooms=("omm_a", "omm_b"))
    unknown = envelope(uid="r2", start=T10, end=T11)
    unknown["event"]["type"] = "something_else"
    backwards = envelope(uid="r3", start=T11, end=T10)
    lines = [
        "# a captured morning",
        json.dumps(created),
        "",
        json.dumps(updated),
        json.dumps(created),  # same uuid again: a duplicate delivery
        "{not json",
        json.dumps(unknown),
        json.dumps(backwards),
        "   # indented comment",
        json.dumps([1, 2]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    changed: list[frozenset[str]] = []
    sink = EventSink(store, FakeClock(NOW), on_change=changed.append)

    report = replay_file(path, sink)

    assert report.lines == 7
    assert report.verdicts[Verdict.APPLIED] == 2
    assert report.verdicts[Verdict.DUPLICATE] == 1
    assert report.verdicts[Verdict.IGNORED] == 1
    assert report.changed == {"omm_a", "omm_b"}
    assert changed == [frozenset({"omm_a"}), frozenset({"omm_a", "omm_b"})]
    assert [e.split(": ", 1)[0] for e in report.errors] == [f"{path}:6", f"{path}:8",
                                                            f"{path}:10"]
    assert "malformed JSON" in report.errors[0]
    assert "event.end:" in report.errors[1]
    assert "envelope:" in report.errors[2]
    assert not report.ok
    assert "2 applied" in report.summary() and "3 rejected" in report.summary()
    assert [b.end for b in store.bookings("omm_b")] == [T11 + timedelta(hours=1)]


def test_replay_of_a_clean_file_is_ok(store: ScheduleStore, tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps(envelope(start=T10, end=T11)) + "\n", encoding="utf-8")
    report = replay_file(path, EventSink(store, FakeClock(NOW)))
    assert report.ok and report.applied == 1


def test_missing_file_raises(store: ScheduleStore, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        replay_file(tmp_path / "nope.jsonl", EventSink(store, FakeClock(NOW)))


def test_replay_does_not_import_lark(tmp_path: Path) -> None:
    code = ("import sys, display.intake.replay, display.intake.supervisor; "
            "sys.exit('lark_oapi' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
