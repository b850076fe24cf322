"""The one doubling retry delay every retry loop uses."""

from __future__ import annotations

import pytest

from display.backoff import Backoff


def test_delays_double_up_to_the_maximum_and_reset_after_a_success() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_maximum_below_the_first_delay_never_shortens_it() -> None:
    backoff = Backoff(5.0, 1.0)
    assert [backoff.next(), backoff.next()] == [5.0, 5.0]


def test_a_first_delay_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0, 10)
