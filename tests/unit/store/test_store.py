"""The schedule store: dedupe, versions, tombstones, several rooms, durability across reopen."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.errors import EventError
from display.intake.envelope import UnknownEventType, parse_envelope
from display.store import Outcome, ScheduleStore
from display.testing.envelopes import envelope

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T10 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
T11 = T10 + timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> ScheduleStore:
    with ScheduleStore(tmp_path / "schedule.db") as s:
        yield s


def apply(store: ScheduleStore, env: dict[str, Any]) -> Outcome:
    return store.apply(parse_envelope(env), NOW).outcome


def test_created_then_duplicate_delivery(store: ScheduleStore) -> None:
    env = envelope(start=T10, end=T11, event_time=1)
    assert apply(store, env) is Outcome.APPLIED
    assert apply(store, env) is Outcome.DUPLICATE
    assert [b.uid for b in store.bookings("omm_a")] == ["bk1"]


def test_dedupe_survives_reopening(tmp_path: Path) -> None:
    env = envelope(start=T10, end=T11, event_time=1)
    with ScheduleStore(tmp_path / "s.db") as s:
        assert apply(s, env) is Outcome.APPLIED
    with ScheduleStore(tmp_path / "s.db") as s:
        assert apply(s, env) is Outcome.DUPLICATE
        assert s.seen(env["uuid"])


def test_newest_event_time_wins_whatever_the_order(store: ScheduleStore) -> None:
    newer = envelope("updated", start=T10, end=T11 + timedelta(hours=1), event_time=20)
    older = envelope("created", start=T10, end=T11, event_time=10)
    assert apply(store, newer) is Outcome.APPLIED
    assert apply(store, older) is Outcome.SUPERSEDED
    assert store.bookings("omm_a")[0].end == T11 + timedelta(hours=1)


def test_delete_leaves_a_tombstone_a_late_create_cannot_pass(store: ScheduleStore) -> None:
    assert apply(store, envelope("deleted", start=T10, end=T11, event_time=20)) is Outcome.APPLIED
    assert apply(store, envelope("created", start=T10, end=T11, event_time=10)) \
        is Outcome.SUPERSEDED
    assert store.bookings("omm_a") == []


def test_delete_wins_a_tie(store: ScheduleStore) -> None:
    apply(store, envelope("created", start=T10, end=T11, event_time=5))
    apply(store, envelope("deleted", start=T10, end=T11, event_time=5))
    assert store.bookings("omm_a") == []


def test_update_of_unseen_booking_creates_it(store: ScheduleStore) -> None:
    assert apply(store, envelope("updated", start=T10, end=T11, event_time=3)) is Outcome.APPLIED
    assert len(store.bookings("omm_a")) == 1


def test_one_event_changes_several_rooms_and_update_can_drop_one(store: ScheduleStore) -> None:
    result = store.apply(parse_envelope(
        envelope(start=T10, end=T11, rooms=("omm_a", "omm_b"), event_time=1)), NOW)
    assert result.changed == {"omm_a", "omm_b"}
    result = store.apply(parse_envelope(
        envelope("updated", start=T10, end=T11, rooms=("omm_b", "omm_c"), event_time=2)), NOW)
    assert result.changed == {"omm_a", "omm_b", "omm_c"}
    assert store.bookings("omm_a") == []
    assert [b.uid for b in store.bookings("omm_b")] == ["bk1"]
    assert [b.uid for b in store.bookings("omm_c")] == ["bk1"]


def test_occurrences_of_a_series_are_separate_bookings(store: ScheduleStore) -> None:
    apply(store, envelope(uid="series", original_time=0, start=T10, end=T11, event_time=1))
    apply(store, envelope(uid="series", original_time=1764036000, start=T11,
                          end=T11 + timedelta(minutes=30), event_time=1))
    assert [b.event_id for b in store.bookings("omm_a")] == ["series_0", "series_1764036000"]


def prune_hourly(store: ScheduleStore, start: datetime, hours: int) -> None:
    """Prune once an hour for ``hours`` hours of wall and elapsed time (as the node does)."""
    for h in range(hours + 1):
        store.prune(start + timedelta(hours=h), 0.0 if h == 0 else 3600.0)


def test_prune_forgets_old_rows_but_keeps_recent_tombstones(store: ScheduleStore) -> None:
    apply(store, envelope(uid="old", start=T10 - timedelta(days=5),
                          end=T11 - timedelta(days=5), event_time=1))
    apply(store, envelope("deleted", uid="gone", start=T10, end=T11, event_time=1))
    prune_hourly(store, NOW, 12)
    assert store.bookings("omm_a") == []
    assert apply(store, envelope("created", uid="gone", start=T10, end=T11, event_time=0)) \
        is Outcome.SUPERSEDED
    prune_hourly(store, NOW + timedelta(hours=13), 3 * 24)
    assert store.counts() == {"deliveries": 0, "versions": 0, "bookings": 0}


@pytest.mark.parametrize("step", [timedelta(days=1), timedelta(days=3), timedelta(days=366)])
def test_a_forward_step_of_the_wall_clock_prunes_nothing(store: ScheduleStore,
                                                          step: timedelta) -> None:
    apply(store, envelope(uid="now", start=NOW - timedelta(minutes=30),
                          end=NOW + timedelta(hours=1), event_time=1))
    apply(store, envelope(uid="ended", start=NOW - timedelta(hours=3),
                          end=NOW - timedelta(hours=2), event_time=1))
    apply(store, envelope("deleted", uid="gone", start=T11, end=T11 + timedelta(hours=1),
                          event_time=2))
    before = store.counts()
    store.prune(NOW, 0.0)
    for _ in range(3):  # the stepped clock seen by three hourly prunes
        store.prune(NOW + step, 3600.0)
    assert store.counts() == before
    assert apply(store, envelope(uid="gone", start=T11, end=T11 + timedelta(hours=1),
                                 event_time=1)) is Outcome.SUPERSEDED


def test_uuids_and_tombstones_outlive_the_retry_horizon_in_elapsed_time(
        store: ScheduleStore) -> None:
    """A clock running 10x fast still keeps a uuid for 8 prunes an hour apart."""
    env = envelope("deleted", uid="gone", start=T10, end=T11, event_time=1)
    apply(store, env)
    store.prune(NOW, 0.0)
    for h in range(1, 9):
        store.prune(NOW + timedelta(hours=10 * h), 3600.0)
        assert store.seen(env["uuid"]), f"forgotten after {h} h"
    for h in range(9, 40):
        store.prune(NOW + timedelta(hours=10 * h), 3600.0)
    assert not store.seen(env["uuid"]) and store.counts()["versions"] == 0


def test_prunes_closer_than_an_hour_do_not_count_as_passes(store: ScheduleStore) -> None:
    env = envelope(start=T10 - timedelta(days=5), end=T11 - timedelta(days=5), event_time=1)
    apply(store, env)
    for minute in range(0, 24 * 60, 10):  # a restart every 10 minutes for a day
        store.prune(NOW + timedelta(days=5, minutes=minute), 0.0 if minute == 0 else 600.0)
    assert store.seen(env["uuid"])


def test_a_backward_step_keeps_what_arrived_meanwhile(store: ScheduleStore) -> None:
    store.prune(NOW, 0.0)
    early = envelope(start=T10, end=T11, event_time=1)
    store.apply(parse_envelope(early), NOW - timedelta(days=366))  # stamped by a clock behind
    late = envelope(uid="late", start=T10, end=T11, event_time=1)
    store.apply(parse_envelope(late), NOW + timedelta(days=366))  # and by one ahead
    for h in range(1, 4):
        store.prune(NOW + timedelta(hours=h), 3600.0)
    assert store.seen(early["uuid"]) and store.seen(late["uuid"])
    prune_hourly(store, NOW + timedelta(hours=4), 3 * 24)  # both age from now on
    assert not store.seen(early["uuid"]) and not store.seen(late["uuid"])


def test_a_store_without_pass_columns_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "old.db")
    db.executescript("CREATE TABLE deliveries (uuid TEXT PRIMARY KEY, received_ms INTEGER "
                     "NOT NULL) WITHOUT ROWID; INSERT INTO deliveries VALUES ('u1', "
                     f"{int((NOW - timedelta(days=3)).timestamp() * 1000)});")
    db.close()
    with ScheduleStore(tmp_path / "old.db") as old:
        assert old.seen("u1")
        prune_hourly(old, NOW, 30)  # its clock starts from the newest row and catches up
        assert not old.seen("u1")


def test_one_unstorable_event_is_rejected_alone(store: ScheduleStore) -> None:
    from dataclasses import replace

    good = [parse_envelope(envelope(uid=f"g{i}", start=T10, end=T11)) for i in range(3)]
    poisoned = replace(parse_envelope(envelope(uid="p", start=T10, end=T11)),
                       original_time=10**30)
    results = store.apply_many([good[0], poisoned, *good[1:]], NOW)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED,
                                            Outcome.APPLIED, Outcome.APPLIED]
    assert "cannot be stored" in (results[1].error or "")
    assert sorted(b.uid for b in store.bookings("omm_a")) == ["g0", "g1", "g2"]
    assert not store.seen(poisoned.uuid)


def test_replace_room_reports_whether_anything_changed(store: ScheduleStore) -> None:
    apply(store, envelope(start=T10, end=T11, event_time=1))
    bookings = store.bookings("omm_a")
    assert store.replace_room("omm_a", bookings) is False
    assert store.replace_room("omm_a", []) is True
    assert store.bookings("omm_a") == []


def test_a_batch_is_one_transaction_kept_or_dropped_whole(tmp_path: Path) -> None:
    """A re-sync chunk: every room written in ``batch()`` commits together, or none does."""
    from display.model import Booking

    def slot(room: str) -> list[Booking]:
        return [Booking(f"{room}_b", f"{room}_b", 0, T10, T11, "ou_x")]

    with ScheduleStore(tmp_path / "schedule.db") as store:
        with store.batch():
            assert store.replace_room("omm_a", slot("omm_a")) is True
            assert store.replace_room("omm_b", slot("omm_b")) is True
        with pytest.raises(RuntimeError), store.batch():
            store.replace_room("omm_c", slot("omm_c"))
            store.replace_room("omm_a", [])
            raise RuntimeError("the chunk failed half-way")
        assert store.bookings("omm_c") == []  # rolled back with the rest of its batch
        assert len(store.bookings("omm_a")) == 1
    with ScheduleStore(tmp_path / "schedule.db") as again:  # and the first batch was committed
        assert {b.event_id for r in ("omm_a", "omm_b") for b in again.bookings(r)} == {
            "omm_a_b", "omm_b_b"}


# -- bad input: a clear reason, nothing changed -------------------------------------------------

BAD: list[tuple[str, Any, str]] = [
    ("not an object", [], "envelope"),
    ("no uuid", lambda e: e.pop("uuid"), "uuid"),
    ("wrong type", lambda e: e.update(type="url_verification"), "type"),
    ("event not object", lambda e: e.update(event="x"), "event"),
    ("start after end", lambda e: e["event"].update(start={"time_stamp": "1764090000000"},
                                                    end={"time_stamp": "1764086400000"}),
     "event.end"),
    ("start == end", lambda e: e["event"].update(end=e["event"]["start"]), "event.end"),
    ("start text", lambda e: e["event"]["start"].update(time_stamp="soon"),
     "event.start.time_stamp"),
    ("start float", lambda e: e["event"]["start"].update(time_stamp=1.5),
     "event.start.time_stamp"),
    ("rooms not a list", lambda e: e["event"].update(meeting_rooms="omm_a"),
     "event.meeting_rooms"),
    ("room no id", lambda e: e["event"].update(meeting_rooms=[{}]),
     "event.meeting_rooms[0].open_id"),
    ("superscript digit", lambda e: e["event"].update(event_time="\u00b2"), "event.event_time"),
    ("fullwidth digits", lambda e: e["event"]["start"].update(
        time_stamp="\uff11\uff17\uff16\uff14\uff10\uff18\uff16\uff14\uff10\uff10\uff10"
                   "\uff10\uff10"), "event.start.time_stamp"),
    ("arabic-indic digits", lambda e: e["event"].update(original_time="\u0661\u0662"),
     "event.original_time"),
    ("negative original_time", lambda e: e["event"].update(original_time=-5),
     "event.original_time"),
    ("bool original_time", lambda e: e["event"].update(original_time=True),
     "event.original_time"),
    ("no event_time", lambda e: e["event"].pop("event_time"), "event.event_time"),
    ("absurd timestamp", lambda e: e["event"]["end"].update(time_stamp="99999999999999999"),
     "event.end.time_stamp"),
]


@pytest.mark.parametrize(("name", "mutate", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_event_is_rejected_naming_the_field(store: ScheduleStore, name: str, mutate: Any,
                                                field: str) -> None:
    env: Any = envelope(start=T10, end=T11, event_time=1)
    if callable(mutate):
        mutate(env)
    else:
        env = mutate
    with pytest.raises(EventError) as err:
        parse_envelope(env)
    assert err.value.field == field
    assert store.counts() == {"deliveries": 0, "versions": 0, "bookings": 0}


def test_seconds_and_milliseconds_are_both_understood() -> None:
    env = envelope(start=T10, end=T11, event_time=1)
    env["event"]["start"]["time_stamp"] = str(int(T10.timestamp()))
    env["event"]["end"]["time_stamp"] = int(T11.timestamp() * 1000)
    event = parse_envelope(env)
    assert (event.start, event.end) == (T10, T11)


def test_unknown_type_is_its_own_error() -> None:
    env = envelope(start=T10, end=T11)
    env["event"]["type"] = "im.message.receive_v1"
    with pytest.raises(UnknownEventType):
        parse_envelope(env)


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_envelopes_never_crash_or_corrupt(store: ScheduleStore,
                                                  data: st.DataObject) -> None:
    good = envelope(uid="keep", start=T10, end=T11, event_time=1, uuid="keep-1")
    if not store.seen("keep-1"):
        store.apply(parse_envelope(good), NOW)
    before = store.bookings("omm_a")
    env = copy.deepcopy(envelope(uid="fuzz", start=T10, end=T11, event_time=2))
    path = data.draw(st.sampled_from(_paths(env)[1:]))
    target = env
    for key in path[:-1]:
        target = target[key]
    if data.draw(st.booleans()):
        target[path[-1]] = data.draw(json_values)
    elif isinstance(target, dict):
        del target[path[-1]]
    try:
        event = parse_envelope(json.loads(json.dumps(env)))
    except EventError:
        assert store.bookings("omm_a") == before
        return
    store.apply(event, NOW)
    assert all(b.start < b.end for r in store.rooms() for b in store.bookings(r))
    assert [b for b in store.bookings("omm_a") if b.uid == "keep"] == \
        [b for b in before if b.uid == "keep"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["x", "y", "z"]),
                          st.sampled_from(["created", "updated", "deleted"]),
                          st.integers(1, 50),  # event_time
                          st.integers(0, 5),  # start hour offset
                          st.sets(st.sampled_from(["omm_a", "omm_b", "omm_c"]), min_size=1)),
                max_size=25),
       st.randoms(use_true_random=False))
def test_random_histories_end_at_the_newest_version(tmp_path_factory: Any, history: list[Any],
                                                    rnd: Any) -> None:
    # One delivery per (uid, event_time): Feishu versions are distinct; duplicates are resends.
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    for uid, kind, etime, hour, rooms in history:
        start = T10 + timedelta(hours=hour)
        versions.setdefault((uid, etime), envelope(
            kind, uid=uid, start=start, end=start + timedelta(minutes=45),
            rooms=tuple(sorted(rooms)), event_time=etime))
    deliveries = list(versions.values())
    deliveries += [copy.deepcopy(d) for d in deliveries if rnd.random() < 0.4]  # duplicates
    rnd.shuffle(deliveries)  # no ordering guarantee
    with ScheduleStore(tmp_path_factory.mktemp("h") / "s.db", durable=False) as store:
        for d in deliveries:
            store.apply(parse_envelope(d), NOW)
        truth: dict[str, set[tuple[str, datetime]]] = {r: set() for r in ("omm_a", "omm_b",
                                                                          "omm_c")}
        for uid in ("x", "y", "z"):
            mine = [(k[1], v) for k, v in versions.items() if k[0] == uid]
            if not mine:
                continue
            newest = max(mine, key=lambda kv: (kv[0], kv[1]["event"]["type"].endswith(
                "deleted")))[1]
            if newest["event"]["type"].endswith("deleted"):
                continue
            event = parse_envelope(newest)
            for room in event.room_ids:
                truth[room].add((uid, event.start))
        for room, expected in truth.items():
            assert {(b.uid, b.start) for b in store.bookings(room)} == expected


# -- re-sync from free/busy ----------------------------------------------------------------------

WINDOW = (T10 - timedelta(hours=1), T10 + timedelta(days=1))


def test_resync_is_authoritative_for_its_window(store: ScheduleStore) -> None:
    apply(store, envelope(uid="stale", start=T10, end=T11, event_time=1))
    missed = parse_envelope(envelope(uid="missed", start=T11, end=T11 + timedelta(hours=1)))
    asked = NOW + timedelta(minutes=1)
    changed = store.resync_room("omm_a", WINDOW, [missed.booking()], asked, asked)
    assert changed is True
    assert [b.uid for b in store.bookings("omm_a")] == ["missed"]
    # A retry of the old "created" (event_time before the request) cannot bring it back.
    assert apply(store, envelope(uid="stale", start=T10, end=T11, event_time=2)) \
        is Outcome.SUPERSEDED
    assert [b.uid for b in store.bookings("omm_a")] == ["missed"]
    assert store.resync_room("omm_a", WINDOW, [missed.booking()], asked, asked) is False


def test_resync_never_overrides_an_event_newer_than_the_request(store: ScheduleStore) -> None:
    asked = datetime.fromtimestamp(1_764_000_100, UTC)  # between event_time 50 and 200
    # Created after the request was sent: the answer cannot know it yet.
    apply(store, envelope(uid="fresh", start=T10, end=T11, event_time=200))
    # Deleted after the request: the answer still lists it.
    apply(store, envelope("deleted", uid="cancelled", start=T11, end=T11 + timedelta(hours=1),
                          event_time=200))
    cancelled = parse_envelope(envelope(uid="cancelled", start=T11,
                                        end=T11 + timedelta(hours=1), event_time=50))
    store.resync_room("omm_a", WINDOW, [cancelled.booking()], asked, asked)
    assert [b.uid for b in store.bookings("omm_a")] == ["fresh"]


def test_resync_leaves_bookings_outside_the_window(store: ScheduleStore) -> None:
    apply(store, envelope(uid="later", start=T10 + timedelta(days=3),
                          end=T10 + timedelta(days=3, hours=1), event_time=1))
    store.resync_room("omm_a", WINDOW, [], NOW, NOW)
    assert [b.uid for b in store.bookings("omm_a")] == ["later"]


def test_concurrent_deliveries_commit_together_and_dedupe(tmp_path: Path) -> None:
    """Webhook threads call apply at once: group commit must keep every rule per event."""
    import threading

    events = [parse_envelope(envelope(uid=f"c{i}", start=T10, end=T11, event_time=i + 1))
              for i in range(200)]
    twice = events + events[:50]  # the first 50 delivered twice, concurrently
    results: list[Outcome] = []
    lock = threading.Lock()
    with ScheduleStore(tmp_path / "s.db") as store:
        def worker(chunk: list[Any]) -> None:
            for event in chunk:
                outcome = store.apply(event, NOW).outcome
                with lock:
                    results.append(outcome)

        threads = [threading.Thread(target=worker, args=(twice[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(Outcome.APPLIED) == 200
        assert results.count(Outcome.DUPLICATE) == 50
        assert len(store.bookings("omm_a")) == 200


def test_an_agent_keeps_every_instance_of_a_series(store: ScheduleStore) -> None:
    """A bridge publishes a series' instances with one uid and original_time 0: all stay."""
    from display.model import Booking

    days = [Booking("standup_0", "standup", 0, T10 + timedelta(days=d), T11 + timedelta(days=d))
            for d in range(3)]
    assert store.replace_room("omm_a", days)
    assert [b.start for b in store.bookings("omm_a")] == [b.start for b in days]
    assert not store.replace_room("omm_a", list(reversed(days)))  # same schedule: no change
    assert store.replace_room("omm_a", days[1:])
    assert [b.start for b in store.bookings("omm_a")] == [b.start for b in days[1:]]


