"""The privacy rule, the name cache, the details table and the ``[details]`` keys (issue 19)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.config import DetailsConfig, parse_config
from display.details import (
    NameCache,
    StoredDetails,
    decode_room_meta,
    encode_room_meta,
    shown_details,
)
from display.encode.mqtt_schedule import decode_schedule, encode_schedule
from display.errors import ConfigError, EventError
from display.model import Booking, BookingDetails
from display.store import ScheduleStore

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def booking(uid: str, organizer: str | None = "ou_a") -> Booking:
    return Booking(f"{uid}_0", uid, 0, NOW, NOW + timedelta(hours=1), organizer)


ROWS = {"m1_0": StoredDetails("Review", "Alice"), "p_0": StoredDetails("Leaked?", "Bob")}


def test_details_off_shows_nothing() -> None:
    assert shown_details([booking("m1")], ROWS, DetailsConfig()) == {}


def test_private_booking_is_booked_whatever_is_stored() -> None:
    both = DetailsConfig(organizer=True, title=True)
    shown = shown_details([booking("m1"), booking("p", organizer=None)], ROWS, both)
    assert shown == {"m1_0": BookingDetails("Review", "Alice"),
                     "p_0": BookingDetails(private=True)}
    assert shown["p_0"].to_json() == {"private": True}


@pytest.mark.parametrize(("policy", "expected"), [
    (DetailsConfig(title=True), BookingDetails("Review", None)),
    (DetailsConfig(organizer=True), BookingDetails(None, "Alice")),
])
def test_each_detail_only_when_its_option_is_on(policy: DetailsConfig,
                                                expected: BookingDetails) -> None:
    assert shown_details([booking("m1")], ROWS, policy) == {"m1_0": expected}


def test_an_agent_shows_what_its_bridge_sent() -> None:
    rows = {"m1_0": StoredDetails("Review", None, False), "p_0": StoredDetails(None, None, True)}
    shown = shown_details([booking("m1"), booking("p"), booking("x")], rows, None)
    assert shown == {"m1_0": BookingDetails("Review"), "p_0": BookingDetails(private=True)}


def test_name_cache_hits_and_misses_expire_on_their_own() -> None:
    cache = NameCache(hit_ttl=300, miss_ttl=60)
    cache.put("ou_a", "Alice", 0.0)
    cache.put("ou_app", None, 0.0)
    assert cache.lookup("ou_a", 59.0) == (True, "Alice")
    assert cache.lookup("ou_app", 59.0) == (True, None)
    assert cache.lookup("ou_app", 60.0) == (False, None)  # a miss is asked again sooner
    assert cache.lookup("ou_a", 299.0) == (True, "Alice")
    assert cache.lookup("ou_a", 300.0) == (False, None)
    assert cache.lookup("ou_never", 0.0) == (False, None)
    assert len(cache) == 0


def test_room_meta_round_trips_and_tolerates_junk() -> None:
    assert decode_room_meta(encode_room_meta("5F Focus", "HQ / 5F")) == ("5F Focus", "HQ / 5F")
    for junk in (None, "", "not json", "[1]", '{"name": 3}'):
        assert decode_room_meta(junk) == (None, None)


# -- the store ----------------------------------------------------------------------------------


def test_details_table_is_added_to_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "schedule.db"
    with ScheduleStore(path) as store:
        store.replace_room("omm_a", [booking("m1")])
    db = sqlite3.connect(path)
    db.execute("DROP TABLE details")  # as a store written before this release
    db.commit()
    db.close()
    with ScheduleStore(path) as store:
        assert [b.uid for b in store.bookings("omm_a")] == ["m1"]  # kept
        assert store.put_details({"m1_0": StoredDetails("Review", "Alice")}, NOW)
        assert not store.put_details({"m1_0": StoredDetails("Review", "Alice")}, NOW)
        assert store.details(["m1_0", "other"]) == {"m1_0": StoredDetails("Review", "Alice")}


def test_details_go_with_their_bookings_and_clear_drops_unsent(tmp_path: Path) -> None:
    with ScheduleStore(tmp_path / "s.db") as store:
        store.replace_room("omm_a", [booking("m1"), booking("m2")])
        store.put_details({"m1_0": StoredDetails("A"), "m2_0": StoredDetails("B")}, NOW)
        assert store.put_details({"m1_0": StoredDetails("A")}, NOW, clear=["m1_0", "m2_0"])
        assert set(store.details(["m1_0", "m2_0"])) == {"m1_0"}
        store.replace_room("omm_a", [booking("m2")])  # m1 cancelled: its details go too
        store.put_details({}, NOW)
        assert store.details(["m1_0"]) == {}


# -- config ---------------------------------------------------------------------------------------


def test_details_are_off_by_default_and_rooms_override_them(tmp_path: Path) -> None:
    text = ("[details]\norganizer = true\n[[rooms]]\nopen_id = 'omm_a'\n"
            "[[rooms]]\nopen_id = 'omm_b'\ndetails = { organizer = false, title = true }\n"
            "[[rooms]]\nopen_id = 'omm_c'\n[rooms.details]\ntitle = true\n")
    config = parse_config(text, tmp_path / "c.toml")
    a, b, c = config.rooms
    assert config.room_details(a) == DetailsConfig(organizer=True)
    assert config.room_details(b) == DetailsConfig(title=True)
    assert config.room_details(c) == DetailsConfig(organizer=True, title=True)  # the rest kept
    plain = parse_config("[[rooms]]\nopen_id = 'omm_a'\n", tmp_path / "c.toml")
    assert plain.room_details(plain.rooms[0]) == DetailsConfig()
    assert not plain.rooms[0].named


@pytest.mark.parametrize(("text", "expected"), [
    ("[details]\ntitle = 'yes'\n", "details.title: must be true or false, got 'yes'"),
    ("[details]\nsubject = true\n", "details.subject: unknown key"),
    ("[[rooms]]\nopen_id = 'omm_a'\ndetails = 3\n", "rooms[0].details: must be a table"),
    ("[[rooms]]\nopen_id = 'omm_a'\n[rooms.details]\nname = true\n",
     "rooms[0].details.name: unknown key"),
])
def test_bad_details_keys_are_one_line(text: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "c.toml")
    assert expected in str(err.value)


# -- the schedule payload -------------------------------------------------------------------------


def test_schedule_carries_only_the_details_given() -> None:
    bookings = [booking("m1"), booking("p", organizer=None), booking("x")]
    plain = encode_schedule("omm_a", "Room", bookings, version=1, generated_at=NOW, bridge="b")
    assert b"title" not in plain and b"private" not in plain and b"path" not in plain
    assert decode_schedule(plain, "omm_a").details == {}
    payload = encode_schedule("omm_a", "Room", bookings, version=2, generated_at=NOW,
                              bridge="b", path="HQ / 5F",
                              details={"m1_0": BookingDetails("Review", "Alice"),
                                       "p_0": BookingDetails(private=True)})
    got = decode_schedule(payload, "omm_a")
    assert got.details == {"m1_0": BookingDetails("Review", "Alice"),
                           "p_0": BookingDetails(private=True)}
    assert got.path == "HQ / 5F"


@pytest.mark.parametrize(("field", "value"), [("title", 3), ("organizer", "x" * 101),
                                              ("private", "yes")])
def test_bad_details_in_a_schedule_are_refused(field: str, value: object) -> None:
    import json

    doc = json.loads(encode_schedule("omm_a", "R", [booking("m1")], version=1,
                                     generated_at=NOW, bridge="b"))
    doc["bookings"][0][field] = value
    with pytest.raises(EventError) as err:
        decode_schedule(json.dumps(doc).encode(), "omm_a")
    assert field in str(err.value)


# -- the state JSON (MQTT ``…/state``, ``json`` devices, Home Assistant's attributes) ---------


def test_state_json_names_no_organizer_id_and_carries_details_only_when_given() -> None:
    from dataclasses import replace

    from display.encode.view_json import view_json
    from display.render.samples import sample_view

    view = sample_view()
    current = view.occupancy.current
    assert current is not None
    plain = view_json(view)
    assert "organizer_open_id" not in plain["current"]
    assert not {"title", "organizer", "private"} & set(plain["current"])
    shown = view_json(replace(view, details={current.key: BookingDetails("Review", "Alice")}))
    assert shown["current"]["title"] == "Review" and shown["current"]["organizer"] == "Alice"
