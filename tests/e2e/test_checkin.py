"""Check-in and release on a single box: the node's loop on a fake clock, the real release helper
(lark-oapi's client) against the Feishu stand-in's free/busy and ``instance/reply``."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from display.checkin.ledger import Step
from display.checkin.service import Action
from display.config import DeviceConfig, DeviceKind
from display.model import Booking, CheckinState, State
from display.outputs import Effect, LedOutput
from display.render.eink import compose
from display.render.led import led_output
from display.status import render_text
from display.testing.checkin_box import T0, CheckinBox, write_box_config
from display.testing.clock import FakeClock
from display.testing.feishu_standin import (
    FeishuStandIn,
    FreeBusyApi,
    InstanceReplyApi,
    slot,
)
from display.testing.waiting import wait_for
from display.web.document import metrics_text

_apps = itertools.count(1)
END = T0 + timedelta(hours=1)


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


class Site:
    """The stand-in's free/busy and reply endpoints, and box configs pointing at them."""

    def __init__(self, standin: FeishuStandIn, tmp: Path) -> None:
        standin.app_id = f"cli_checkin_{next(_apps)}"
        self.standin = standin
        self.freebusy = FreeBusyApi(standin)
        self.reply = InstanceReplyApi(standin, self.freebusy)
        self.tmp = tmp

    def config(self, **kw: object) -> Path:
        return write_box_config(self.tmp / "config.toml", domain=self.standin.domain,
                                app_id=self.standin.app_id, app_secret=self.standin.app_secret,
                                **kw)  # type: ignore[arg-type]

    def book(self, box: CheckinBox, uid: str, start: object = T0, end: object = END,
             **kw: object) -> None:
        """A booking both in Feishu (free/busy) and in the box's store."""
        organizer = str(kw.get("organizer", "ou_alice"))
        room = str(kw.get("room", "omm_a"))
        self.freebusy.slots.setdefault(room, []).append(
            slot(uid, start, end, organizer=organizer))  # type: ignore[arg-type]
        box.book(uid, start, end, room=room, organizer=organizer)  # type: ignore[arg-type]


@pytest.fixture
def site(standin: FeishuStandIn, tmp_path: Path) -> Site:
    return Site(standin, tmp_path)


def step(box: CheckinBox, uid: str) -> Step | None:
    found = [r.step for r in box.service.ledger.records() if r.key == f"{uid}_0"]
    return found[0] if found else None


def test_nobody_checks_in_the_booking_is_released_once_and_the_room_turns_free(
        site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0 - timedelta(minutes=5))) as box:
        site.book(box, "bk-noshow")
        box.tick_at(T0 - timedelta(minutes=5))
        box.tick_at(T0)
        view = box.view()
        assert view.occupancy.state is State.BUSY
        assert view.checkin.state is CheckinState.WAITING
        assert view.checkin.release_at == T0 + timedelta(minutes=10)
        box.tick_at(T0 + timedelta(minutes=9, seconds=59))
        assert site.reply.calls == []
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-noshow") is Step.RELEASED, what="release recorded")
        assert site.reply.calls == [{"room_id": "omm_a", "uid": "bk-noshow", "original_time": 0,
                                     "status": "NOT_CHECK_IN"}]
        assert site.reply.requests[0].headers["Content-Type"].startswith("application/json")
        box.node.tick()
        view = box.view()
        assert view.occupancy.state is State.FREE
        assert view.checkin.state is CheckinState.RELEASED
        # A re-sync's answer and the store agree: Feishu's free/busy no longer lists it, and
        # a late retry of the booking's "created" event does not bring it back.
        assert site.freebusy.slots["omm_a"] == []
        box.book("bk-noshow", T0, END)
        box.tick_at(T0 + timedelta(minutes=20))
        assert box.view().occupancy.state is State.FREE
        assert len(site.reply.calls) == 1
        status = box.node.status()
        assert status["node"]["checkin"]["releases"] == {"released": 1}
        assert 'room_display_checkin_releases_total{outcome="released"} 1' in metrics_text(
            status, {})