def test_a_series_version_outlives_its_first_instance(store: ScheduleStore) -> None:
    """Pruning keeps a re-synced series' version while any of its instances is kept."""
    from display.model import Booking

    days = [Booking("s_0", "s", 0, T10 + timedelta(days=d), T11 + timedelta(days=d))
            for d in range(3)]
    window = (T10 - timedelta(hours=1), T10 + timedelta(days=3))
    assert store.resync_room("omm_a", window, days, NOW, NOW)
    prune_hourly(store, NOW, 3 * 24 + 4)  # 3 days on: the first instance is pruned
    late = envelope(uid="s", start=T10, end=T11, event_time=1)
    assert apply(store, late) is Outcome.SUPERSEDED


def test_deleting_a_series_spares_a_uid_it_is_a_prefix_of(store: ScheduleStore) -> None:
    """A uid's keys are found as a range of ``slots_key``: ``s_1`` (another booking's uid)
    falls inside the range of ``s`` and must survive the delete of series ``s``."""
    apply(store, envelope(uid="s", start=T10, end=T11, event_time=1))
    apply(store, envelope(uid="s_1", start=T11, end=T11 + timedelta(hours=1), event_time=1))
    apply(store, envelope(uid="s", original_time=int(T10.timestamp()) + 86400,
                          start=T10 + timedelta(days=1), end=T11 + timedelta(days=1),
                          event_time=2))
    assert apply(store, envelope("deleted", uid="s", start=T10, end=T11, event_time=3)) \
        is Outcome.APPLIED
    assert [b.uid for b in store.bookings("omm_a")] == ["s_1"]


