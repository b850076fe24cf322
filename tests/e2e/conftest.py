"""Fixtures the end-to-end tests share: a real Mosquitto, a fake clock, in-process MQTT nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from display.testing.broker import Broker, running_broker
from display.testing.clock import FakeClock
from display.testing.mqtt_nodes import RunningNode, fake_clock


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, without authentication."""
    yield from running_broker(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return fake_clock()


@pytest.fixture
def nodes() -> Iterator[list[RunningNode]]:
    """In-process nodes a test started; each is closed at the end unless the test killed it."""
    started: list[RunningNode] = []
    yield started
    for n in reversed(started):
        if not getattr(n, "killed", False):
            n.close()
