"""One line per cause: the first at once, then at most one per interval, saying what it held."""

from __future__ import annotations

import logging

import pytest

from display.ratelimit import MAX_CAUSES, RateLimitedLog


def test_one_line_per_cause_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), 60.0, lambda: now[0])
    caplog.set_level(logging.WARNING)
    for _ in range(1000):
        limited.warning("slow", "slow client from %s", "a")
        limited.warning("big", "header too big")
    assert [r.getMessage() for r in caplog.records] == ["slow client from a", "header too big"]
    now[0] = 61.0
    assert limited.warning("slow", "slow client from %s", "b")
    assert caplog.records[-1].getMessage() == ("slow client from b (999 more like it since the "
                                               "last line)")
    assert limited.suppressed == 1998


def test_memory_is_bounded_whatever_the_causes() -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), 60.0, lambda: now[0])
    for i in range(3 * MAX_CAUSES):
        now[0] += 0.001
        limited.warning(("node", i), "x")
    assert len(limited._last) <= MAX_CAUSES
