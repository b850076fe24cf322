"""Feishu's published sample of the third-party room event, verbatim apart from its times.

From the event's documentation page ("第三方会议室日程变动"). Its ``event_id`` is not
``{uid}_{original_time}`` as the page's own field table says: the sample must be accepted anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from display.clock import to_epoch_ms

ROOMS = ("omm_c4e2da9493fbd2ceea4f37aae6b3ee78", "omm_a5ab469c8e012e2a0b48fe4a8e344f94")
UID = "bff6b51f-b7c1-40c6-b8ef-aef966c9ffc7"
EVENT_ID = "d123a331-e2g2-v4n2-h7g7-xxxx"


def published_sample(start: datetime, end: datetime, event_time: datetime) -> dict[str, Any]:
    """The sample with ``start``, ``end`` and ``event_time`` replaced (strings of ms, as in it)."""
    return {
        "ts": "1502199207.7171419",
        "uuid": "bc447199585340d1f3728d26b1c0297a",
        "token": "41a9425ea7df4536a7623e38fa321bae",
        "type": "event_callback",
        "event": {
            "app_id": "cli_xxxxxxxx",
            "tenant_key": "xxxxxxx",
            "type": "third_party_meeting_room_event_created",
            "event_id": EVENT_ID,
            "event_time": str(to_epoch_ms(event_time)),
            "uid": UID,
            "original_time": 0,
            "start": {"time_stamp": str(to_epoch_ms(start))},
            "end": {"time_stamp": str(to_epoch_ms(end))},
            "meeting_rooms": [{"open_id": ROOMS[0]}, {"open_id": ROOMS[1]}],
            "organizer": {"open_id": "ou_xxxxxxxxxxxxxxxxxxxx", "user_id": "xxxxxxxx",
                          "union_id": "on_xxxxxxxxxxxxx"},
        },
    }