def test_a_checked_in_booking_is_kept(site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-kept")
        box.tick_at(T0 + timedelta(minutes=2))
        result = box.service.press("omm_a", Action.IN, "cli").result(5)
        assert result.ok and "checked in" in result.message
        box.node.tick()
        assert box.view().checkin.state is CheckinState.CHECKED_IN
        box.tick_at(T0 + timedelta(minutes=30))
        assert site.reply.calls == []
        assert box.view().occupancy.state is State.BUSY
        assert box.node.status()["node"]["checkin"]["checkins"] == {"cli": 1}


def test_ending_early_replies_ended_before_due_and_frees_the_room_from_now(site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-end")
        box.tick_at(T0 + timedelta(minutes=25))
        result = box.service.press("omm_a", Action.END, "cli").result(60)
        assert result.ok, result.message
        assert site.reply.calls == [{"room_id": "omm_a", "uid": "bk-end", "original_time": 0,
                                     "status": "ENDED_BEFORE_DUE"}]
        box.node.tick()
        assert box.view().occupancy.state is State.FREE
        # The booking stays in today's list as it was: until the early end.
        (kept,) = box.store.bookings("omm_a")
        assert kept.end == T0 + timedelta(minutes=25)


def test_back_to_back_with_the_same_organizer_counts_as_checked_in(site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-first")
        site.book(box, "bk-second", END, END + timedelta(hours=1))
        site.book(box, "bk-other", END, END + timedelta(hours=1), room="omm_a",
                  organizer="ou_bob")
        box.tick_at(T0 + timedelta(minutes=1))
        box.service.press("omm_a", Action.IN, "button").result(5)
        box.tick_at(END + timedelta(minutes=1))
        assert step(box, "bk-second") is Step.CHECKED_IN
        box.tick_at(END + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-other") is Step.RELEASED, what="other organizer released")
        assert [c["uid"] for c in site.reply.calls] == ["bk-other"]


def test_a_booking_first_seen_after_its_start_gets_its_own_window(site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        box.tick_at(T0 + timedelta(minutes=8))
        site.book(box, "bk-late")  # made (or first heard of) 8 minutes into the meeting
        box.node.tick()
        assert box.view().checkin.release_at == T0 + timedelta(minutes=18)
        box.tick_at(T0 + timedelta(minutes=12))
        assert site.reply.calls == [] and step(box, "bk-late") is Step.WAITING
        box.tick_at(T0 + timedelta(minutes=18))
        wait_for(lambda: step(box, "bk-late") is Step.RELEASED, what="late booking released")


def test_dry_run_calls_nothing_and_shows_what_it_would_release(site: Site) -> None:
    with CheckinBox(site.config(mode="dry-run", window=10), FakeClock(T0)) as box:
        site.book(box, "bk-dry")
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        box.tick_at(T0 + timedelta(minutes=11))
        assert step(box, "bk-dry") is Step.DRY_RUN
        status = box.node.status()["node"]["checkin"]
        assert status["dry_run"] == 1 and status["mode"] == "dry-run"
        assert [b["state"] for b in status["bookings"]] == ["dry_run"]
        assert box.view().occupancy.state is State.BUSY
    assert site.reply.calls == []


def test_a_refused_release_is_shown_and_not_retried(site: Site) -> None:
    site.reply.answer = (200, {"code": 193001, "msg": "no permission"})
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-refused")
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-refused") is Step.REFUSED, what="refusal recorded")
        for minutes in (11, 12, 30):
            box.tick_at(T0 + timedelta(minutes=minutes))
        assert len(site.reply.calls) == 1
        assert box.view().occupancy.state is State.BUSY
        status = box.node.status()
        (booking,) = status["node"]["checkin"]["bookings"]
        assert booking["state"] == "refused" and "193001" in booking["detail"]
        text = render_text(status)
        assert "check-in: release, window 10 min; 0 check-in(s), 0 released" in text
        assert "omm_a 09:00: refused (Feishu refused: HTTP 200, code 193001" in text


def test_a_release_that_times_out_is_unknown_and_never_sent_again(site: Site) -> None:
    site.reply.delay = 5.0
    with CheckinBox(site.config(window=10), FakeClock(T0), reply_timeout=0.5) as box:
        site.book(box, "bk-slow")
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-slow") is Step.UNKNOWN, what="timeout recorded")
        site.reply.release_held()
        box.tick_at(T0 + timedelta(minutes=15))
        assert len(site.reply.calls) == 1
        assert box.view().occupancy.state is State.BUSY


def test_an_occurrence_of_a_series_is_never_released_and_not_ended_by_a_person(
        site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        # A daily series as free/busy answers it: instances sharing uid and original_time 0.
        instances = [Booking(event_id="bk-weekly_0", uid="bk-weekly", original_time=0,
                             start=T0 + timedelta(days=d), end=END + timedelta(days=d),
                             organizer_open_id="ou_alice") for d in (0, 1)]
        box.store.resync_room("omm_a", (T0 - timedelta(hours=1), T0 + timedelta(days=2)),
                              instances, T0, T0)
        box.node.notify(["omm_a"])
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        assert step(box, "bk-weekly") is Step.SERIES
        result = box.service.press("omm_a", Action.END, "cli").result(5)
        assert not result.ok and "recurring series" in result.message
    assert site.reply.calls == []


def test_the_helper_refuses_a_series_the_store_does_not_know_is_one(site: Site) -> None:
    """Only free/busy (eight days around) shows next week's occurrence: nothing is sent."""
    site.freebusy.slots["omm_a"] = [slot("bk-weekly2", T0 + timedelta(days=7),
                                         END + timedelta(days=7))]
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-weekly2")
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-weekly2") is Step.SERIES, what="helper's refusal")
    assert site.reply.calls == []


def test_a_booking_gone_from_feishu_is_not_released(site: Site) -> None:
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        box.book("bk-gone", T0, END)  # in the store, no longer in Feishu
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-gone") is Step.GONE, what="gone recorded")
    assert site.reply.calls == []


def _run_box(config: Path, *times: datetime) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "display.testing.checkin_box", str(config),
                             *(t.isoformat() for t in times)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ticked"
    return proc


def test_kill_9_during_the_window_forgets_nothing(site: Site) -> None:
    config = site.config(window=10)
    with CheckinBox(config, FakeClock(T0)) as box:
        site.book(box, "bk-killed")
    # Running before the meeting, killed four minutes into its window.
    node = _run_box(config, T0 - timedelta(minutes=1), T0 + timedelta(minutes=4))
    node.kill()
    node.wait()
    with CheckinBox(config, FakeClock(T0 + timedelta(minutes=6))) as box:
        box.node.tick()
        # The window still runs from the meeting's start, not from the restart.
        assert box.view().checkin.release_at == T0 + timedelta(minutes=10)
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-killed") is Step.RELEASED, what="released after restart")
    assert len(site.reply.calls) == 1


def test_kill_9_while_asking_feishu_never_sends_twice(site: Site) -> None:
    config = site.config(window=10)
    site.reply.delay = 20.0
    with CheckinBox(config, FakeClock(T0)) as box:
        site.book(box, "bk-inflight")
        box.tick_at(T0)
    node = _run_box(config, T0 + timedelta(minutes=10))  # due: it starts asking Feishu
    wait_for(lambda: len(site.reply.calls) == 1, what="the reply request")
    os.kill(node.pid, signal.SIGKILL)
    node.wait()
    site.reply.release_held()
    with CheckinBox(config, FakeClock(T0 + timedelta(minutes=11))) as box:
        box.node.tick()
        box.tick_at(T0 + timedelta(minutes=20))
        assert step(box, "bk-inflight") is Step.UNKNOWN
        assert box.view().occupancy.state is State.BUSY
        (booking,) = box.node.status()["node"]["checkin"]["bookings"]
        assert "not sent again" in booking["detail"]
    assert len(site.reply.calls) == 1


def test_panels_show_the_window_and_the_release(site: Site) -> None:
    """The LED breathes in the soon colour during the window; the sign says when the room is
    released, and after the release that it was, and until when it is free."""
    sign = DeviceConfig(id="sign", kind=DeviceKind.EINK, url="virtual:x", size=(800, 480))
    led = DeviceConfig(id="led", kind=DeviceKind.LED, url="virtual:y")
    with CheckinBox(site.config(window=10), FakeClock(T0)) as box:
        site.book(box, "bk-panel")
        site.freebusy.slots["omm_a"].append(slot("bk-after", T0 + timedelta(hours=3),
                                                 T0 + timedelta(hours=4)))
        box.book("bk-after", T0 + timedelta(hours=3), T0 + timedelta(hours=4))
        box.tick_at(T0)
        box.tick_at(T0 + timedelta(minutes=1))
        waiting = box.view()
        assert led_output(waiting, led) == LedOutput((255, 160, 0), Effect.PULSE, 128)
        detail = [t.text for t in compose(waiting, sign).texts if t.role == "detail"]
        assert detail == ["Press to check in · released at 09:10"]
        box.tick_at(T0 + timedelta(minutes=10))
        wait_for(lambda: step(box, "bk-panel") is Step.RELEASED, what="released")
        box.node.tick()
        released = box.view()
        assert led_output(released, led).colour == (0, 192, 0)  # free: green, steady
        detail = [t.text for t in compose(released, sign).texts if t.role == "detail"]
        assert detail == ["Released · free until 12:00"]
