"""The envelope parser is liberal where Feishu's payloads can still be interpreted."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.clock import to_epoch_ms
from display.errors import EventError
from display.intake import envelope as envelope_module
from display.intake.envelope import parse_envelope
from display.model import EventKind
from display.store import Outcome, ScheduleStore
from display.testing.envelopes import envelope
from display.testing.published_sample import EVENT_ID, ROOMS, UID, published_sample

T10 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T11 = T10 + timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> ScheduleStore:
    with ScheduleStore(tmp_path / "schedule.db", durable=False) as s:
        yield s


def test_the_published_sample_is_accepted_and_keeps_its_event_id(
        store: ScheduleStore, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope_module, "_mismatch_logged", False)
    caplog.set_level(logging.DEBUG, logger="display.intake.envelope")
    sample = published_sample(T10, T11, T10 - timedelta(days=1))
    event = parse_envelope(sample)
    assert (event.uid, event.original_time, event.key) == (UID, 0, f"{UID}_0")
    assert event.event_id == EVENT_ID and event.room_ids == ROOMS
    assert event.organizer_open_id == "ou_xxxxxxxxxxxxxxxxxxxx"
    assert store.apply(event, T10).outcome is Outcome.APPLIED
    assert [b.event_id for b in store.bookings(ROOMS[1])] == [EVENT_ID]
    # A later version with the documented event_id is the same booking.
    update = envelope("updated", uid=UID, start=T10, end=T11 + timedelta(hours=1),
                      rooms=ROOMS, event_time=None)
    assert store.apply(parse_envelope(update), T10).outcome is Outcome.APPLIED
    assert [(b.key, b.end) for b in store.bookings(ROOMS[0])] == [(f"{UID}_0", T11 + timedelta(
        hours=1))]
    parse_envelope(published_sample(T10, T11, T10))
    mismatches = [r for r in caplog.records if "is not {uid}_{original_time}" in r.getMessage()]
    assert len(mismatches) == 1 and mismatches[0].levelno == logging.DEBUG


def test_delete_naming_no_room_removes_it_from_every_room(store: ScheduleStore) -> None:
    created = envelope(start=T10, end=T11, rooms=("omm_a", "omm_b"), event_time=1)
    store.apply(parse_envelope(created), T10)
    for rooms in ([], None):
        deleted = envelope("deleted", start=T10, end=T11, event_time=2)
        deleted["event"]["meeting_rooms"] = rooms
        if rooms is None:
            del deleted["event"]["meeting_rooms"]
        result = store.apply(parse_envelope(deleted), T10)
        if rooms == []:
            assert result.outcome is Outcome.APPLIED
            assert result.changed == {"omm_a", "omm_b"}
    assert store.bookings("omm_a") == [] and store.bookings("omm_b") == []
    late = envelope(start=T10, end=T11, rooms=("omm_a",), event_time=1)
    assert store.apply(parse_envelope(late), T10).outcome is Outcome.SUPERSEDED


def test_delete_without_times_is_understood(store: ScheduleStore) -> None:
    store.apply(parse_envelope(envelope(start=T10, end=T11, event_time=1)), T10)
    deleted = envelope("deleted", start=T10, end=T11, event_time=2)
    del deleted["event"]["start"], deleted["event"]["end"]
    event = parse_envelope(deleted)
    assert event.kind is EventKind.DELETED
    assert store.apply(event, T10).outcome is Outcome.APPLIED
    assert store.bookings("omm_a") == []


def test_a_version_naming_no_room_leaves_the_rooms(store: ScheduleStore) -> None:
    store.apply(parse_envelope(envelope(start=T10, end=T11, event_time=1)), T10)
    moved = envelope("updated", start=T10, end=T11, rooms=(), event_time=2)
    assert store.apply(parse_envelope(moved), T10).changed == {"omm_a"}
    assert store.bookings("omm_a") == []


def test_original_time_in_milliseconds_is_the_same_occurrence() -> None:
    occurrence = int(T10.timestamp())
    in_seconds = parse_envelope(envelope(start=T10, end=T11, original_time=occurrence))
    in_ms = parse_envelope(envelope(start=T10, end=T11, original_time=occurrence * 1000))
    assert in_seconds.key == in_ms.key == f"bk1_{occurrence}"


def test_malformed_organizer_is_dropped_not_refused() -> None:
    env = envelope(start=T10, end=T11)
    env["event"]["organizer"] = "ou_someone"
    assert parse_envelope(env).organizer_open_id is None


@pytest.mark.parametrize("digits", ["\u00b2", "\uff11\uff12", "\u0661\u0662", "\u09e7"])
def test_only_ascii_digits_are_numbers(digits: str) -> None:
    env = envelope(start=T10, end=T11)
    env["event"]["event_time"] = digits
    with pytest.raises(EventError) as err:
        parse_envelope(env)
    assert str(err.value).startswith("event.event_time: must use ASCII digits 0-9")


def test_a_store_of_the_old_schema_is_moved_over(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE bookings (room_id TEXT NOT NULL, event_id TEXT NOT NULL, uid TEXT NOT NULL,
            original_time INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
            organizer_open_id TEXT, PRIMARY KEY (room_id, event_id)) WITHOUT ROWID;
        CREATE TABLE versions (event_id TEXT PRIMARY KEY, event_time_ms INTEGER NOT NULL,
            deleted INTEGER NOT NULL, end_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL)
            WITHOUT ROWID;
    """)
    db.execute("INSERT INTO bookings VALUES ('omm_a', 'bk1_0', 'bk1', 0, ?, ?, 'ou_a')",
               (to_epoch_ms(T10), to_epoch_ms(T11)))
    db.execute("INSERT INTO versions VALUES ('bk1_0', ?, 0, ?, 5)",
               (to_epoch_ms(T10), to_epoch_ms(T11)))
    db.commit()
    db.close()
    with ScheduleStore(path) as store:
        assert [(b.key, b.start, b.organizer_open_id) for b in store.bookings("omm_a")] == [
            ("bk1_0", T10, "ou_a")]
        late = envelope(start=T10, end=T11 + timedelta(hours=2))
        late["event"]["event_time"] = str(to_epoch_ms(T10) - 1)
        assert store.apply(parse_envelope(late), T10).outcome is Outcome.SUPERSEDED
    with ScheduleStore(path) as store:  # and opening it again changes nothing
        assert len(store.bookings("omm_a")) == 1


@pytest.mark.parametrize("value", [10**30, "99999999999999999999", 5, 4_102_444_801])
def test_an_original_time_no_store_can_hold_is_refused(value: object) -> None:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    env = envelope(start=start, end=start + timedelta(hours=1))
    env["event"]["original_time"] = value
    with pytest.raises(EventError, match=r"event\.original_time"):
        parse_envelope(env)
