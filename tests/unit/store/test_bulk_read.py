"""Reading many rooms at once (a node's first pass) gives what reading them one by one gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.model import Booking
from display.store import ScheduleStore

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def booking(room: int, n: int, start_min: int, minutes: int) -> Booking:
    start = NOW + timedelta(minutes=start_min)
    return Booking(f"ev{room}_{n}", f"uid{room}_{n}", 0, start, start + timedelta(minutes=minutes),
                   "ou_x")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rooms=st.lists(st.lists(st.tuples(st.integers(-300, 300), st.integers(1, 120),
                                         st.sampled_from([None, 0, 15])), max_size=5),
                      min_size=1, max_size=6),
       after=st.one_of(st.none(), st.integers(-200, 200)))
def test_bulk_read_matches_one_room_at_a_time(
        tmp_path_factory: pytest.TempPathFactory, rooms: list[list[tuple[int, int, int | None]]],
        after: int | None) -> None:
    """Bookings, their order, released ones (a no-show and an early end) and the filter."""
    path = tmp_path_factory.mktemp("bulk") / "s.db"
    with ScheduleStore(path, durable=False) as store:
        for r, slots in enumerate(rooms):
            made = [booking(r, n, s, m) for n, (s, m, _) in enumerate(slots)]
            store.replace_room(f"omm_{r}", made)
            for b, (_, _, released) in zip(made, slots, strict=True):
                if released is not None:  # 0: a no-show; 15: ended 15 minutes in
                    store.mark_released(f"omm_{r}", b, b.start + timedelta(minutes=released),
                                        NOW)
        ids = [f"omm_{r}" for r in range(len(rooms))] + ["omm_none"]
        ending = None if after is None else NOW + timedelta(minutes=after)
        bulk = store.bookings_many(ids, ending_after=ending)
        assert list(bulk) == ids
        for room_id in ids:
            assert bulk[room_id] == store.bookings(room_id, ending_after=ending)
        assert bulk["omm_none"] == []
        for r, slots in enumerate(rooms):  # what a user sees: no-shows gone, early ends cut
            expected = []
            for n, (s, m, released) in enumerate(slots):
                b = booking(r, n, s, m)
                if released == 0 or (ending is not None and b.end <= ending):
                    continue  # the filter looks at the booked end, as one room's read does
                if released is not None:
                    b = replace(b, end=min(b.end, b.start + timedelta(minutes=released)))
                expected.append(b)
            assert bulk[f"omm_{r}"] == sorted(expected, key=lambda b: (b.start, b.key))


def test_more_rooms_than_one_query_takes(tmp_path: Path) -> None:
    """1,200 rooms (three queries' worth) and their meta values, read in bulk."""
    with ScheduleStore(tmp_path / "s.db", durable=False) as store:
        with store.batch():
            for r in range(1200):
                store.replace_room(f"omm_{r:04d}", [booking(r, 0, r % 60, 30)])
                if r % 3 == 0:
                    store.set_meta(f"room.{r}", f"value {r}")
        ids = [f"omm_{r:04d}" for r in range(1200)]
        bulk = store.bookings_many(ids)
        assert [len(bulk[i]) for i in ids] == [1] * 1200
        assert bulk["omm_1199"][0].uid == "uid1199_0"
        metas = store.meta_many(f"room.{r}" for r in range(1200))
        assert len(metas) == 400 and metas["room.1197"] == "value 1197"
        assert "room.1198" not in metas
