"""Skip what is unchanged: one strategy for the node and every device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from display.unchanged import Unchanged

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_the_same_key_is_skipped_until_forgotten() -> None:
    sent: Unchanged[tuple[int, str]] = Unchanged()
    assert not sent.same((1, "a"))
    sent.record((1, "a"))
    assert sent.same((1, "a"))
    assert not sent.same((2, "a"))  # a new board session: send again
    sent.forget()  # the broker may have lost its retained copy
    assert not sent.same((1, "a")) and sent.last is None


def test_max_age_forces_a_redelivery() -> None:
    shown: Unchanged[str] = Unchanged(timedelta(minutes=5))
    shown.record("busy", T0)
    assert shown.same("busy", T0 + timedelta(minutes=4))
    assert not shown.same("busy", T0 + timedelta(minutes=5))
    assert not shown.same("free", T0)
    assert shown.last == "busy"
