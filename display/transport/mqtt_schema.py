"""The MQTT topics of a site: where the bridge publishes and panel agents listen.

Topic layout: ``{p}/v1/rooms/{open_id}/schedule`` and ``{p}/v1/rooms/{open_id}/state``
(retained JSON), ``{p}/v1/nodes/{name}/availability`` (retained ``online``/``offline``, the LWT).
The payloads are documented in ``docs/MQTT.md``; the schedule payload's codec is
:mod:`display.encode.mqtt_schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

# The schedule payload checks the bridge name it carries with the same rule; one definition.
from display.encode.mqtt_schedule import valid_topic_level

__all__ = ["OFFLINE", "ONLINE", "Topics", "valid_topic_level"]

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class Topics:
    """Every topic of one site, under ``prefix``."""

    prefix: str = "room-display"

    def schedule(self, open_id: str) -> str:
        return f"{self.prefix}/v1/rooms/{open_id}/schedule"

    def state(self, open_id: str) -> str:
        return f"{self.prefix}/v1/rooms/{open_id}/state"

    def checkin(self, open_id: str) -> str:
        """Where a check-in (``in``) or an early end (``end``) of a room is published."""
        return f"{self.prefix}/v1/rooms/{open_id}/checkin"

    @property
    def all_checkins(self) -> str:
        """Filter matching every room's check-in topic."""
        return f"{self.prefix}/v1/rooms/+/checkin"

    def availability(self, node: str) -> str:
        return f"{self.prefix}/v1/nodes/{node}/availability"

    @property
    def all_availability(self) -> str:
        """Filter matching every node's availability topic."""
        return f"{self.prefix}/v1/nodes/+/availability"

    def room_of(self, topic: str) -> str | None:
        """The ``open_id`` in a room topic, or None for any other topic."""
        head = f"{self.prefix}/v1/rooms/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        return parts[0] if len(parts) == 2 and parts[0] else None

    def node_of(self, topic: str) -> str | None:
        """The node name in an availability topic, or None."""
        head, tail = f"{self.prefix}/v1/nodes/", "/availability"
        if topic.startswith(head) and topic.endswith(tail):
            name = topic[len(head):-len(tail)]
            return name if name and "/" not in name else None
        return None