def test_apply_many_keeps_every_rule_in_order(store: ScheduleStore) -> None:
    created = envelope(uid="m", start=T10, end=T11, event_time=5)
    older = envelope("updated", uid="m", start=T10, end=T11 + timedelta(hours=1), event_time=4)
    other = envelope(uid="n", start=T11, end=T11 + timedelta(hours=1), event_time=1)
    results = store.apply_many([parse_envelope(e) for e in (created, created, older, other)],
                               NOW)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.DUPLICATE,
                                            Outcome.SUPERSEDED, Outcome.APPLIED]
    assert [(b.uid, b.end) for b in store.bookings("omm_a")] == [("m", T11),
                                                                ("n", T11 + timedelta(hours=1))]
    assert store.apply_many([], NOW) == []


def test_a_store_from_before_loses_the_indexes_no_query_needs(tmp_path: Path) -> None:
    """Fewer B-trees, fewer pages written per event; the rows stay."""
    import sqlite3

    path = tmp_path / "s.db"
    with ScheduleStore(path) as s:
        apply(s, envelope(start=T10, end=T11, event_time=1))
    db = sqlite3.connect(path)
    db.executescript("CREATE INDEX slots_uid ON slots (uid);"
                     "CREATE INDEX slots_room_end ON slots (room_id, end_ms);"
                     "CREATE INDEX deliveries_received ON deliveries (received_ms);")
    db.close()
    with ScheduleStore(path) as s:
        names = {r[0] for r in s._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        assert names == {"slots_key"}
        assert [b.uid for b in s.bookings("omm_a")] == ["bk1"]
