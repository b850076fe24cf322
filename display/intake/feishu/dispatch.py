"""Events through lark-oapi's dispatcher into :class:`~display.intake.sink.EventSink`.

Both modes hand every event to the SDK's ``EventDispatcherHandler`` built here; :class:`Intake`
commits it before the SDK acknowledges it, and records per request (per thread) what happened so
the webhook can answer with a precise status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import lark_oapi as lark
from lark_oapi.event.custom import CustomizedEventProcessor

from display.config import FeishuConfig
from display.errors import EventError, StoreError
from display.intake.sink import Accepted, EventSink, Verdict
from display.model import EventKind

log = logging.getLogger(__name__)


class _RequestState(threading.local):
    """What happened while the SDK handled one request on this thread."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.capturing = False
        self.accepted: Accepted | None = None
        self.error: EventError | StoreError | None = None
        self.sdk_error: BaseException | None = None


class SdkLogCapture(logging.Filter):
    """Silences the SDK's own records while we handle a webhook request and keeps the exception.

    ``EventDispatcherHandler.do`` answers 500 for every failure and logs it with a traceback; the
    exception's class is the only thing that tells a bad token apart from a broken body, and our
    single log line per rejection replaces its traceback.
    """

    def __init__(self, state: _RequestState) -> None:
        super().__init__("Lark")
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._state.capturing:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            self._state.sdk_error = record.exc_info[1]
        return False


class Intake:
    """Glue between lark-oapi's dispatcher and :class:`EventSink`, for both modes."""

    def __init__(self, sink: EventSink, *, long_connection: bool) -> None:
        self.sink = sink
        self.long_connection = long_connection
        self.state = _RequestState()
        self._ignored_logged: set[str] = set()

    def on_event(self, event: Any) -> None:
        """The SDK's p1 handler: commit the event, then return so the SDK acknowledges it."""
        if getattr(event, "schema", None):  # a v2 event: nothing we subscribe to
            kind = str(getattr(getattr(event, "header", None), "event_type", "?"))
            if kind not in self._ignored_logged:
                self._ignored_logged.add(kind)
                log.info("ignoring v2 event type %r (acknowledged; logged once)", kind)
            self.state.accepted = Accepted(Verdict.IGNORED)
            return
        raw = {"uuid": event.uuid, "token": event.token, "ts": event.ts, "type": event.type,
               "event": event.event}
        try:
            self.state.accepted = self.sink.accept(raw)
        except EventError as exc:
            self.state.error = exc
            log.warning("rejected event uuid=%.64r: %s", raw["uuid"], exc)
            if self.long_connection:
                return  # acknowledged: a retry of the same bytes cannot fix it
            raise
        except StoreError as exc:
            self.state.error = exc
            log.error("cannot commit event uuid=%.64r: %s (not acknowledged; Feishu retries)",
                      raw["uuid"], exc)
            raise


class _FallbackProcessors(dict[str, Any]):
    """The SDK's processor map, answering every unregistered type with one processor."""

    def __init__(self, registered: dict[str, Any], fallback: Any) -> None:
        super().__init__(registered)
        self._fallback = fallback

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or self._fallback

    def __missing__(self, key: str) -> Any:
        return self._fallback


def route_unregistered_types(handler: Any, on_event: Callable[[Any], None]) -> None:
    """Send every event type we did not register to ``on_event`` (which ignores unknown ones).

    The SDK answers "processor not found" (500 / a failed ack) for unregistered types and Feishu
    would retry them for hours; its only seam is the private ``_processorMap``, so a test
    (``test_unknown_type_is_acknowledged``) fails if an upgrade renames it.
    """
    processors = getattr(handler, "_processorMap", None)
    if not isinstance(processors, dict):
        raise RuntimeError("lark-oapi changed: EventDispatcherHandler._processorMap is gone")
    handler._processorMap = _FallbackProcessors(processors, CustomizedEventProcessor(on_event))


def build_handler(intake: Intake, feishu: FeishuConfig) -> Any:
    """The SDK's dispatcher with our handler for the three event kinds and everything else."""
    builder = lark.EventDispatcherHandler.builder(feishu.encrypt_key.reveal(),
                                                  feishu.verification_token.reveal())
    for kind in EventKind:
        builder = builder.register_p1_customized_event(kind.value, intake.on_event)
    handler = builder.build()
    route_unregistered_types(handler, intake.on_event)
    return handler


def quiet_sdk_logger(capture: logging.Filter) -> None:
    """Route the SDK's logger to our stderr handler, warnings and up, through ``capture``."""
    sdk_log = logging.getLogger("Lark")
    for h in list(sdk_log.handlers):  # its own handler writes to stdout
        sdk_log.removeHandler(h)
    sdk_log.setLevel(logging.WARNING)
    sdk_log.propagate = True
    sdk_log.addFilter(capture)
