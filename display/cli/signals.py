"""Signals a running node answers: TERM/INT stop, HUP reloads, USR1 identifies, USR2 re-reads
the store (``send-test-event`` wrote to it)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from display.app import App

log = logging.getLogger(__name__)


def install_signal_handlers(app: App) -> None:
    """TERM/INT stop, HUP reloads the config, USR1 serves ``identify``, USR2 re-reads the
    rooms' bookings from the store (``send-test-event`` on a long-connection node).

    Handlers only hand work to a thread: a signal can arrive while the loop holds a lock.
    """
    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        app.stop()

    def in_thread(target: Callable[[], object], name: str) -> Any:
        return lambda signum, frame: threading.Thread(target=target, name=name,
                                                      daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, in_thread(app.reload, "reload"))
    signal.signal(signal.SIGUSR1, in_thread(app.identify_requested, "identify"))
    signal.signal(signal.SIGUSR2, in_thread(app.store_changed, "store-changed"))
