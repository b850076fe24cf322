"""Re-sync from ``meeting_room/freebusy/batch_get``: real lark SDK, real store, the stand-in.

First :class:`Resync` in this process (each answer's effect, exactly), then whole nodes: ``App``
with its intake child under the supervisor, its ``status`` showing each pass. The nodes play "down
longer than Feishu's retry window": they start with an empty store and events that will never
come; only the re-sync can fill it.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.app import App
from display.clock import SystemClock
from display.config import FeishuConfig, Secret, load_config
from display.errors import FeishuApiError
from display.intake.feishu.channel import ParentChannel
from display.intake.feishu.child import make_resync
from display.intake.feishu.resync import LarkFreeBusy, PassResult, Resync
from display.intake.supervisor import ResyncReport
from display.status import read_status, render_text
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.feishu_standin import (
    FeishuStandIn,
    FreeBusyApi,
    encrypted_body,
    signed_headers,
    slot,
)
from display.testing.intake_support import HttpClient, write_config
from display.testing.waiting import wait_for

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW + timedelta(hours=2)
END = START + timedelta(hours=1)
_apps = itertools.count(1)


def uids(store: ScheduleStore, room: str) -> set[str]:
    return {b.uid for b in store.bookings(room)}


# -- Resync in this process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def api(standin: FeishuStandIn) -> Iterator[FreeBusyApi]:
    # The SDK caches tenant tokens process-wide by app id: a fresh app per test.
    standin.app_id = f"cli_resync_{next(_apps)}"
    yield FreeBusyApi(standin)


class Harness:
    """A :class:`Resync` on a real store, fetching through the SDK from the stand-in."""

    def __init__(self, standin: FeishuStandIn, tmp: Path, rooms: list[str]) -> None:
        self.store = ScheduleStore(tmp / "schedule.db", durable=False)
        self.rooms = rooms
        self.changed: list[frozenset[str]] = []
        self.reports: list[tuple[PassResult, datetime | None]] = []
        feishu = FeishuConfig(app_id=standin.app_id, app_secret=Secret(standin.app_secret),
                              domain=standin.domain)
        self.resync = Resync(LarkFreeBusy(feishu), self.store, SystemClock(), lambda: self.rooms,
                             on_changed=self.changed.append,
                             on_report=lambda r, n: self.reports.append((r, n)),
                             interval=0, backoff_initial=0.1)

    def snapshot(self) -> dict[str, set[str]]:
        return {room: uids(self.store, room) for room in self.rooms}


@pytest.fixture
def harness(standin: FeishuStandIn, api: FreeBusyApi, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(standin, tmp_path, ["omm_a", "omm_b"])
    yield h
    h.resync.close()
    h.store.close()


def test_pass_fills_and_empties_rooms(harness: Harness, api: FreeBusyApi) -> None:
    api.slots = {"omm_a": [slot("m1", START, END), slot("m2", END, END + timedelta(hours=1))],
                 "omm_b": [slot("series", START, END, original_time=int(START.timestamp()))]}
    result = harness.resync.run_pass()
    assert (result.ok, result.rooms, result.changed) == (True, 2, {"omm_a", "omm_b"})
    assert harness.snapshot() == {"omm_a": {"m1", "m2"}, "omm_b": {"series"}}
    [series] = harness.store.bookings("omm_b")
    assert series.event_id == f"series_{int(START.timestamp())}"
    assert (series.start, series.end, series.organizer_open_id) == (START, END, "ou_alice")
    # Removed and moved upstream while we were not listening.
    api.set(slots={"omm_a": [slot("m2", END, END + timedelta(minutes=30))]})
    result = harness.resync.run_pass()
    assert result.ok and result.changed == {"omm_a", "omm_b"}
    assert harness.snapshot() == {"omm_a": {"m2"}, "omm_b": set()}
    assert harness.store.bookings("omm_a")[0].end == END + timedelta(minutes=30)
    assert harness.resync.run_pass().changed == frozenset()  # nothing new: nothing changed
    call = api.calls[-1]
    assert sorted(call.query["room_ids"]) == ["omm_a", "omm_b"]
    time_min = datetime.fromisoformat(call.query["time_min"][0])
    time_max = datetime.fromisoformat(call.query["time_max"][0])
    assert time_max - time_min == timedelta(hours=49)
    assert abs((time_min - datetime.now(UTC)) + timedelta(hours=1)) < timedelta(minutes=1)


def test_more_than_20_rooms_take_several_calls(standin: FeishuStandIn, api: FreeBusyApi,
                                               tmp_path: Path) -> None:
    rooms = [f"omm_r{i:02d}" for i in range(45)]
    h = Harness(standin, tmp_path, rooms)
    try:
        api.slots = {room: [slot(f"in-{room}", START, END)] for room in rooms}
        result = h.resync.run_pass()
        assert result.ok and result.rooms == 45 and len(result.changed) == 45
        asked = api.rooms_asked()
        assert [len(a) for a in asked] == [20, 20, 5]
        assert [r for a in asked for r in a] == rooms
        assert all(uids(h.store, room) == {f"in-{room}"} for room in rooms)
    finally:
        h.store.close()


def _answer(free_busy: Any, **data: Any) -> tuple[int, Any]:
    return 200, {"code": 0, "msg": "success", "data": {"free_busy": free_busy, **data}}


GOOD = {"uid": "new", "original_time": 0, "start_time": START.isoformat(),
        "end_time": END.isoformat()}
MALFORMED = {
    "missing uid": (_answer({"omm_a": [{k: v for k, v in GOOD.items() if k != "uid"}]}),
                    "data.free_busy.omm_a[0].uid: must be a non-empty string"),
    "missing end": (_answer({"omm_a": [{k: v for k, v in GOOD.items() if k != "end_time"}]}),
                    "data.free_busy.omm_a[0].end_time: must be an RFC 3339 string"),
    "time as number": (_answer({"omm_a": [{**GOOD, "start_time": 1764061200}]}),
                       "data.free_busy.omm_a[0].start_time: must be an RFC 3339 string"),
    "no offset": (_answer({"omm_a": [{**GOOD, "start_time": "2026-11-25T09:00:00"}]}),
                  "has no UTC offset"),
    "start = end": (_answer({"omm_a": [{**GOOD, "end_time": GOOD["start_time"]}]}),
                    "data.free_busy.omm_a[0].end_time: must be after start_time"),
    "original_time text": (_answer({"omm_a": [{**GOOD, "original_time": "soon"}]}),
                           "original_time: must be an integer or a string of ASCII digits"),
    "original_time superscript": (_answer({"omm_a": [{**GOOD, "original_time": "\u00b2"}]}),
                                  "original_time: must use ASCII digits 0-9"),
    "slots not a list": (_answer({"omm_a": {"uid": "new"}}),
                         "data.free_busy.omm_a: must be a list"),
    "free_busy a list": (_answer([]), "data.free_busy: must be an object keyed by room id"),
    "no data": ((200, {"code": 0, "msg": "success"}), "data: must be an object"),
    "no code": ((200, {"msg": "success", "data": {}}), "code: API error None"),
    "error_room_ids text": (_answer({}, error_room_ids="omm_a"),
                            "data.error_room_ids: must be a list of room ids"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_answer_changes_nothing(harness: Harness, api: FreeBusyApi,
                                          case: str) -> None:
    api.slots = {"omm_a": [slot("old", START, END)], "omm_b": [slot("b", START, END)]}
    assert harness.resync.run_pass().ok
    before, harness.changed[:] = harness.snapshot(), []
    answer, message = MALFORMED[case]
    api.set(answer=answer, slots={})  # were it applied, both rooms would empty
    result = harness.resync.run_pass()
    assert not result.ok
    assert result.error is not None and message in result.error
    assert result.error.startswith("malformed free/busy answer: ")
    assert harness.snapshot() == before and not harness.changed and result.rooms == 0


def test_a_malformed_chunk_does_not_stop_the_others(standin: FeishuStandIn, api: FreeBusyApi,
                                                    tmp_path: Path) -> None:
    rooms = [f"omm_r{i:02d}" for i in range(25)]
    h = Harness(standin, tmp_path, rooms)
    bad = {"omm_r03": [{**GOOD, "end_time": GOOD["start_time"]}]}
    try:
        api.slots = {**{room: [slot(f"in-{room}", START, END)] for room in rooms}, **bad}
        result = h.resync.run_pass()
        assert not result.ok and result.error and "omm_r03[0].end_time" in result.error
        assert result.rooms == 5  # the second chunk went through
        assert all(not uids(h.store, room) for room in rooms[:20])
        assert all(uids(h.store, room) == {f"in-{room}"} for room in rooms[20:])
    finally:
        h.store.close()


def test_error_room_ids_keep_their_bookings(harness: Harness, api: FreeBusyApi) -> None:
    api.slots = {"omm_a": [slot("a", START, END)], "omm_b": [slot("b", START, END)]}
    assert harness.resync.run_pass().ok
    api.set(answer=_answer({}, error_room_ids=["omm_a"]))  # omm_b is now free, omm_a unknown
    result = harness.resync.run_pass()
    assert not result.ok and result.rooms == 1
    assert result.error == ("Feishu could not answer for 1 room(s) (error_room_ids): omm_a")
    assert harness.snapshot() == {"omm_a": {"a"}, "omm_b": set()}


@pytest.mark.parametrize(("token_answer", "message"), [
    ((200, {"code": 10014, "msg": "app secret invalid"}),
     "tenant token refused: code 10014: 'app secret invalid' (check feishu.app_id and "
     "feishu.app_secret)"),
    ((200, {"code": 99991400, "msg": "request trigger frequency limit"}),
     "tenant token: rate limited (code 99991400)"),
    ((502, b"Bad Gateway"), "answered something that is not JSON"),
])
def test_token_errors_change_nothing(harness: Harness, api: FreeBusyApi,
                                     token_answer: tuple[Any, ...], message: str) -> None:
    api.slots = {"omm_a": [slot("a", START, END)]}
    api.token_answer = token_answer
    result = harness.resync.run_pass()
    assert not result.ok and result.error is not None and message in result.error
    assert api.token_calls and not api.calls  # never asked for free/busy without a token
    assert harness.snapshot() == {"omm_a": set(), "omm_b": set()} and not harness.changed


@pytest.mark.parametrize(("answer", "message", "retry_after"), [
    ((429, {"code": 99991400, "msg": "request trigger frequency limit"},
      {"x-ogw-ratelimit-reset": "7"}), "rate limited (HTTP 429, code 99991400)", 7.0),
    ((400, {"code": 99991400, "msg": "request trigger frequency limit"}),
     "rate limited (HTTP 400, code 99991400)", None),
    ((200, {"code": 99991672, "msg": "Access denied. scope calendar:room:readonly"}),
     "free/busy: code 99991672: 'Access denied. scope calendar:room:readonly'", None),
    ((500, {"code": 1500, "msg": "internal error"}), "free/busy: HTTP 500, code 1500: "
     "'internal error'", None),
    ((502, b"<html>Bad Gateway</html>"), "answered something that is not JSON", None),
])
def test_api_errors_stop_the_pass(standin: FeishuStandIn, api: FreeBusyApi, tmp_path: Path,
                                  answer: tuple[Any, ...], message: str,
                                  retry_after: float | None) -> None:
    h = Harness(standin, tmp_path, [f"omm_r{i:02d}" for i in range(45)])
    try:
        api.answer = answer
        result = h.resync.run_pass()
        assert not result.ok and result.error and message in result.error
        assert result.retry_after == retry_after
        assert len(api.calls) == 1  # the next chunk would fail alike: not asked
        assert result.rooms == 0 and not h.changed
    finally:
        h.store.close()


def test_unreachable_feishu(tmp_path: Path) -> None:
    feishu = FeishuConfig(app_id="cli_nowhere", app_secret=Secret("s"),
                          domain="http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(FeishuApiError, match=r"cannot reach http://127.0.0.1:9: ConnectionError"):
        LarkFreeBusy(feishu).fetch(["omm_a"], NOW, NOW + timedelta(hours=1))


class ScriptedApi:
    """Answers from a list of outcomes (an exception or slots), one per fetch; for scheduling."""

    def __init__(self, outcomes: list[Exception | dict[str, Any]]) -> None:
        self.outcomes = outcomes
        self.fetched = threading.Semaphore(0)

    def fetch(self, rooms: Any, time_min: datetime, time_max: datetime) -> Any:
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        self.fetched.release()
        if isinstance(outcome, Exception):
            raise outcome
        return {"code": 0, "data": {"free_busy": outcome}}


def test_worker_backs_off_doubling_and_resets(tmp_path: Path) -> None:
    limited = FeishuApiError("rate limited (HTTP 429, code 99991400)", retry_after=0.5)
    api = ScriptedApi([FeishuApiError("HTTP 503"), FeishuApiError("HTTP 503"), limited,
                       {"omm_a": []}])
    reports: list[tuple[PassResult, datetime | None]] = []
    with ScheduleStore(tmp_path / "s.db", durable=False) as store:
        resync = Resync(api, store, SystemClock(), lambda: ["omm_a"], on_changed=lambda r: None,
                        on_report=lambda r, n: reports.append((r, n)), interval=30,
                        backoff_initial=0.1, backoff_max=0.3)
        resync.start()
        try:
            wait_for(lambda: len(reports) >= 4, 10, what="four passes")
        finally:
            resync.close()
    delays = [(n - r.at).total_seconds() if n else None for r, n in reports]
    assert [r.ok for r, _ in reports] == [False, False, False, True]
    assert delays[0] == pytest.approx(0.1, abs=0.05)
    assert delays[1] == pytest.approx(0.2, abs=0.05)
    assert delays[2] == pytest.approx(0.5, abs=0.05)  # the rate limit asked for more than 0.3
    assert delays[3] == pytest.approx(30, abs=0.1)  # success: back to the periodic interval


def test_requests_coalesce_and_wait_for_a_backoff(tmp_path: Path) -> None:
    api = ScriptedApi([FeishuApiError("HTTP 503"), {"omm_a": []}])
    reports: list[tuple[PassResult, datetime | None]] = []
    with ScheduleStore(tmp_path / "s.db", durable=False) as store:
        resync = Resync(api, store, SystemClock(), lambda: ["omm_a"], on_changed=lambda r: None,
                        on_report=lambda r, n: reports.append((r, n)), interval=0,
                        backoff_initial=0.4)
        resync.start()
        try:
            wait_for(lambda: reports, 10, what="the first pass")
            failed_at = time.monotonic()
            for _ in range(3):
                resync.request("test")
            wait_for(lambda: len(reports) >= 2, 10, what="the retry")
            assert time.monotonic() - failed_at >= 0.3  # the requests waited for the backoff
            assert reports[1][0].ok and reports[1][1] is None  # interval 0: no periodic pass
            resync.request("reconnected")
            wait_for(lambda: len(reports) >= 3, 10, what="the requested pass")
        finally:
            resync.close()
    assert len(reports) == 3  # three requests during the backoff made one pass


def test_link_down_resyncs_more_often(tmp_path: Path) -> None:
    api = ScriptedApi([{"omm_a": []}])
    reports: list[tuple[PassResult, datetime | None]] = []
    with ScheduleStore(tmp_path / "s.db", durable=False) as store:
        resync = Resync(api, store, SystemClock(), lambda: ["omm_a"], on_changed=lambda r: None,
                        on_report=lambda r, n: reports.append((r, n)), interval=60,
                        link_down_interval=0.2)
        resync.start()
        try:
            wait_for(lambda: reports, 10, what="the first pass")
            resync.link(False)
            wait_for(lambda: len(reports) >= 3, 10, what="passes while the link is down")
        finally:
            resync.close()
    assert reports[0][1] is not None
    assert (reports[0][1] - reports[0][0].at).total_seconds() == pytest.approx(60, abs=0.1)
    assert reports[1][1] is not None  # a pass started and ended while the link was down
    assert (reports[1][1] - reports[1][0].at).total_seconds() == pytest.approx(0.2, abs=0.05)


# -- the child: when it re-syncs, what it tells the parent ----------------------------------------


def test_make_resync_off_or_without_credentials(tmp_path: Path) -> None:
    out = io.StringIO()
    channel = ParentChannel(out)
    with ScheduleStore(tmp_path / "s.db", durable=False) as store:
        off = load_config(write_config(tmp_path / "off.toml", state_dir=tmp_path, feishu={
            "app_id": "cli_x", "app_secret": "s", "resync": False}))
        assert off.feishu is not None
        assert make_resync(off, off.feishu, store, channel, None, 30) is None
        assert out.getvalue() == ""  # switched off: nothing to report
        bare = load_config(write_config(tmp_path / "bare.toml", state_dir=tmp_path, feishu={
            "mode": "webhook", "verification_token": "v"}))
        assert bare.feishu is not None
        assert make_resync(bare, bare.feishu, store, channel, None, 30) is None
    line = json.loads(out.getvalue())["resync"]
    assert ResyncReport.from_line(line) is not None
    assert line["ok"] is False and line["next_at"] is None
    assert line["error"] == ("re-sync needs feishu.app_id and feishu.app_secret (or set "
                             "feishu.resync = false)")


def test_resync_line_validation() -> None:
    good = {"ok": True, "at": 1764061200.5, "error": None, "rooms": 3, "changed": 1,
            "next_at": 1764062100}
    report = ResyncReport.from_line(good)
    assert report is not None and report.next_at is not None
    assert report.to_json()["at"] == "2025-11-25T09:00:00.500000+00:00"
    for bad in ({**good, "ok": "yes"}, {**good, "rooms": -1}, {**good, "at": None},
                {**good, "error": 5}, {**good, "next_at": "soon"}, [good]):
        assert ResyncReport.from_line(bad) is None


def test_app_vouches_with_a_successful_resync(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", state_dir=tmp_path / "state",
                                      feishu={"app_id": "cli_x", "app_secret": "s"}))
    clock = FakeClock(NOW)
    with App(config, clock) as app:
        app.node.add_status_source("resync", app.resync_status)
        assert app.node.status()["node"]["resync"]["at"] is None
        app.freshness.expect("feishu", NOW)
        stale_after = app.freshness.stale_after
        app.resync_done(ResyncReport(ok=False, at=NOW, error="rate limited", rooms=0,
                                     changed=0, next_at=NOW + timedelta(seconds=30)))
        clock.advance(stale_after)
        assert app.freshness.stale(clock.now())  # link down, no successful re-sync
        app.resync_done(ResyncReport(ok=True, at=clock.now(), error=None, rooms=2, changed=0,
                                     next_at=None))
        assert not app.freshness.stale(clock.now())
        clock.advance(stale_after)
        assert app.freshness.stale(clock.now())  # and stale again once that is old
        doc = app.node.status()
        assert doc["node"]["resync"]["ok"] is True
        assert "  re-sync: ok at " in render_text(doc)
        app.resync_done(ResyncReport(ok=False, at=clock.now(), error="rate limited", rooms=0,
                                     changed=0, next_at=clock.now() + timedelta(minutes=1)))
        assert "  re-sync: FAILED (rate limited) at " in render_text(app.node.status())


# -- whole nodes -----------------------------------------------------------------------------------


class Node:
    """An ``App`` whose intake child (under the supervisor) talks to its own stand-in."""

    def __init__(self, tmp: Path, *, rooms: tuple[str, ...], args: tuple[str, ...] = (),
                 **feishu: Any) -> None:
        self.standin = FeishuStandIn(ping_interval=1, reconnect_interval=1)
        self.standin.start()
        self.api = FreeBusyApi(self.standin)
        self.config = write_config(tmp / "config.toml", state_dir=tmp / "state", rooms=rooms,
                                   feishu={"app_id": self.standin.app_id,
                                           "app_secret": self.standin.app_secret,
                                           "domain": self.standin.domain, **feishu})
        self.args = args
        self.app: App | None = None

    def start(self) -> Node:
        self.app = App(load_config(self.config), intake_args=self.args)
        self.app.start_intake()
        return self

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.standin.close()

    @property
    def store(self) -> ScheduleStore:
        assert self.app is not None
        return self.app.store

    def resync(self) -> dict[str, Any]:
        assert self.app is not None
        doc: dict[str, Any] = self.app.node.status()["node"]["resync"]
        return doc

    def next_report(self, after: str | None = None, timeout: float = 20) -> dict[str, Any]:
        """The first re-sync report whose time differs from ``after``."""
        return wait_for(lambda: (r := self.resync())["at"] not in (None, after) and r,
                          timeout, what="a re-sync report")


ROOMS = tuple(f"omm_r{i:02d}" for i in range(45))


KEY = "resync-encrypt-key"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """Two nodes started together (each child takes seconds to import the SDK)."""
    made = {
        # Webhook mode, 45 rooms, periodic re-sync every 0.4 s.
        "busy": Node(tmp_path_factory.mktemp("busy"), rooms=ROOMS,
                     args=("--resync-interval", "0.4", "--resync-backoff", "0.2"),
                     mode="webhook", listen="127.0.0.1:0", verification_token="vtoken",
                     encrypt_key=KEY),
        # Long connection, a day between periodic passes: at start and after reconnects only.
        "quiet": Node(tmp_path_factory.mktemp("quiet"), rooms=("omm_a",),
                      args=("--resync-backoff", "0.3"), resync_minutes=1440),
    }
    made["busy"].api.slots = {room: [slot(f"lost-{room}", START, END)] for room in ROOMS}
    made["quiet"].api.token_answer = (200, {"code": 10014, "msg": "app secret invalid"})
    made["quiet"].api.slots = {"omm_a": [slot("q1", START, END)]}
    try:
        for node in made.values():
            node.start()
        yield made
    finally:
        for node in made.values():
            node.close()


def post_event(node: Node, env: dict[str, Any]) -> tuple[int, Any]:
    """Deliver ``env`` to a webhook node the way Feishu does (encrypted and signed)."""
    assert node.app is not None and node.app.intake is not None
    intake = node.app.intake
    listen = wait_for(lambda: intake.ready_listen, 30, what="the webhook listening")
    body = encrypted_body(env, KEY)
    client = HttpClient(listen)
    try:
        return client.request("POST", "/webhook/event", body, signed_headers(body, KEY))
    finally:
        client.close()


def test_token_errors_back_off_then_reconnects_resync(nodes: dict[str, Node]) -> None:
    node = nodes["quiet"]
    first = wait_for(lambda: (r := node.resync())["at"] and r, 30, what="a first pass")
    assert first["ok"] is False and first["rooms"] == 0
    assert first["error"].startswith("tenant token refused: code 10014: 'app secret invalid'")
    second = node.next_report(after=first["at"])
    gaps = [datetime.fromisoformat(r["next_at"]) - datetime.fromisoformat(r["at"])
            for r in (first, second)]
    # 0.3 s doubling (this test runs first, but the child may have failed more than once).
    assert gaps[0] in [pytest.approx(timedelta(seconds=0.3 * 2**i), abs=timedelta(seconds=0.05))
                       for i in range(3)]
    assert gaps[1] == pytest.approx(2 * gaps[0], abs=timedelta(seconds=0.05))
    assert not node.api.calls and not uids(node.store, "omm_a")  # nothing asked, nothing changed
    assert node.app is not None and not node.app.freshness.links()["feishu"]["vouched"]
    node.api.set(token_answer=(200, {"code": 0, "tenant_access_token": "t-test",
                                     "expire": 7200}))
    ok = wait_for(lambda: (r := node.resync())["ok"] and r, 15, what="a good pass")
    assert uids(node.store, "omm_a") == {"q1"}
    # resync_minutes = 1440: the next periodic pass is a day away.
    assert datetime.fromisoformat(ok["next_at"]) - datetime.fromisoformat(ok["at"]) \
        >= timedelta(hours=23)
    assert node.app.freshness.links()["feishu"]["vouched"]
    # A reconnect: what happened meanwhile may never be delivered, so re-sync.
    calls = len(node.api.calls)
    node.api.set(slots={"omm_a": [slot("q2", START, END)]})
    wait_for(node.standin.connections, 15, what="the long connection")
    node.standin.drop_connections()
    wait_for(lambda: uids(node.store, "omm_a") == {"q2"}, 20, what="a re-sync on reconnect")
    assert len(node.api.calls) == calls + 1
    assert node.next_report(after=ok["at"])["ok"]


def test_node_down_too_long_is_filled_by_the_resync(nodes: dict[str, Node]) -> None:
    busy = nodes["busy"]
    wait_for(lambda: all(uids(busy.store, r) == {f"lost-{r}"} for r in ROOMS), 30,
               what="every room re-synced")
    report = busy.next_report()
    assert report["enabled"] and report["error"] is None and report["rooms"] == 45
    assert report["ok"] is True
    asked = busy.api.rooms_asked()
    assert asked and all(len(a) <= 20 for a in asked)
    assert set(ROOMS) <= {r for a in asked[:3] for r in a}  # the first pass covered them all
    assert busy.api.unauthorised == 0 and len(busy.api.token_calls) == 1  # token cached
    assert busy.app is not None and busy.app.freshness.links()["feishu"]["vouched"]


def converged(node: Node) -> bool:
    """The store holds exactly what the stand-in's table says."""
    with node.api.lock:
        table = {room: {s["uid"] for s in node.api.slots.get(room, [])} for room in ROOMS}
    return all(uids(node.store, room) == table[room] for room in ROOMS)


