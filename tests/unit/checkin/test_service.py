"""What a press gets when it cannot do what was asked: a clear line, nothing recorded, nothing
sent (these never reach Feishu: the box's domain is a closed port)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from display.checkin.ledger import Step
from display.checkin.service import Action
from display.model import Booking
from display.testing.checkin_box import T0, CheckinBox, write_box_config
from display.testing.clock import FakeClock

END = T0 + timedelta(hours=1)


def box(tmp_path: Path, **kw: object) -> CheckinBox:
    config = write_box_config(tmp_path / "c.toml", domain="http://127.0.0.1:9", app_id="a",
                              app_secret="b", rooms=("omm_a", "omm_b"),
                              **kw)  # type: ignore[arg-type]
    return CheckinBox(config, FakeClock(T0 + timedelta(minutes=1)))


def answer(b: CheckinBox, room: str, action: Action) -> tuple[bool, str]:
    result = b.service.press(room, action, "cli").result(5)
    return result.ok, result.message


def test_presses_that_cannot_work_say_why(tmp_path: Path) -> None:
    with box(tmp_path, extra='rooms = ["omm_a"]') as b:
        assert answer(b, "omm_x", Action.IN) == (False, "no room 'omm_x' on this node")
        assert answer(b, "omm_b", Action.IN) == (False, "check-in is off for omm_b "
                                                 "([checkin] mode)")
        assert answer(b, "omm_a", Action.IN) == (False, "no meeting in omm_a to check in to")
        assert answer(b, "omm_a", Action.END) == (False, "no meeting in omm_a to end")
        b.book("one", T0, END)
        b.book("two", T0, END)
        assert answer(b, "omm_a", Action.END) == (False, "2 meetings in omm_a at once: end the "
                                                  "right one in Feishu")
        assert b.service.ledger.records() == []


def test_check_in_ahead_of_the_start_and_too_late(tmp_path: Path) -> None:
    with box(tmp_path) as b:
        b.book("soon", T0 + timedelta(minutes=8), END)  # starts within the window
        ok, message = answer(b, "omm_a", Action.IN)
        assert ok and message == "checked in to omm_a until 10:00"
        b.tick_at(T0 + timedelta(minutes=30))
        assert [r.step for r in b.service.ledger.records()] == [Step.CHECKED_IN]
        b.book("late", T0 + timedelta(hours=2), T0 + timedelta(hours=3), room="omm_b")
        b.tick_at(T0 + timedelta(hours=2))
        rec = next(r for r in b.service.ledger.records() if r.room_id == "omm_b")
        b.service.ledger.advance(rec, Step.REFUSED, b.clock.now(), detail="refused")
        assert answer(b, "omm_b", Action.IN) == (False, "too late to check in to omm_b's "
                                                 "meeting: refused")


def test_dry_run_end_calls_nothing(tmp_path: Path) -> None:
    with box(tmp_path, mode="dry-run") as b:
        b.book("one", T0, END)
        assert answer(b, "omm_a", Action.END) == (True, "dry-run: omm_a's meeting would end now")
        assert b.service.dry_run == 1
        assert b.store.bookings("omm_a") == [Booking(event_id="one_0", uid="one",
                                                     original_time=0, start=T0, end=END,
                                                     organizer_open_id="ou_alice")]
