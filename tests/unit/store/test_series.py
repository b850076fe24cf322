"""Recurring series: pushed events and free/busy instances in one store, through the real SDK.

The stand-in's :class:`~feishu_standin.Calendar` is the truth; it answers ``batch_get`` as Feishu
documents it (a series expanded into instances sharing ``uid`` with ``original_time = 0``, an
exception with its original start, RFC 3339 at +08:00). Pushes are Feishu envelopes parsed by the
real envelope parser. Times are around the end of summer time in Europe/Berlin (25 Oct 2026).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from display.clock import Clock, SystemClock, to_epoch_ms
from display.config import FeishuConfig, Secret
from display.intake.envelope import parse_envelope
from display.intake.feishu.freebusy import parse_freebusy
from display.intake.feishu.resync import LOOK_AHEAD, LOOK_BACK, LarkFreeBusy, Resync
from display.intake.sink import EventSink
from display.model import State
from display.occupancy import occupancy
from display.store import Outcome, ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.feishu_standin import Calendar, FeishuStandIn, FreeBusyApi, Series
from display.testing.waiting import wait_for

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Saturday 24 Oct 2026, 23:45 in Berlin (summer time ends the next night at 03:00).
NOW = datetime(2026, 10, 24, 23, 45, tzinfo=BERLIN).astimezone(UTC)
_apps = itertools.count(1)


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def api(standin: FeishuStandIn) -> FreeBusyApi:
    standin.app_id = f"cli_series_{next(_apps)}"  # the SDK caches tokens per app id
    return FreeBusyApi(standin)


class Harness:
    """A real store and a :class:`Resync` fetching through lark-oapi from the stand-in."""

    def __init__(self, standin: FeishuStandIn, tmp: Path, rooms: list[str],
                 clock: Clock, **resync: Any) -> None:
        self.clock = clock
        self.store = ScheduleStore(tmp / "schedule.db", durable=False)
        self.rooms = rooms
        feishu = FeishuConfig(app_id=standin.app_id, app_secret=Secret(standin.app_secret),
                              domain=standin.domain)
        self.api = LarkFreeBusy(feishu)
        self.resync = Resync(self.api, self.store, clock, lambda: self.rooms,
                             on_changed=lambda rooms: None, on_report=lambda r, n: None,
                             interval=0, backoff_initial=0.1, **resync)
        self.sink = EventSink(self.store, clock, on_applied=self.resync.after_event)

    def push(self, kind: str, uid: str, start: datetime, end: datetime, *,
             rooms: tuple[str, ...] = ("omm_a",), original_time: int = 0) -> Outcome:
        """Deliver one event as Feishu sends it, ``event_time`` = now."""
        env = envelope(kind, uid=uid, original_time=original_time, start=start, end=end,
                       rooms=rooms)
        env["event"]["event_time"] = str(to_epoch_ms(self.clock.now()))
        event = parse_envelope(env)
        return self.store.apply(event, self.clock.now()).outcome

    def spans(self, room: str = "omm_a") -> list[tuple[str, int, datetime, datetime]]:
        """The room's bookings a sign can show (not those that ended before the window)."""
        shown = self.store.bookings(room, ending_after=self.clock.now() - LOOK_BACK)
        return [(b.uid, b.original_time, b.start, b.end) for b in shown]


