"""Check-ins over MQTT: ``{prefix}/v1/rooms/{open_id}/checkin`` with payload ``in`` or ``end``.

The node that talks to Feishu (the bridge) subscribes to every room's topic and hands each
message to its :class:`~.service.CheckinService`; anything may publish there (a Zigbee button
through Home Assistant, an automation, a panel agent's board button), as far as the broker's ACL
allows. A panel agent publishes its own rooms' presses there (:class:`CheckinForwarder`): it never
talks to Feishu itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta

from display.checkin.service import Action, CheckinService, Result
from display.clock import Clock
from display.config import Config
from display.transport.mqtt_client import MqttLink, MqttMessage

log = logging.getLogger(__name__)

#: A press kept while the broker is away is sent on reconnect if it is not older than this.
KEEP_PRESS = timedelta(minutes=10)


def parse_action(payload: bytes) -> Action | None:
    """``in`` or ``end`` (surrounding blanks and case ignored); ``None`` for anything else."""
    try:
        return Action(payload.decode("utf-8").strip().lower())
    except (UnicodeDecodeError, ValueError):
        return None


class CheckinSubscriber:
    """The bridge's side: every room's check-in topic into ``service``."""

    def __init__(self, link: MqttLink, service: CheckinService,
                 config: Callable[[], Config]) -> None:
        self.link = link
        self.service = service
        self._config = config
        self.rejected = 0

    def attach(self) -> None:
        self.link.subscribe(self.link.topics.all_checkins, self._on_message)

    def _on_message(self, message: MqttMessage) -> None:
        room = self.link.topics.room_of(message.topic)
        action = parse_action(message.payload)
        if message.retain:  # an old retained press must not check in a later meeting
            log.warning("check-in on %s ignored: retained (publish it without retain)",
                        message.topic)
            self.rejected += 1
            return
        if room is None or action is None or self._config().room(room) is None:
            log.warning("check-in on %s ignored: %s", message.topic,
                        "unknown room" if action is not None else
                        f"payload {message.payload[:40]!r} is not 'in' or 'end'")
            self.rejected += 1
            return
        future = self.service.press(room, action, "mqtt")
        future.add_done_callback(lambda f: _log_result(message.topic, f))


def _log_result(topic: str, future: Future[Result]) -> None:
    result = future.result()
    log.log(logging.INFO if result.ok else logging.WARNING, "check-in on %s: %s", topic,
            result.message)


class CheckinForwarder:
    """A panel agent's side: a press in one of its rooms goes to the bridge over MQTT.

    A press made while the broker is away is kept (the newest per room) and sent on reconnect
    if it is not older than :data:`KEEP_PRESS`.
    """

    def __init__(self, link: MqttLink, clock: Clock) -> None:
        self.link = link
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Action, datetime]] = {}
        self.sent = 0

    def attach(self) -> None:
        self.link.add_connect_hook(self._flush)

    def press(self, room: str, action: Action) -> Future[Result]:
        future: Future[Result] = Future()
        if self.link.publish(self.link.topics.checkin(room), action.value, qos=1) is not None:
            self.sent += 1
            future.set_result(Result(True, "sent to the bridge"))
        else:
            with self._lock:
                self._pending[room] = (action, self.clock.now())
            future.set_result(Result(True, "the broker is away: sent when it is back"))
        return future

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        now = self.clock.now()
        for room, (action, at) in pending.items():
            if now - at <= KEEP_PRESS and self.link.publish(
                    self.link.topics.checkin(room), action.value, qos=1) is not None:
                self.sent += 1