def shown(node: Node, room: str) -> list[str]:
    """What the node's loop shows as ``room``'s next bookings after one pass of it."""
    assert node.app is not None
    node.app.node.tick()
    view = node.app.node.views()[room]
    return [b.uid for b in view.occupancy.next]


def test_booking_removed_upstream_disappears(nodes: dict[str, Node]) -> None:
    busy = nodes["busy"]
    wait_for(lambda: converged(busy), 30, what="re-synced")
    assert shown(busy, "omm_r30") == ["lost-omm_r30"]
    slots = {room: [slot(f"lost-{room}", START, END)] for room in ROOMS}
    slots["omm_r07"] = []
    slots["omm_r30"] = [slot("moved", START + timedelta(hours=1), END + timedelta(hours=1))]
    busy.api.set(slots=slots)
    wait_for(lambda: not uids(busy.store, "omm_r07") and uids(busy.store, "omm_r30")
               == {"moved"}, 15, what="removed and moved bookings")
    assert uids(busy.store, "omm_r08") == {"lost-omm_r08"}
    # The child said which rooms changed; the node re-read them and shows the change.
    wait_for(lambda: shown(busy, "omm_r30") == ["moved"], 10, what="the node's view")


def test_event_newer_than_the_request_is_kept(nodes: dict[str, Node]) -> None:
    busy = nodes["busy"]
    room = ROOMS[0]
    slots = {r: [slot(f"lost-{r}", START, END)] for r in ROOMS}
    slots[room] = [slot("doomed", START, END)]
    busy.api.set(slots=slots)
    wait_for(lambda: converged(busy), 15, what="doomed re-synced")
    busy.api.set(hold=True)

    def held_with_room(besides: object = None) -> list[Any]:
        """Held requests asking for ``room``; other chunks' requests are let through."""
        with busy.api.lock:
            entries = list(busy.api.held)
        for h in entries:
            if room not in h.rooms:
                h.release()
        return [h for h in entries if room in h.rooms and h is not besides]

    held = wait_for(held_with_room, 15, what="a held free/busy request")[0]
    # While Feishu is answering (its answer already fixed): one booking created, one deleted.
    for kind, uid in (("created", "fresh"), ("deleted", "doomed")):
        status, _ = post_event(busy, envelope(kind, uid=uid, start=START, end=END, rooms=(room,)))
        assert status == 200
    assert uids(busy.store, room) == {"fresh"}  # committed before the answer
    slots[room] = [slot("fresh", START, END)]  # Feishu knows too; the held answer does not
    busy.api.set(slots=slots)
    held.release()
    # The next pass asks for the room only after this pass applied every chunk.
    wait_for(lambda: held_with_room(besides=held), 15, what="the next pass")
    assert uids(busy.store, room) == {"fresh"}  # neither deleted nor resurrected
    busy.api.set(hold=False)
    busy.api.release_all()


