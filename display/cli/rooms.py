"""``room-display rooms [NAME]`` (placeholder until the directory client lands)."""

from __future__ import annotations

from display.config import Config


def list_rooms(config: Config, name: str, *, as_json: bool = False) -> str:
    """The tenant's rooms."""
    raise NotImplementedError