@pytest.fixture
def harness(standin: FeishuStandIn, api: FreeBusyApi, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(standin, tmp_path, ["omm_a", "omm_b"], FakeClock(NOW))
    yield h
    h.resync.close()
    h.store.close()


def later(h: Harness, seconds: float = 1) -> None:
    assert isinstance(h.clock, FakeClock)
    h.clock.advance(timedelta(seconds=seconds))


def berlin(day: int, hour: int, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def test_daily_series_across_midnight_and_dst_from_weeks_ago(harness: Harness,
                                                             api: FreeBusyApi) -> None:
    """The acceptance case: today busy during today's occurrence, tomorrow's shown as next."""
    first = berlin(1, 23, 30, month=9)  # weeks ago, 23:30 to 00:30 local
    api.calendar.series["late"] = Series("late", ("omm_a",), first, timedelta(hours=1),
                                         tz="Europe/Berlin")
    # The series' time changed: the event describes its first occurrence, weeks ago.
    assert harness.push("updated", "late", first, first + timedelta(hours=1)) is Outcome.APPLIED
    assert [b.start for b in harness.store.bookings("omm_a", ending_after=NOW)] == []
    assert harness.resync.run_pass().ok
    # 23:30 local both nights: 21:30 UTC in summer time, 22:30 UTC after the change.
    assert harness.spans() == [
        ("late", 0, berlin(24, 23, 30), berlin(25, 0, 30)),
        ("late", 0, berlin(25, 23, 30), berlin(26, 0, 30)),
    ]
    assert [s[2].hour for s in harness.spans()] == [21, 22]
    view = occupancy(harness.store.bookings("omm_a"), NOW)
    assert view.state is State.BUSY and view.current is not None
    assert view.current.start == berlin(24, 23, 30)
    assert [b.start for b in view.next] == [berlin(25, 23, 30)]
    later(harness, 3600)  # and after today's ended: tomorrow's is next, the room free
    view = occupancy(harness.store.bookings("omm_a"), harness.clock.now())
    assert view.state is State.FREE and [b.start for b in view.next] == [berlin(25, 23, 30)]


def test_weekly_series_keeps_its_local_time_across_dst(harness: Harness,
                                                       api: FreeBusyApi) -> None:
    first = berlin(12, 9)  # Monday 12 Oct, 09:00-10:00 local, weekly
    api.calendar.series["weekly"] = Series("weekly", ("omm_a",), first, timedelta(hours=1),
                                           tz="Europe/Berlin", every=7)
    window = (NOW - timedelta(days=14), NOW + timedelta(days=21))
    requested = harness.clock.now()
    answer = parse_freebusy(harness.api.fetch(["omm_a"], *window), ["omm_a"])
    assert harness.store.resync_room("omm_a", window, answer["omm_a"], requested, requested)
    starts = [b.start for b in harness.store.bookings("omm_a")]
    assert [s.astimezone(BERLIN).strftime("%a %H:%M") for s in starts] == ["Mon 09:00"] * 5
    assert [s.hour for s in starts] == [7, 7, 8, 8, 8]  # UTC: summer time, then winter time
    assert {b.key for b in harness.store.bookings("omm_a")} == {"weekly_0"}


def _daily(api: FreeBusyApi, uid: str = "standup", hour: int = 10) -> Series:
    first = datetime(2026, 10, 1, hour, tzinfo=SHANGHAI).astimezone(UTC)
    series = Series(uid, ("omm_a",), first, timedelta(hours=1))
    api.calendar.series[uid] = series
    return series


def _occurrence(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


def test_exception_moved_to_another_day(harness: Harness, api: FreeBusyApi) -> None:
    series = _daily(api)
    assert harness.resync.run_pass().ok
    assert [s[2] for s in harness.spans()] == [_occurrence(25), _occurrence(26)]
    # Sunday's occurrence moves to Monday 15:00: its event comes before any answer says so.
    original = int(_occurrence(25).timestamp())
    moved = (_occurrence(26, 15), _occurrence(26, 16))
    later(harness)
    assert harness.push("updated", "standup", *moved, original_time=original) is Outcome.APPLIED
    expected = [("standup", 0, _occurrence(26), _occurrence(26, 11)),
                ("standup", original, *moved)]
    assert harness.spans() == expected
    # A stale answer (asked before the event) cannot bring Sunday's back ...
    requested = harness.clock.now() - timedelta(seconds=1)
    stale = parse_freebusy(harness.api.fetch(["omm_a"], NOW - LOOK_BACK, NOW + LOOK_AHEAD),
                           ["omm_a"])
    later(harness)
    harness.store.resync_room("omm_a", (NOW - LOOK_BACK, NOW + LOOK_AHEAD), stale["omm_a"],
                              requested, harness.clock.now())
    assert harness.spans() == expected
    # ... and once Feishu answers with the exception, nothing changes.
    series.exceptions[original] = moved
    later(harness)
    assert harness.resync.run_pass().ok
    assert harness.spans() == expected


def test_cancelled_occurrence(harness: Harness, api: FreeBusyApi) -> None:
    series = _daily(api)
    assert harness.resync.run_pass().ok
    original = int(_occurrence(26).timestamp())
    api.set(hold=True)
    in_flight = threading.Thread(target=harness.resync.run_pass)
    in_flight.start()  # asked while Monday's occurrence still existed
    wait_for(lambda: api.held, what="a held free/busy request")
    later(harness)
    assert harness.push("deleted", "standup", _occurrence(26), _occurrence(26, 11),
                        original_time=original) is Outcome.APPLIED
    assert [s[2] for s in harness.spans()] == [_occurrence(25)]
    api.release_all()
    in_flight.join(20)
    assert [s[2] for s in harness.spans()] == [_occurrence(25)]
    series.exceptions[original] = None
    api.set(hold=False)
    later(harness)
    assert harness.resync.run_pass().ok
    assert [s[2] for s in harness.spans()] == [_occurrence(25)]


def test_series_deleted_while_an_answer_is_in_flight(harness: Harness,
                                                     api: FreeBusyApi) -> None:
    series = _daily(api)
    series.exceptions[int(_occurrence(26).timestamp())] = (_occurrence(26, 14),
                                                           _occurrence(26, 15))
    assert harness.resync.run_pass().ok
    assert len(harness.spans()) == 2  # Sunday's instance and Monday's exception
    api.set(hold=True)
    in_flight = threading.Thread(target=harness.resync.run_pass)
    in_flight.start()
    wait_for(lambda: api.held, what="a held free/busy request")
    later(harness)
    # Feishu names no room in this delete: it still removes the series everywhere.
    env = envelope("deleted", uid="standup", start=_occurrence(25), end=_occurrence(25, 11),
                   rooms=())
    env["event"]["event_time"] = str(to_epoch_ms(harness.clock.now()))
    assert harness.store.apply(parse_envelope(env), harness.clock.now()).outcome \
        is Outcome.APPLIED
    assert harness.spans() == []
    api.release_all()  # the answer still lists the series and its exception
    in_flight.join(20)
    assert harness.spans() == []
    # A late retry of the series' creation, and of its exception, cannot bring it back: made
    # after the answer was asked for, but before the series was deleted.
    earlier = to_epoch_ms(harness.clock.now()) - 500
    for original in (0, int(_occurrence(26).timestamp())):
        env = envelope("created", uid="standup", original_time=original,
                       start=_occurrence(26, 14), end=_occurrence(26, 15))
        env["event"]["event_time"] = str(earlier)
        assert harness.store.apply(parse_envelope(env), harness.clock.now()).outcome \
            is Outcome.SUPERSEDED
    assert harness.spans() == []


def test_newer_push_for_a_series_invalidates_its_instances(harness: Harness,
                                                           api: FreeBusyApi) -> None:
    series = _daily(api)
    assert harness.resync.run_pass().ok
    assert len(harness.spans()) == 2
    # The series moves to 16:00: until the next answer only the described occurrence is known.
    later(harness)
    series.first_start = datetime(2026, 10, 1, 16, tzinfo=SHANGHAI).astimezone(UTC)
    assert harness.push("updated", "standup", _occurrence(25, 16),
                        _occurrence(25, 17)) is Outcome.APPLIED
    assert [s[2] for s in harness.spans()] == [_occurrence(25, 16)]
    later(harness)
    assert harness.resync.run_pass().ok
    assert [s[2] for s in harness.spans()] == [_occurrence(25, 16), _occurrence(26, 16)]


def test_error_room_ids_keep_their_bookings(harness: Harness, api: FreeBusyApi) -> None:
    _daily(api)
    assert harness.resync.run_pass().ok
    api.calendar.series.clear()
    api.set(error_rooms={"omm_a"})
    result = harness.resync.run_pass()
    assert not result.ok and result.error and "error_room_ids" in result.error
    assert len(harness.spans()) == 2


def test_series_event_resyncs_just_its_rooms_debounced_and_batched(
        standin: FeishuStandIn, api: FreeBusyApi, tmp_path: Path) -> None:
    rooms = [f"omm_{i:02d}" for i in range(60)]
    h = Harness(standin, tmp_path, rooms, SystemClock(), debounce=0.5)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        named = tuple(rooms[:45])
        api.calendar.series["big"] = Series("big", named, now - timedelta(days=20, hours=1),
                                            timedelta(hours=2))
        h.resync.start()  # the first full pass: 3 calls
        wait_for(lambda: len(api.calls) == 3, what="the first full pass")
        assert len(h.spans(rooms[0])) == 3  # yesterday-ish, today, tomorrow within the window
        api.calendar.series["big"].first_start += timedelta(hours=3)
        api.calendar.one_offs["one"] = (named[:2], now + timedelta(hours=5),
                                        now + timedelta(hours=6))
        # A burst: the series' time change, and a one-off in two of its rooms.
        first = now - timedelta(days=20, hours=1) + timedelta(hours=3)
        h.sink.accept(_env("updated", "big", first, first + timedelta(hours=2), named))
        h.sink.accept(_env("created", "one", now + timedelta(hours=5), now + timedelta(hours=6),
                           named[:2]))
        # An exception names a room no series event named: no targeted pass for it.
        h.sink.accept(_env("updated", "big", now, now + timedelta(minutes=5), (rooms[59],),
                           original_time=int((now + timedelta(days=5)).timestamp())))
        # The instances are invalid until the answer: only the one-off shows meanwhile.
        assert [span[0] for span in h.spans(rooms[0])] == ["one"]
        calls = wait_for(lambda: len(api.calls) >= 6 and api.rooms_asked()[3:], 10,
                         what="the targeted pass")
        assert [len(c) for c in calls] == [20, 20, 5]
        assert sorted(itertools.chain(*calls)) == sorted(named)
        wait_for(lambda: h.spans(rooms[0]) == _expected(api, rooms[0], now), 10,
                 what="the moved series' instances")
        assert [span[0] for span in h.spans(rooms[0])] == ["big", "one", "big"]
    finally:
        h.resync.close()
        h.store.close()


def _env(kind: str, uid: str, start: datetime, end: datetime, rooms: tuple[str, ...],
         original_time: int = 0) -> dict[str, Any]:
    return envelope(kind, uid=uid, start=start, end=end, rooms=rooms,
                    original_time=original_time)


def _expected(api: FreeBusyApi, room: str, now: datetime) -> list[tuple[str, int, datetime,
                                                                      datetime]]:
    answer = {"code": 0, "data": {"free_busy": {
        room: api.calendar.slots(room, now - LOOK_BACK, now + LOOK_AHEAD)}}}
    bookings = parse_freebusy(answer, [room])[room]
    return [(b.uid, b.original_time, b.start, b.end)
            for b in sorted(bookings, key=lambda b: (b.start, b.uid))]


def test_a_calendar_answers_as_documented(api: FreeBusyApi, harness: Harness) -> None:
    series = _daily(api)
    series.exceptions[int(_occurrence(26).timestamp())] = (_occurrence(27, 9),
                                                           _occurrence(27, 10))
    answer = harness.api.fetch(["omm_a", "omm_b"], NOW, NOW + timedelta(days=3))
    slots = answer["data"]["free_busy"]["omm_a"]
    assert [(s["uid"], s["original_time"], s["start_time"]) for s in slots] == [
        ("standup", 0, "2026-10-25T10:00:00+08:00"),
        ("standup", int(_occurrence(26).timestamp()), "2026-10-27T09:00:00+08:00"),
        ("standup", 0, "2026-10-27T10:00:00+08:00"),
    ]
    assert answer["data"]["free_busy"]["omm_b"] == [] and answer["data"]["error_room_ids"] == []
    # Calendar is the test's truth: a room no series names is free.
    assert Calendar().slots("omm_a", NOW, NOW + timedelta(days=1)) == []


def test_targeted_pass_shares_the_rate_limit_backoff(standin: FeishuStandIn, api: FreeBusyApi,
                                                      tmp_path: Path) -> None:
    h = Harness(standin, tmp_path, ["omm_a", "omm_b"], SystemClock(), debounce=0.1)
    try:
        h.resync.start()
        wait_for(lambda: len(api.calls) == 1, what="the first full pass")
        now = datetime.now(UTC).replace(microsecond=0)
        first = now - timedelta(days=9, minutes=30)  # today's is in progress
        api.calendar.series["rl"] = Series("rl", ("omm_b",), first, timedelta(hours=1))
        api.set(answer=(429, {"code": 99991400, "msg": "request trigger frequency limit"},
                        {"x-ogw-ratelimit-reset": "1"}))
        h.sink.accept(_env("created", "rl", first, first + timedelta(hours=1), ("omm_b",)))
        wait_for(lambda: len(api.calls) == 2, what="the rate-limited targeted call")
        limited_at = api.calls[1]
        api.set(answer=None)
        wait_for(lambda: len(api.calls) == 3, 10, what="the retry")
        assert api.rooms_asked()[1:] == [["omm_b"], ["omm_b"]]
        waited = api.calls[2].received - limited_at.received
        assert waited >= 0.9  # what the rate limit asked for, not the 0.1 s backoff
        wait_for(lambda: [s[0] for s in h.spans("omm_b")] == ["rl"] * 3, 10,
                 what="the series' instances (today, tomorrow, the day after)")
    finally:
        h.resync.close()
        h.store.close()


def test_a_series_deleted_just_before_an_answer_still_listing_it_stays_deleted(
        harness: Harness, api: FreeBusyApi) -> None:
    """Free/busy may still list a series right after its delete (the targeted pass asks 2 s
    later): within the grace period only a newer event brings it back."""
    _daily(api)
    assert harness.resync.run_pass().ok
    assert len(harness.spans()) == 2
    later(harness)
    assert harness.push("deleted", "standup", _occurrence(25), _occurrence(25, 11)) \
        is Outcome.APPLIED
    assert harness.spans() == []
    later(harness, 2)  # the targeted pass: the stand-in still lists the series
    assert harness.resync.run_rooms(["omm_a"]).ok
    assert harness.spans() == []
    later(harness, 9 * 60)
    assert harness.resync.run_pass().ok
    assert harness.spans() == []
    later(harness)  # a newer event does bring it back at once
    assert harness.push("created", "standup", _occurrence(25), _occurrence(25, 11)) \
        is Outcome.APPLIED
    assert [s[2] for s in harness.spans()] == [_occurrence(25)]


def test_a_deleted_one_off_comes_back_from_an_answer_after_the_grace_period(
        harness: Harness, api: FreeBusyApi) -> None:
    """The grace is bounded: an answer requested after it is authoritative again."""
    start = _occurrence(25)
    api.calendar.one_offs["solo"] = (("omm_a",), start, start + timedelta(hours=1))
    assert harness.resync.run_pass().ok
    later(harness)
    assert harness.push("deleted", "solo", start, start + timedelta(hours=1)) is Outcome.APPLIED
    later(harness, 2)
    assert harness.resync.run_pass().ok
    assert harness.spans() == []
    later(harness, 11 * 60)
    assert harness.resync.run_pass().ok
    assert [s[0] for s in harness.spans()] == ["solo"]
