"""What an intake may tell the node: the one narrow interface both intakes talk to.

The Feishu supervisor (:mod:`.supervisor`) and the MQTT agent intake (:mod:`.mqtt_agent`) feed
a :class:`NodeInput`; :class:`display.node.Node` is one, structurally, so intake never imports
the node (it sits below it in the layers) and tests hand in a recorder.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class NodeInput(Protocol):
    """Where intake reports committed changes and the state of the links it depends on."""

    def notify(self, rooms: Iterable[str]) -> None:
        """Changes for ``rooms`` are committed to the store: re-read them and redraw."""
        ...

    def set_link(self, name: str, up: bool, error: str | None = None) -> None:
        """Link ``name`` (``feishu``, ``bridge``) went up or down; ``error`` says why it is down."""
        ...
