"""``protocol = "wled"``: an off-the-shelf WLED board as the LED light, no firmware of ours.

WLED reads its JSON API from the serial port: a byte ``{`` starts a JSON document, parsed
straight from the stream (100 ms timeout, default 115200 baud); it answers only when the document
has ``"v": true`` and its TX pin is free, so this device does not wait for answers. A newline
after each document keeps the stream readable and is skipped by WLED.

:func:`wled_state` is the pure payload builder, shared with any other transport (MQTT).
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import serial

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.devices.serial_link import split_baud
from display.errors import DeviceError
from display.model import RoomView
from display.render.types import Effect, LedOutput

log = logging.getLogger(__name__)

# WLED effect ids (FX_MODE_* in WLED's FX.h): 0 Solid, 1 Blink, 2 Breathe.
WLED_EFFECTS = {Effect.STEADY: 0, Effect.BLINK: 1, Effect.PULSE: 2}
WLED_SPEED = 128  # WLED's default effect speed ("sx"); about 1 Hz for Blink


def wled_state(output: LedOutput) -> dict[str, Any]:
    """WLED JSON API state for ``output``: on, brightness, first segment's colour and effect."""
    r, g, b = output.colour
    return {
        "on": output.brightness > 0,
        "bri": output.brightness,
        "seg": [{"col": [[r, g, b]], "fx": WLED_EFFECTS[output.effect], "sx": WLED_SPEED}],
    }


def wled_line(output: LedOutput) -> bytes:
    """:func:`wled_state` as one compact JSON line, as written to the port."""
    return json.dumps(wled_state(output), separators=(",", ":")).encode() + b"\n"


class SerialWledDevice(DeviceWorker):
    """A WLED light on a serial port.

    WLED sends no acknowledgement, so a board that rebooted or was replugged while idle cannot
    be noticed from its answers: the state is written again every ``keepalive`` seconds (it is
    idempotent), and at once after any write error once the port opens again.
    """

    kind = "led"

    def __init__(self, config: DeviceConfig, clock: Clock,
                 render: Callable[[RoomView], LedOutput], *, keepalive: float = 30.0,
                 write_timeout: float = 2.0) -> None:
        super().__init__(config.id, config.url, clock)
        self.config = config
        self._render = render
        self._port_url, self._baud = split_baud(config.url)
        self._write_timeout = write_timeout
        self._keepalive = keepalive
        self._port: Any = None  # serial.Serial; pyserial is untyped
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name=f"wled-keepalive {config.id}",
                                        daemon=True)
        self.start()
        self._ticker.start()

    def apply(self, view: RoomView) -> None:
        line = wled_line(self._render(view))
        port = self._open()
        try:
            port.write(line)
            port.flush()
        except (OSError, serial.SerialException) as exc:
            self._close_port()
            raise DeviceError(f"{self.url}: write failed: {exc}") from exc

    def close(self) -> None:
        self._stop.set()
        super().close()

    def release(self) -> None:
        self._close_port()

    def _open(self) -> Any:
        if self._port is not None:
            return self._port
        try:
            self._port = serial.serial_for_url(
                self._port_url, baudrate=self._baud, timeout=0.1,
                write_timeout=self._write_timeout, exclusive=True)
        except (OSError, serial.SerialException, ValueError) as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                raise DeviceError(f"serial port {self._port_url} not present (unplugged?)") from exc
            raise DeviceError(f"cannot open {self._port_url}: {exc}") from exc
        log.info("%s: WLED port open at %d baud", self.url, self._baud)
        return self._port

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (OSError, serial.SerialException):
                log.debug("%s: error closing the port", self.url, exc_info=True)

    def _tick(self) -> None:
        while not self._stop.wait(self._keepalive):
            self.resend()
