"""Long-connection mode: lark-oapi's websocket client, watched for silence.

The SDK's ``ws.Client`` can die silently; :func:`run_long_connection` exits the process
when no frame arrived for a few ping intervals, so the supervisor starts a fresh one. It is
imported without the rest of the SDK (:func:`~display.intake.feishu.sdk.load_ws`) and handed
:class:`PayloadHandler` instead of the SDK's event dispatcher and its table of every service.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from display.config import FeishuConfig
from display.errors import EventError, StoreError
from display.intake.feishu.channel import EXIT_CONFIG, EXIT_FAILURE, ParentChannel
from display.intake.feishu.checks import Rejected, loads_object
from display.intake.feishu.sdk import load_ws
from display.intake.sink import EventSink

if TYPE_CHECKING:
    from display.intake.feishu.resync import Resync

log = logging.getLogger(__name__)

_ws = load_ws()
ClientException: Any = _ws["lark_oapi.ws.exception"].ClientException
LogLevel: Any = _ws["lark_oapi.core.enum"].LogLevel
#: The SDK's module-global event loop, which ``Client.start()`` runs (FEISHU.md).
sdk_loop: Any = sys.modules["lark_oapi.ws.client"].loop

#: The watchdog never fires sooner than this, whatever ping interval the server asks for.
WATCHDOG_FLOOR = 3.0
#: Pings/pongs the watchdog waits for before declaring the link dead.
WATCHDOG_PINGS = 3


class PayloadHandler:
    """What the SDK's ws client calls for each event frame (``_do_without_validation``, the
    method of its ``EventDispatcherHandler`` it uses): decode, commit through the sink, return
    so the SDK acknowledges.

    An invalid event is logged and acknowledged (a retry of the same bytes cannot fix it); a
    store failure raises, so the SDK answers 500 and Feishu retries.
    """

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._ignored_v2: set[str] = set()

    def _do_without_validation(self, payload: bytes) -> None:
        try:
            data = loads_object(payload, "event")
        except Rejected as exc:
            log.warning("rejected event frame: %s (acknowledged)", exc.reason)
            return
        header = data.get("header")
        if data.get("schema") and isinstance(header, dict):  # a v2 event: none we subscribe to
            kind = str(header.get("event_type", "?"))[:80]
            if kind not in self._ignored_v2:
                self._ignored_v2.add(kind)
                log.info("ignoring v2 event type %r (acknowledged; logged once)", kind)
            return
        try:
            self.sink.accept(data)
        except EventError as exc:
            log.warning("rejected event uuid=%.64r: %s (acknowledged)", data.get("uuid"), exc)
        except StoreError as exc:
            log.error("cannot commit event uuid=%.64r: %s (not acknowledged; Feishu retries)",
                      data.get("uuid"), exc)
            raise


class WatchedClient(_ws["lark_oapi.ws"].Client):  # type: ignore[misc]  # lark_oapi is untyped
    """``lark.ws.Client`` that remembers when it last heard from the server.

    Every frame (ping, pong, data) counts; the watchdog in :func:`run_long_connection` compares
    the age with the client's ``_ping_interval``, which the endpoint's ClientConfig sets.
    """

    def __init__(self, *args: Any, on_connected: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_frame = time.monotonic()
        self._on_connected = on_connected

    async def _handle_message(self, msg: bytes) -> None:
        self.last_frame = time.monotonic()
        await super()._handle_message(msg)

    async def _connect(self) -> None:
        await super()._connect()
        if self._conn is not None:
            self.last_frame = time.monotonic()  # a fresh connection starts the clock anew
            self._on_connected()

    @property
    def ping_interval(self) -> float:
        return float(self._ping_interval or 0)


def run_long_connection(feishu: FeishuConfig, sink: EventSink,
                        channel: ParentChannel, alive_interval: float,
                        resync: Resync | None) -> int:
    """Hold the long connection until it dies, the watchdog fires or stdin closes."""
    ready = threading.Event()

    def connected() -> None:  # on the SDK's loop thread: only quick, non-blocking calls here
        if not ready.is_set():
            ready.set()
            log.info("long connection to %s established", feishu.domain)
            channel.send(ready=True, mode="long_connection", listen=None)
            channel.send(link="up")
            if resync is not None:
                resync.start()
        elif resync is not None:
            # Events sent while we were away may be lost for good (or come hours later).
            resync.link(True)
            resync.request("long connection re-established")

    def reconnecting() -> None:
        log.warning("long connection lost; the SDK is reconnecting")
        channel.send(link="down", error="connection lost; reconnecting")
        if resync is not None:
            resync.link(False)

    def reconnected() -> None:
        log.info("long connection re-established")
        channel.send(link="up")

    client = WatchedClient(feishu.app_id, feishu.app_secret.reveal(),
                           event_handler=PayloadHandler(sink), domain=feishu.domain,
                           log_level=LogLevel.WARNING, on_connected=connected)
    client.on_reconnecting = reconnecting
    client.on_reconnected = reconnected
    done: queue.Queue[int] = queue.Queue()

    def run() -> None:
        try:
            client.start()
        except ClientException as exc:
            log.error("Feishu refused the long connection: %s (check feishu.app_id and "
                      "feishu.app_secret, and that the app is self-built)", exc)
            channel.fatal(f"Feishu refused the long connection: {exc}")
            done.put(EXIT_CONFIG)
        except Exception as exc:  # the thread's boundary: anything else ends the process
            log.error("long connection failed: %s: %s", type(exc).__name__, exc)
            channel.fatal(f"long connection failed: {type(exc).__name__}: {exc}")
            done.put(EXIT_FAILURE)
        else:
            done.put(EXIT_FAILURE)

    def heartbeat() -> None:
        # On the SDK's loop: when it hangs (e.g. in its endpoint POST, which has no timeout)
        # the alive lines stop and the supervisor restarts the child.
        channel.send(alive=round(time.time(), 3),
                     last_frame_age=round(time.monotonic() - client.last_frame, 3))
        sink.log_summary()
        sdk_loop.call_later(alive_interval, heartbeat)

    sdk_loop.call_soon(heartbeat)  # runs once start() runs the loop
    threading.Thread(target=run, name="lark-ws", daemon=True).start()
    while True:
        now = time.monotonic()
        age = now - client.last_frame
        limit = max(WATCHDOG_PINGS * client.ping_interval, WATCHDOG_FLOOR)
        if age > limit:
            reason = f"no frame from Feishu for {age:.0f} s (limit {limit:.0f} s)"
            log.error("watchdog: %s; exiting so the supervisor restarts the intake", reason)
            channel.send(link="down", error=reason)
            return EXIT_FAILURE
        # Asleep until the watchdog's deadline, or the next alive interval: the ping interval
        # (and so the limit) changes when the server's ClientConfig arrives.
        try:
            return done.get(timeout=max(0.01, min(alive_interval, limit - age)))
        except queue.Empty:
            pass
