"""The page's document joined from the rooms' JSON: the same as the parsed and redacted one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from display.config import parse_config
from display.devices.factory import make_device
from display.intake.sink import EventSink
from display.node import Node
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.web.document import (
    compact,
    join_status,
    redact,
    redact_entry,
    status_document,
    status_parts,
)

START = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
CONFIG = """
[node]
name = "doc-node"
timezone = "Asia/Shanghai"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "3F 大会议室"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
[[rooms]]
open_id = "omm_b"
name = "4F \\"Quiet\\" room"
[[rooms]]
open_id = "omm_c"
name = "5F"
"""


@pytest.fixture
def node(tmp_path: Path) -> Any:
    config = parse_config(CONFIG, tmp_path / "room-display.toml")
    clock = FakeClock(START)
    store = ScheduleStore(config.node.state_dir / "schedule.db")
    node = Node(config, store, clock, make_device)
    sink = EventSink(store, clock, node.notify)
    for room, organizer in (("omm_a", "ou_alice"), ("omm_b", 'ou_"x\\"')):
        sink.accept(envelope(uid=f"bk-{room}", start=START, end=START + timedelta(hours=1),
                             rooms=(room,), organizer=organizer, event_time=1))
    node.tick()
    yield node
    node.close()
    store.close()


def test_the_joined_document_is_the_redacted_one(node: Node) -> None:
    whole = status_document(node)
    assert json.loads(join_status(*status_parts(node))) == whole
    assert [r["current"]["organizer_open_id"] if r["current"] else "-"
            for r in whole["rooms"]] == [None, None, "-"]  # ids gone, the rest kept
    assert node.status()["rooms"][1]["current"]["organizer_open_id"] == 'ou_"x\\"'
    picked = status_parts(node, floors={"5F", "3F"})[1]
    assert [open_id for open_id, _ in picked] == ["omm_a", "omm_c"]
    assert json.loads(join_status(*status_parts(node, rooms={"omm_b"}))) == status_document(
        node, rooms={"omm_b"})


def test_a_room_without_an_organizer_id_is_passed_as_is(node: Node) -> None:
    (_, text), = node.room_entries_json(lambda room: room.open_id == "omm_c")
    assert redact_entry(text) is text


text_value = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@given(title=text_value, organizer=st.one_of(st.none(), text_value))
def test_redacting_the_json_is_redacting_the_objects(title: str, organizer: str | None) -> None:
    """Whatever a title holds (quotes, the key's own name), only the organizer id goes."""
    room = {"open_id": "omm_x", "name": title,
            "current": {"title": f'"organizer_open_id":"{title}', "organizer_open_id": organizer},
            "next": [{"title": title, "organizer_open_id": organizer}], "devices": []}
    text = compact(room)
    assert redact_entry(text) == compact(redact({"rooms": [json.loads(text)]})["rooms"][0])
