"""Waiting on a condition with a deadline: the one way tests and benchmarks wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition",
             *, interval: float = 0.005) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    The one way tests wait for something to happen (never a bare ``time.sleep``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # polling interval, not a wait for something to happen
