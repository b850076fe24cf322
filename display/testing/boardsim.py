"""A board simulator: the reference firmware's protocol module in CPython, on the far end of a pty.

``display/testing/firmware.py`` runs the real ``main.py`` on MicroPython; this simulator stays for
what
that cannot do cheaply: lose replies, add noise to them, go silent mid-transfer, unplug the
cable (the path disappears) and plug it back, announce any capabilities, and inspect the
board's state from the test.

The agent opens ``sim.path`` (a symlink to the pty's slave) through pyserial exactly as it opens
``/dev/ttyACM0`` on a Pi. ``unplug()`` closes the pty and removes the symlink (the path
disappears, the agent's reads fail); ``plug()`` creates a new pty and symlink, like a board
enumerating again. Knobs: drop replies, add noise, reset on the Nth image chunk, go silent,
announce any capabilities.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from pathlib import Path
from typing import Any, TypeVar

from display.encode import panel_protocol as pp
from display.testing.firmware import panel_board

T = TypeVar("T")


class _Panel:
    """A display for :class:`panel_board.Board` that keeps the planes it is given."""

    def __init__(self) -> None:
        self.planes: bytes | None = None
        self.shown = 0

    def show(self, source: Any, full: bool) -> None:
        self.planes = b"".join(bytes(row) for plane in range(source.planes)
                               for row in source.rows(plane))
        self.shown += 1


class BoardSim:
    """One simulated board; use as a context manager."""

    def __init__(self, directory: Path, caps: Any = None, name: str = "board",
                 plugged: bool = True) -> None:
        self.path = directory / name
        self.caps = caps or panel_board.Capabilities()
        self.panel = _Panel()  # an e-ink panel keeps its picture across resets
        self.board = panel_board.Board(self.caps, self.panel)
        self._lock = threading.Lock()
        # What the hardware shows: LEDs go dark on reset; an e-ink panel keeps its image.
        self.led: tuple[int, ...] = (0, 0, 0, 0, 0)
        self.image: Any = None
        self.images_shown = 0
        self.boots = 1
        # Knobs.
        self.drop_replies = 0
        self.noise = b""
        self.silent = False
        self.reset_on_chunk: int | None = None
        self.silent_on_chunk: int | None = None  # go silent at the Nth chunk (a hung transfer)
        # What the host sent, decoded, with arrival time (time.perf_counter()).
        self.received: list[tuple[float, pp.Message]] = []
        self._decoder = pp.FrameDecoder()
        self._chunks_seen = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if plugged:
            self.plug()

    def __enter__(self) -> BoardSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()

    # -- cable -----------------------------------------------------------------------------------

    def plug(self) -> None:
        """New pty, new symlink, board boots and says HELLO."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a raw byte pipe like a USB CDC port
        self._master, self._slave = master, slave
        tmp = self.path.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(master, self._stop),
                                        name=f"boardsim {self.path.name}", daemon=True)
        self._thread.start()
        if not self.silent:
            self._write(self.board.hello(0))

    def unplug(self) -> None:
        """Close the pty and remove the path; the board keeps its state (it is not reset)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.path.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def reset(self) -> None:
        """Power-cycle the board: state lost, LEDs dark, e-ink keeps its picture, HELLO seq 0."""
        with self._lock:
            self.board = panel_board.Board(self.caps, self.panel)
            self.led = (0, 0, 0, 0, 0)
            self.boots += 1
        if not self.silent:
            self._write(self.board.hello(0))

    def press(self, press: int) -> bytes:
        """Press the board's button (``panel_board.PRESS_*``): the BUTTON frame goes to the host
        as the firmware sends it; returned so a test can send it again (a lost ACK)."""
        with self._lock:
            out: bytes = self.board.press(press, int(time.monotonic() * 1000))
        self._write(out)
        return out

    def inject(self, data: bytes) -> None:
        """Write raw bytes towards the host (line noise, a boot banner)."""
        self._write(data)

    # -- what the host sent ----------------------------------------------------------------------

    def messages(self, kind: type[T]) -> list[T]:
        with self._lock:
            return [m for _t, m in self.received if isinstance(m, kind)]

    @property
    def image_planes(self) -> bytes | None:
        with self._lock:
            return self.panel.planes

    # -- the board loop --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        fd = self._master
        if fd is not None and data:
            # The pty may go away under us: like a board talking to an unplugged cable.
            with contextlib.suppress(OSError):
                os.write(fd, data)

    def _run(self, master: int, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            now = time.perf_counter()
            reset = False
            with self._lock:
                for msg in self._decoder.feed(data):
                    self.received.append((now, msg))
                    if isinstance(msg, pp.ImageChunk) and self.reset_on_chunk is not None:
                        self._chunks_seen += 1
                        if self._chunks_seen >= self.reset_on_chunk:
                            self.reset_on_chunk = None
                            reset = True
                    if isinstance(msg, pp.ImageChunk) and self.silent_on_chunk is not None:
                        self.silent_on_chunk -= 1
                        if self.silent_on_chunk <= 0:
                            self.silent_on_chunk = None
                            self.silent = True
            if reset:
                self.reset()  # the chunk is lost with the board's RAM
            elif not self.silent:
                self._handle(data)

    def _handle(self, data: bytes) -> None:
        with self._lock:
            replies = self.board.feed(data)
            if self.board.led != self.led and self.board.led_version:
                self.led = self.board.led
            if self.board.image is not None and self.board.image is not self.image:
                self.image = self.board.image
                self.images_shown += 1
        for reply in replies:
            if self.drop_replies > 0:
                self.drop_replies -= 1
                continue
            self._write(self.noise + reply)
