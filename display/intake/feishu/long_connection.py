"""Long-connection mode: lark-oapi's websocket client, watched for silence.

The SDK's ``ws.Client`` can die silently; :func:`run_long_connection` exits the process
when no frame arrived for a few ping intervals, so the supervisor starts a fresh one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lark_oapi as lark
from lark_oapi.ws.exception import ClientException

from display.config import FeishuConfig
from display.intake.feishu.channel import EXIT_CONFIG, EXIT_FAILURE, ParentChannel
from display.intake.feishu.dispatch import Intake, build_handler
from display.intake.resync import Resync

log = logging.getLogger(__name__)

#: The watchdog never fires sooner than this, whatever ping interval the server asks for.
WATCHDOG_FLOOR = 3.0
#: Pings/pongs the watchdog waits for before declaring the link dead.
WATCHDOG_PINGS = 3


class WatchedClient(lark.ws.Client):  # type: ignore[misc]  # lark_oapi is untyped
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


def run_long_connection(feishu: FeishuConfig, config_path: Path, intake: Intake,
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
                           event_handler=build_handler(intake, feishu), domain=feishu.domain,
                           log_level=lark.LogLevel.WARNING, on_connected=connected)
    client.on_reconnecting = reconnecting
    client.on_reconnected = reconnected
    done: queue.Queue[int] = queue.Queue()

    def run() -> None:
        try:
            client.start()
        except ClientException as exc:
            log.error("Feishu refused the long connection: %s (check feishu.app_id and "
                      "feishu.app_secret, and that the app is self-built)", exc)
            done.put(EXIT_CONFIG)
        except Exception as exc:  # the thread's boundary: anything else ends the process
            log.error("long connection failed: %s: %s", type(exc).__name__, exc)
            done.put(EXIT_FAILURE)
        else:
            done.put(EXIT_FAILURE)

    threading.Thread(target=run, name="lark-ws", daemon=True).start()
    next_alive = time.monotonic()
    while True:
        now = time.monotonic()
        age = now - client.last_frame
        limit = max(WATCHDOG_PINGS * client.ping_interval, WATCHDOG_FLOOR)
        if age > limit:
            reason = f"no frame from Feishu for {age:.0f} s (limit {limit:.0f} s)"
            log.error("watchdog: %s; exiting so the supervisor restarts the intake", reason)
            channel.send(link="down", error=reason)
            return EXIT_FAILURE
        if now >= next_alive:
            next_alive = now + alive_interval
            channel.send(alive=round(time.time(), 3), last_frame_age=round(age, 3))
        # Asleep until the next alive line or the watchdog's deadline, whichever is first.
        try:
            return done.get(timeout=max(0.01, min(next_alive, now + limit - age) - now))
        except queue.Empty:
            pass
