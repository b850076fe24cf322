"""``protocol = "wled"``: an off-the-shelf WLED board as the LED light, no firmware of ours.

WLED reads its JSON API from the serial port: a byte ``{`` starts a JSON document, parsed
straight from the stream (100 ms timeout, default 115200 baud); it answers only when the document
has ``"v": true`` and its TX pin is free, so this device does not wait for answers. A newline
after each document keeps the stream readable and is skipped by WLED. Builds without Adalight
(``WLED_DISABLE_ADALIGHT``) and boards whose LED data pin is GPIO3 (the RX pin) read nothing
from serial (wled00/wled.cpp: ``serialCanRX = !PinManager::isPinAllocated(hardwareRX)``).

:func:`display.encode.wled.wled_line` builds the bytes; the same state goes over MQTT.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.encode.wled import wled_line
from display.errors import DeviceError
from display.model import RoomView
from display.outputs import LedOutput
from display.transport.serial_link import open_port, split_baud

log = logging.getLogger(__name__)

class SerialWledDevice(DeviceWorker):
    """A WLED light on a serial port.

    WLED sends no acknowledgement, so a watcher thread reads the port (and throws WLED's output
    away): a read error is an unplug, noticed at once; the port is closed and re-opened as soon
    as its path is back. The port is opened with DTR and RTS low, so ESP dev boards with an
    auto-reset circuit are not reset by it; since a freshly plugged board may still be booting,
    the state is written again every ``boot_interval`` seconds for ``boot_window`` seconds after
    each open, and every ``keepalive`` seconds after that (it is idempotent).
    """

    kind = "led"

    def __init__(self, config: DeviceConfig, clock: Clock,
                 render: Callable[[RoomView], LedOutput], *, keepalive: float = 30.0,
                 write_timeout: float = 2.0, boot_window: float = 3.0,
                 boot_interval: float = 0.5, poll: float = 0.1) -> None:
        super().__init__(config.id, config.url, clock)
        self.config = config
        self._render = render
        self._port_url, self._baud = split_baud(config.url)
        self._write_timeout = write_timeout
        self._keepalive = keepalive
        self._boot_window = boot_window
        self._boot_interval = boot_interval
        self._poll = poll
        self._lock = threading.Lock()  # guards _port, _opened_at, _last_write
        self._port: Any = None  # serial.Serial; pyserial is untyped
        self._opened_at = 0.0
        self._last_write = 0.0
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=f"wled-watch {config.id}",
                                         daemon=True)

    def start(self) -> None:
        """Start the worker, then the watcher that notices an unplugged port."""
        super().start()
        self._watcher.start()

    def apply(self, view: RoomView) -> None:
        line = wled_line(self._render(view))
        port = self._open()
        try:
            port.write(line)
            port.flush()
        except (OSError, serial.SerialException) as exc:
            self._close_port()
            raise DeviceError(f"{self.url}: write failed: {exc}") from exc
        with self._lock:
            self._last_write = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        super().close()
        if self._watcher.is_alive():  # never started when start() was not called
            self._watcher.join(timeout=2)

    def release(self) -> None:
        self._close_port()

    def _open(self) -> Any:
        with self._lock:
            if self._port is not None:
                return self._port
            port = open_port(self._port_url, self._baud, timeout=self._poll,
                             write_timeout=self._write_timeout, lines_low=True)
            self._port = port
            self._opened_at = time.monotonic()
        log.info("%s: WLED port open at %d baud", self.url, self._baud)
        return port

    def _close_port(self) -> None:
        with self._lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (OSError, serial.SerialException):
                log.debug("%s: error closing the port", self.url, exc_info=True)

    def _path_present(self) -> bool:
        """Whether the port's device node exists (URLs that are not paths always do)."""
        return not self._port_url.startswith("/") or os.path.exists(self._port_url)

    def _watch(self) -> None:
        present = self._path_present()
        while not self._stop.is_set():
            with self._lock:
                port, opened_at, last_write = self._port, self._opened_at, self._last_write
            if port is None:
                now_present = self._path_present()
                if now_present and not present:
                    self.resend()  # plugged back in: open it and write the state now
                present = now_present
                self._stop.wait(self._poll)
                continue
            try:
                port.read(256)  # blocks up to ``poll``; WLED's own output is not needed
            except (OSError, serial.SerialException, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial racing a close() from the worker thread.
                if self._stop.is_set():
                    return
                self._close_port()
                present = self._path_present()
                self.mark(online=False, error=f"{self.url}: port lost ({exc or 'unplugged'})")
                self.resend()
                continue
            now = time.monotonic()
            booting = now - opened_at < self._boot_window
            if (booting and now - last_write >= self._boot_interval) or \
                    now - last_write >= self._keepalive:
                self.resend()