def test_bad_answers_show_in_status_and_change_nothing(nodes: dict[str, Node]) -> None:
    busy = nodes["busy"]
    wait_for(lambda: converged(busy) and busy.resync()["ok"], 15, what="a good pass")
    before = {room: uids(busy.store, room) for room in ROOMS}
    with busy.api.lock:
        table = dict(busy.api.slots)
    # The first chunk's answer is malformed; the others would empty their rooms.
    busy.api.set(slots={"omm_r02": [{**GOOD, "end_time": GOOD["start_time"]}]})
    report = wait_for(lambda: (r := busy.resync())["ok"] is False and r, 15, what="failure")
    assert "malformed free/busy answer: data.free_busy.omm_r02[0].end_time: must be after " \
           "start_time" in report["error"]
    busy.api.set(answer=(429, {"code": 99991400, "msg": "request trigger frequency limit"},
                         {"x-ogw-ratelimit-reset": "1"}))
    report = wait_for(lambda: (r := busy.resync())["error"] and "rate limited" in r["error"]
                        and r, 15, what="rate limited")
    assert report["error"] == "rate limited (HTTP 429, code 99991400)"
    waited = datetime.fromisoformat(report["next_at"]) - datetime.fromisoformat(report["at"])
    assert waited >= timedelta(seconds=1)  # what the rate limit asked for
    emptied = {room: set() for room in ROOMS[20:]}
    assert {room: uids(busy.store, room) for room in ROOMS} == {**before, **emptied}
    busy.api.set(answer=None, slots=table)
    wait_for(lambda: busy.resync()["ok"], 15, what="recovered")


def test_resync_off_in_status(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", state_dir=tmp_path / "state",
                                      feishu={"app_id": "cli_x", "app_secret": "s",
                                              "resync": False}))
    with App(config) as app:
        off = app.resync_status()
        assert off["enabled"] is False
        # What a sign can and cannot know of recurring series, in JSON and in the text.
        assert "only the occurrence its latest event describes" in str(off["series"])
        text = render_text({"generated_at": NOW.isoformat(), "rooms": [],
                            "node": {"name": "n", "role": "single", "resync": off}})
        assert "series: re-sync is off: a recurring series shows only" in text
    # Without a running node, from the store: the same note.
    doc = read_status(config)
    assert doc["node"]["running"] is False and doc["node"]["resync"] == off
    assert "series: re-sync is off" in render_text(doc)
