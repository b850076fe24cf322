"""The node prunes its store by the monotonic clock, never while the wall clock is unsynced or
just stepped, and the store's own clock follows a step by seconds at most."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from display.clock import from_epoch_ms
from display.config import parse_config
from display.devices.factory import make_device
from display.freshness import Freshness
from display.intake.sink import EventSink
from display.node import Node
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from tests.unit.node.test_node import CONFIG, START


def _node(tmp_path: Path, synced: bool = True) -> tuple[FakeClock, ScheduleStore, Node]:
    config = parse_config(CONFIG, tmp_path / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, make_device,
                Freshness(timedelta(minutes=10), clock_synced=lambda: synced))
    return clock, store, node


@pytest.fixture
def stepped(tmp_path: Path) -> Any:
    clock, store, node = _node(tmp_path)
    yield clock, store, node
    node.close()
    store.close()


def _prune_clock(store: ScheduleStore) -> Any:
    value = store.meta("prune_clock_ms")
    return from_epoch_ms(int(value)) if value is not None else None


def test_a_year_step_holds_pruning_and_moves_the_store_clock_by_hours(stepped: Any) -> None:
    clock, store, node = stepped
    env = envelope(uid="now", start=START - timedelta(minutes=30), end=START + timedelta(hours=1))
    EventSink(store, clock).accept(env)
    node.tick()
    assert _prune_clock(store) == START
    clock.set(START + timedelta(days=366))
    clock.advance(timedelta(minutes=61))  # a prune is due: held, the clock just stepped
    node.tick()
    assert _prune_clock(store) == START
    step = node.status(clock.now())["node"]["clock_step"]
    assert step["seconds"] == pytest.approx(366 * 86400) and step["pruning_held"] is True
    clock.advance(timedelta(minutes=60))  # an hour after the step: pruning resumes...
    node.tick()
    assert not node.status(clock.now())["node"]["clock_step"]["pruning_held"]
    # ...with the store's clock moved by at most twice the elapsed time, not by a year.
    assert START < _prune_clock(store) <= START + timedelta(hours=2 * 2 + 1)
    assert store.seen(env["uuid"]) and [b.uid for b in store.bookings("omm_a")] == ["now"]


def test_an_unsynchronised_clock_is_never_pruned_by(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    clock, store, node = _node(tmp_path, synced=False)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                node.tick()
                clock.advance(timedelta(hours=2))
        assert _prune_clock(store) is None
        assert caplog.text.count("not pruning the schedule store: the wall clock is not "
                                 "synchronised") == 1
        assert node.status(clock.now())["node"]["clock_step"] is None
    finally:
        node.close()
        store.close()
