"""The live page's hub: each open page is sent every change, whoever opens a page meanwhile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.config import parse_config
from display.devices.factory import make_device
from display.intake.sink import EventSink
from display.node import Node
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.web.hub import Client, Hub

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
CONFIG = """
[node]
name = "hub-node"
timezone = "Asia/Shanghai"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "3F East"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
"""


class Link:
    """A status source the test flips, as a link going down would."""

    def __init__(self) -> None:
        self.up = True

    def __call__(self) -> dict[str, Any]:
        return {"up": self.up}


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Node, EventSink, FakeClock, Hub, Link]]:
    config = parse_config(CONFIG, tmp_path / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, make_device)
    link = Link()
    node.add_status_source("test_link", link)
    node.tick()
    hub = Hub(node, lambda: {})  # not attached: the test runs the poller's rounds itself
    yield node, EventSink(store, clock, node.notify), clock, hub, link
    hub.close()
    node.close()
    store.close()


def events(client: Client) -> list[tuple[str, Any]]:
    out = []
    for raw in client.take(0):
        head, data = raw.decode().strip().split("\n", 1)
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_page_opening_does_not_hide_a_change_from_an_open_one(parts: Any) -> None:
    _node, _sink, _clock, hub, link = parts
    first, _ = hub.subscribe()
    link.up = False  # the link goes down ...
    second, snapshot = hub.subscribe()  # ... in the same second as another page opens
    assert b'"test_link":{"up":false}' in snapshot  # the new page has it in its snapshot
    hub.poll_once()
    got = events(first)
    assert [name for name, _ in got] == ["node"]  # the open page is told
    assert got[0][1]["test_link"] == {"up": False}
    assert events(second) == []  # and the new one is not told twice
    hub.poll_once()
    assert events(first) == [] and events(second) == []


def test_a_new_view_reaches_each_page_once(parts: Any) -> None:
    node, sink, _clock, hub, _link = parts
    first, _ = hub.subscribe()
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    node.tick()  # the node shows the new view (busy) to its listeners
    hub.on_view(node.views()["omm_a"])
    second, snapshot = hub.subscribe()
    assert b'"state":"busy"' in snapshot
    hub.on_view(node.views()["omm_a"])  # the same view again: nobody is sent it twice
    got = events(first)
    assert [(name, data["state"]) for name, data in got] == [("room", "busy")]
    assert events(second) == []
    hub.poll_once()
    assert events(first) == [] and events(second) == []


def test_a_round_with_nothing_changed_reads_no_room_without_a_device(
        parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-a-second round looks at what can change without a view (the node member, rooms
    with devices, rooms the node recomputed), never every room: it costs what changed."""
    node, sink, _clock, hub, link = parts
    page, _ = hub.subscribe()
    read: list[str] = []
    real = node.room_entry
    monkeypatch.setattr(node, "room_entry", lambda open_id: read.append(open_id) or real(open_id))
    hub.poll_once()
    assert set(read) <= {"omm_a"}  # omm_a has a device: its health may change
    assert events(page) == []
    link.up = False
    sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    node.tick()  # not attached: the view reaches the page through the round, not on_view
    hub.poll_once()
    got = events(page)
    assert sorted(name for name, _ in got) == ["node", "room"]
    assert next(data for name, data in got if name == "room")["state"] == "busy"
