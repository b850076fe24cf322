"""A room's state as JSON: what ``virtual:`` files, MQTT ``json`` devices and the bridge's
``…/state`` topic carry. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from display.headline import headline, headline_words
from display.model import RoomView
from display.outputs import LedOutput, hex_colour


def view_json(view: RoomView) -> dict[str, Any]:
    """The state of a room as panels and MQTT ``json`` devices receive it."""
    occ = view.occupancy
    head = headline(occ)  # "until": what a person reads; "changes_at": the next state change
    return {
        "open_id": view.open_id,
        "name": view.name,
        "state": occ.state.value,
        "stale": view.stale,
        "since": occ.since.isoformat() if occ.since else None,
        "until": head.until.isoformat() if head.until else None,
        "until_text": headline_words(occ, ZoneInfo(view.timezone), view.language),
        "changes_at": occ.until.isoformat() if occ.until else None,
        "as_of": view.as_of.isoformat(),
        "current": occ.current.to_json() if occ.current else None,
        "next": [b.to_json() for b in occ.next],
        "closed": view.closed,
        "opens_at": view.closed_until.isoformat() if view.closed_until else None,
    }


def led_json(output: LedOutput) -> dict[str, Any]:
    """The ``"led"`` member of a device's document: colour as ``#rrggbb``, effect, brightness."""
    return {"colour": hex_colour(output.colour), "effect": output.effect.value,
            "brightness": output.brightness}
