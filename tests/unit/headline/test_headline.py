"""One "until" on every surface: the sign's words, the status JSON (what the web page and board
are sent), ``status`` text, the MQTT state JSON and Home Assistant's attributes.

Each case is a room in one state at one instant, in Europe/London, including a block across
midnight and both DST changes of 2026 (29 March, 25 October). The browser's share of the rule
(the page shows what the status JSON says) is in tests/e2e/test_web_browser.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pytest

from display.config import DeviceConfig, RoomConfig
from display.encode.view_json import view_json
from display.headline import block_end, headline, headline_words, until_words
from display.model import Booking, RoomView, State
from display.node import room_status
from display.occupancy import Thresholds, occupancy
from display.publish.homeassistant import discovery_payloads
from display.render.facts import sign_facts
from display.status import render_text

LONDON = ZoneInfo("Europe/London")


def at(y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0) -> datetime:
    """A London wall-clock time as UTC (``fold=1``: the second 01:30 of October's change)."""
    return datetime(y, mo, d, h, mi, tzinfo=LONDON, fold=fold).astimezone(UTC)


def bk(n: int, start: datetime, end: datetime) -> Booking:
    return Booking(f"evt-{n}", f"uid-{n}", 0, start, end)


@dataclass(frozen=True)
class Case:
    name: str
    bookings: tuple[Booking, ...]
    now: datetime
    state: State
    words: str  # what every surface must say, in English
    until: datetime | None  # the person's "until"


D = (2026, 11, 24)
CASES = (
    Case("free until the meeting", (bk(1, at(*D, 16, 35), at(*D, 17, 0)),), at(*D, 14, 0),
         State.FREE, "until 16:35", at(*D, 16, 35)),
    Case("soon: free until it starts", (bk(1, at(*D, 16, 35), at(*D, 17, 0)),),
         at(*D, 16, 28), State.SOON, "until 16:35", at(*D, 16, 35)),
    Case("busy until the merged block ends",
         (bk(1, at(*D, 14, 45), at(*D, 15, 15)), bk(2, at(*D, 15, 15), at(*D, 15, 45)),
          bk(3, at(*D, 15, 0), at(*D, 15, 30))),
         at(*D, 14, 50), State.BUSY, "until 15:45", at(*D, 15, 45)),
    Case("ending until the block ends", (bk(1, at(*D, 14, 45), at(*D, 15, 45)),),
         at(*D, 15, 40), State.ENDING, "until 15:45", at(*D, 15, 45)),
    Case("a long meeting holds the block past a shorter later one",
         (bk(1, at(*D, 9, 0), at(*D, 17, 0)), bk(2, at(*D, 10, 0), at(*D, 10, 30))),
         at(*D, 10, 5), State.BUSY, "until 17:00", at(*D, 17, 0)),
    Case("free all day", (), at(*D, 9, 0), State.FREE, "all day", None),
    Case("free until tomorrow's meeting", (bk(1, at(2026, 11, 25, 9, 0), at(2026, 11, 25, 10)),),
         at(*D, 22, 0), State.FREE, "until tomorrow 09:00", at(2026, 11, 25, 9, 0)),
    Case("free all day when the next meeting is later in the week",
         (bk(1, at(2026, 11, 27, 9, 0), at(2026, 11, 27, 10)),), at(*D, 9, 0), State.FREE,
         "all day", at(2026, 11, 27, 9, 0)),
    Case("busy across midnight",
         (bk(1, at(*D, 23, 0), at(2026, 11, 25, 0, 0)),
          bk(2, at(2026, 11, 25, 0, 0), at(2026, 11, 25, 1, 0))),
         at(*D, 23, 30), State.BUSY, "until tomorrow 01:00", at(2026, 11, 25, 1, 0)),
    Case("free before spring forward: the meeting's wall-clock time, not UTC's",
         (bk(1, at(2026, 3, 29, 9, 0), at(2026, 3, 29, 10, 0)),), at(2026, 3, 28, 23, 30),
         State.FREE, "until tomorrow 09:00", at(2026, 3, 29, 9, 0)),
    Case("busy over spring forward (01:00 GMT becomes 02:00 BST)",
         (bk(1, at(2026, 3, 29, 0, 30), at(2026, 3, 29, 3, 30)),), at(2026, 3, 29, 0, 45),
         State.BUSY, "until 03:30", at(2026, 3, 29, 3, 30)),
    Case("busy over fall back: ends at the second 01:30",
         (bk(1, at(2026, 10, 25, 0, 30), at(2026, 10, 25, 1, 30, fold=1)),),
         at(2026, 10, 25, 1, 0), State.BUSY, "until 01:30", at(2026, 10, 25, 1, 30, fold=1)),
    Case("soon after fall back", (bk(1, at(2026, 10, 25, 9, 0), at(2026, 10, 25, 10, 0)),),
         at(2026, 10, 25, 8, 55), State.SOON, "until 09:00", at(2026, 10, 25, 9, 0)),
)


def view_of(case: Case, language: str = "en") -> RoomView:
    occ = occupancy(case.bookings, case.now, Thresholds(), LONDON)
    return RoomView("omm_a", "3F 大会议室", occ, False, case.now, "Europe/London", language)


def ha_attributes(state_json: dict[str, Any]) -> dict[str, Any]:
    """Home Assistant's sensor attributes: its template rendered as it renders it (Jinja)."""
    config = discovery_payloads(RoomConfig("omm_a", "3F 大会议室"), "p/state", "p/availability")
    template = config["sensor"]["json_attributes_template"]
    env = jinja2.Environment(autoescape=False)
    out: dict[str, Any] = json.loads(env.from_string(template).render(value_json=state_json))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_surface_says_the_same_until(case: Case) -> None:
    view = view_of(case)
    occ = view.occupancy
    assert occ.state is case.state
    head = headline(occ)
    assert head.until == case.until and head.changes_at == occ.until
    # The door sign (its wording, as the renderer draws it under the state word).
    device = DeviceConfig(id="s", url="virtual:x")
    assert sign_facts(view, device).until == case.words
    # The status JSON: the web page, the room page and the board show its until_text.
    room = room_status(RoomConfig("omm_a", "3F 大会议室"), view, [], LONDON)
    assert room["until_text"] == case.words
    assert room["until"] == (case.until.astimezone(LONDON).isoformat() if case.until else None)
    assert room["changes_at"] == (occ.until.astimezone(LONDON).isoformat()
                                  if occ.until else None)
    # `status` text.
    doc = {"generated_at": case.now.astimezone(LONDON).isoformat(), "node": {"name": "n"},
           "rooms": [room]}
    lines = render_text(doc).splitlines()
    state_line = lines[lines.index("3F 大会议室  (omm_a)") + 1]
    assert state_line.startswith(f"  {case.state.value.upper()} {case.words}")
    # The MQTT state JSON and what Home Assistant makes of it.
    state_json = view_json(view)
    assert state_json["until_text"] == case.words
    assert state_json["until"] == (case.until.isoformat() if case.until else None)
    assert state_json["changes_at"] == (occ.until.isoformat() if occ.until else None)
    attributes = ha_attributes(state_json)
    assert attributes["until"] == state_json["until"]
    assert attributes["until_text"] == case.words
    assert attributes["changes_at"] == state_json["changes_at"]


def test_until_and_changes_at_differ_where_they_should() -> None:
    """The contract the issue was about: busy "until" is the end, not when "ending" begins."""
    busy = view_of(CASES[2]).occupancy
    assert headline(busy).until == at(*D, 15, 45)
    assert headline(busy).changes_at == at(*D, 15, 35)  # busy turns "ending" then
    free = view_of(CASES[0]).occupancy
    assert headline(free).until == at(*D, 16, 35)
    assert headline(free).changes_at == at(*D, 16, 25)  # free turns "soon" then


@pytest.mark.parametrize(("language", "expected"), [
    ("zh", "至 15:45"), ("en", "until 15:45"), ("zh+en", "至 / until 15:45"),
    ("xx", "until 15:45")])
def test_words_in_every_language(language: str, expected: str) -> None:
    occ = view_of(CASES[2]).occupancy
    assert headline_words(occ, LONDON, language) == expected


def test_words_for_a_long_block_and_an_unknown_end() -> None:
    now = at(*D, 10, 0)
    later = now + timedelta(days=3)
    assert until_words(State.BUSY, later, now, LONDON) == "until 11-27 10:00"
    assert until_words("busy", None, now, LONDON) is None
    assert until_words(State.FREE, None, now, LONDON, "zh") == "全天"
    free = view_of(CASES[5]).occupancy
    assert block_end(free) is None
