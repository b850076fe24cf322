"""The link layer of the ``panel`` protocol: one serial port, one board, one reader thread.

:class:`PanelLink` owns the port. Its reader thread opens it (any pyserial URL), does the HELLO
handshake, decodes every byte that arrives and reconnects with backoff whenever the port fails
(unplug, a USB hub resetting). Devices call :meth:`PanelLink.request` from their own worker
thread: stop-and-wait with the same seq on retry, as ``hardware/PROTOCOL.md`` specifies.

Devices learn about the board through :class:`LinkListener` callbacks: ``link_ready`` after each
HELLO that starts a new board session (its ``generation`` grows, meaning "the board forgot
everything, send your full desired state"), ``link_down`` when the board is gone.

The board's check-in button is the one request that goes the other way: the reader thread
answers each BUTTON frame with an ACK at once and hands a new press (not a resend whose ACK was
lost) to the callbacks registered with :meth:`PanelLink.add_button_listener`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import serial

from display.backoff import Backoff
from display.encode.panel_protocol import (
    HOST_MAX_FRAME,
    Ack,
    Button,
    FrameDecoder,
    Hello,
    HelloRequest,
    ImageEnd,
    Message,
    Nak,
    Press,
    encode_frame,
)
from display.errors import DeviceError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200


class BoardReset(DeviceError):
    """The board announced itself (HELLO) while a transfer was in progress: start over."""


class BoardRefused(DeviceError):
    """The board answered NAK; ``reason`` is the :class:`NakReason` code."""

    def __init__(self, message: str, reason: int) -> None:
        super().__init__(message)
        self.reason = reason


class LinkListener(Protocol):
    """What a device hears from its link. Called on the reader thread: must not block."""

    def link_ready(self, hello: Hello, generation: int) -> None:
        """The board said HELLO: a new session; everything must be sent again."""

    def link_down(self, error: str) -> None:
        """The board is unreachable (port gone, no HELLO, no answers)."""


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """Timing of a link, in seconds; the defaults are PROTOCOL.md's."""

    ack_timeout: float = 0.5
    end_timeout: float = 3.0  # IMAGE_END: the board decompresses and checks the image first
    retries: int = 4
    hello_interval: float = 0.5
    hello_timeout: float = 5.0
    reopen_initial: float = 0.1
    reopen_max: float = 2.0
    read_timeout: float = 0.05  # how often the reader looks up from a quiet port
    write_timeout: float = 2.0


class PortMissing(DeviceError):
    """The port's device node is not there: unplugged or not plugged in yet (expected)."""


def open_port(url: str, baud: int, *, timeout: float, write_timeout: float,
              lines_low: bool = False) -> Any:
    """Open the pyserial port ``url`` exclusively; :class:`PortMissing` when it is absent,
    :class:`~display.errors.DeviceError` for any other failure.

    ``lines_low`` sets DTR and RTS low *before* opening (pyserial then keeps them low), so the
    EN/IO0 auto-reset transistors of ESP32/ESP8266 dev boards see no reset pulse.
    """
    try:
        port = serial.serial_for_url(url, baudrate=baud, timeout=timeout,
                                     write_timeout=write_timeout, exclusive=True,
                                     do_not_open=lines_low)
        if lines_low:
            port.dtr = False
            port.rts = False
            port.open()
    except (OSError, serial.SerialException, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:
            raise PortMissing(f"serial port {url} not present (unplugged?)") from exc
        raise DeviceError(f"cannot open {url}: {exc}") from exc
    return port


def split_baud(url: str, default: int = DEFAULT_BAUD) -> tuple[str, int]:
    """Take ``baud=N`` out of ``url``'s query: pyserial rejects options its handlers don't know.

    >>> split_baud("/dev/ttyACM0?baud=921600")
    ('/dev/ttyACM0', 921600)
    >>> split_baud("loop://?logging=debug&baud=9600")
    ('loop://?logging=debug', 9600)
    """
    base, sep, query = url.partition("?")
    if not sep:
        return url, default
    baud = default
    kept: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "baud":
            if not value.isdigit() or int(value) <= 0:
                raise DeviceError(f"{url}: baud must be a positive integer, got {value!r}")
            baud = int(value)
        else:
            kept.append((key, value))
    return (base + "?" + urlencode(kept) if kept else base), baud


class PanelLink:
    """One board on one serial URL. Thread-safe; use as a context manager or ``start``/``close``."""

    def __init__(self, url: str, options: LinkOptions | None = None) -> None:
        self.url = url
        self.port_url, self.baud = split_baud(url)
        self.options = options or LinkOptions()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._listeners: list[LinkListener] = []
        self._port: Any = None  # serial.Serial; pyserial is untyped
        self._closing = False
        self._ready = False
        self._hello: Hello | None = None
        self._generation = 0
        self._error: str | None = f"connecting to {url}"
        self._seq = 0
        self._hello_seqs: set[int] = set()
        self._pending: int | None = None
        self._reply: Ack | Nak | None = None
        self._button_listeners: list[Callable[[Press], None]] = []
        self._last_button: Button | None = None  # this board session's last press, for resends
        self.presses = 0
        self.decoder = FrameDecoder(HOST_MAX_FRAME)
        self.open_attempts = 0
        self._thread = threading.Thread(target=self._run, name=f"panel-link {url}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> PanelLink:
        """Start the reader thread (it opens the port and keeps it open)."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the reader thread and close the port; waiting requests fail at once."""
        with self._cond:
            self._closing = True
            self._ready = False
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> PanelLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_listener(self, listener: LinkListener) -> None:
        """Hear about HELLOs and losses; told at once if the board is already there."""
        with self._cond:
            self._listeners.append(listener)
            hello, gen, ready = self._hello, self._generation, self._ready
        if ready and hello is not None:
            listener.link_ready(hello, gen)

    def remove_listener(self, listener: LinkListener) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add_button_listener(self, callback: Callable[[Press], None]) -> None:
        """Call ``callback(press)`` once for each press of the board's button. It runs on the
        reader thread: hand the press on and return (the board waits for our ACK meanwhile,
        though it was sent already)."""
        with self._cond:
            self._button_listeners.append(callback)

    def remove_button_listener(self, callback: Callable[[Press], None]) -> None:
        with self._cond:
            if callback in self._button_listeners:
                self._button_listeners.remove(callback)

    # -- state -----------------------------------------------------------------------------------

    @property
    def hello(self) -> Hello | None:
        """The board's last HELLO (its capabilities), or ``None`` before the first."""
        with self._cond:
            return self._hello

    @property
    def online(self) -> bool:
        with self._cond:
            return self._ready

    @property
    def error(self) -> str | None:
        with self._cond:
            return self._error

    @property
    def generation(self) -> int:
        """Counts board sessions: grows on every HELLO that starts one."""
        with self._cond:
            return self._generation

    def wait_ready(self, timeout: float) -> tuple[Hello, int]:
        """The board's HELLO and session generation, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._ready and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closing:
                raise DeviceError(f"{self.url}: link closed")
            if not self._ready or self._hello is None:
                raise DeviceError(self._error or f"{self.url}: board not ready")
            return self._hello, self._generation

    # -- requests --------------------------------------------------------------------------------

    def request(self, msg: Message, generation: int | None = None) -> Ack:
        """Send ``msg`` (its seq is assigned here) and wait for its ACK, retrying on silence.

        Raises :class:`BoardReset` if the board says HELLO meanwhile (or already did since
        ``generation``), :class:`DeviceError` on a NAK, a lost port or a board that stays silent.
        """
        name = type(msg).__name__
        opts = self.options
        timeout = opts.end_timeout if isinstance(msg, ImageEnd) else opts.ack_timeout
        with self._request_lock:
            with self._cond:
                if not self._ready:
                    raise DeviceError(self._error or f"{self.url}: board not ready")
                gen = self._generation
                if generation is not None and generation != gen:
                    raise BoardReset(f"{self.url}: board restarted")
                seq = self._next_seq()
                self._hello_seqs.clear()  # from now on, a HELLO we did not ask for is a reset
                self._pending, self._reply = seq, None
            frame = encode_frame(dataclasses.replace(msg, seq=seq))
            try:
                for _attempt in range(1 + self.options.retries):
                    self._write(frame)
                    reply = self._wait_reply(gen, timeout)
                    if isinstance(reply, Nak):
                        raise BoardRefused(
                            f"{self.url}: board refused {name}: {reply.reason_name}", reply.reason)
                    if reply is not None:
                        return reply
                    log.debug("%s: no answer to %s seq %d, resending", self.url, name, seq)
            finally:
                with self._cond:
                    self._pending = None
            error = (f"board on {self.url} did not answer {name} after "
                     f"{1 + self.options.retries} tries")
            self._set_down(error)  # offline, and the reader starts the HELLO handshake again
            raise DeviceError(error)

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is the board's spontaneous HELLO
        return self._seq

    def _wait_reply(self, gen: int, timeout: float) -> Ack | Nak | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._generation != gen:
                    raise BoardReset(f"{self.url}: board restarted during the transfer")
                if not self._ready or self._closing:
                    raise DeviceError(self._error or f"{self.url}: connection lost")
                if self._reply is not None:
                    return self._reply
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            port = self._port
            if port is None:
                raise DeviceError(f"{self.url}: port is not open")
            try:
                port.write(data)
                port.flush()
            except (OSError, serial.SerialException) as exc:
                # The reader thread notices the dead port too and reconnects.
                raise DeviceError(f"{self.url}: write failed: {exc}") from exc

    # -- the reader thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.options.reopen_initial, self.options.reopen_max)
        while not self._is_closing():
            port = self._open()
            if port is None:
                with self._cond:
                    self._cond.wait(backoff.next())
                continue
            backoff.reset()
            try:
                self._session(port)
            except (OSError, serial.SerialException) as exc:
                self._set_down(f"{self.url}: connection lost: {exc}")
            finally:
                with self._write_lock:
                    self._port = None
                    try:
                        port.close()
                    except (OSError, serial.SerialException):
                        log.debug("%s: error closing the port", self.url, exc_info=True)
        with self._cond:
            self._ready = False

    def _is_closing(self) -> bool:
        with self._cond:
            return self._closing

    def _open(self) -> Any:
        self.open_attempts += 1
        try:
            port = open_port(self.port_url, self.baud, timeout=self.options.read_timeout,
                             write_timeout=self.options.write_timeout)
        except PortMissing as exc:
            # Unplugged or not yet plugged in: expected, so only debug-level noise.
            self._set_down(str(exc), quiet=True)
            return None
        except DeviceError as exc:
            self._set_down(str(exc))
            return None
        log.info("%s: port open at %d baud", self.url, self.baud)
        with self._write_lock:
            self._port = port
        return port

    def _session(self, port: Any) -> None:
        """Handshake, then read and dispatch until the port fails or the link closes."""
        port.reset_input_buffer()  # bytes from before the open (a boot banner) are not ours
        self.decoder = FrameDecoder(HOST_MAX_FRAME)
        opened = time.monotonic()
        last_hello = -1e9
        reported_silence = False
        while not self._is_closing():
            with self._cond:
                ready = self._ready
            if not ready:
                now = time.monotonic()
                if now - last_hello >= self.options.hello_interval:
                    self._send_hello_request()
                    last_hello = now
                if not reported_silence and now - opened >= self.options.hello_timeout:
                    reported_silence = True
                    self._set_down(
                        f"no HELLO from board on {self.url} within "
                        f"{self.options.hello_timeout:g} s (wrong port or baud, or no firmware?)")
            data = port.read(port.in_waiting or 1)
            if data:
                for msg in self.decoder.feed(data):
                    self._dispatch(msg)

    def _send_hello_request(self) -> None:
        with self._cond:
            seq = self._next_seq()
            self._hello_seqs.add(seq)
        try:
            self._write(encode_frame(HelloRequest(seq)))
        except DeviceError:
            log.debug("%s: HELLO_REQUEST not written", self.url, exc_info=True)

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Hello):
            self._on_hello(msg)
            return
        if isinstance(msg, Ack | Nak):
            with self._cond:
                if self._pending == msg.seq and self._reply is None:
                    self._reply = msg
                    self._cond.notify_all()
            return
        if isinstance(msg, Button):
            self._on_button(msg)
            return
        log.debug("%s: ignoring unexpected %s from the board", self.url, type(msg).__name__)

    def _on_button(self, msg: Button) -> None:
        try:
            # Answered first and always, a resend too: the board stops sending when it hears it.
            self._write(encode_frame(Ack(msg.seq)))
        except DeviceError:
            log.debug("%s: ACK of BUTTON %d not written", self.url, msg.seq, exc_info=True)
        with self._cond:
            if msg == self._last_button:
                return  # the board did not hear our ACK and sent the same press again
            self._last_button = msg
            self.presses += 1
            listeners = list(self._button_listeners)
        press = Press(msg.press)
        log.info("%s: button pressed: %s", self.url, press.name.lower().replace("_", " "))
        for callback in listeners:
            callback(press)

    def _on_hello(self, hello: Hello) -> None:
        with self._cond:
            if self._ready and hello.seq != 0 and hello.seq in self._hello_seqs:
                return  # a late answer to a HELLO_REQUEST we repeated: same session
            self._hello_seqs.clear()
            self._last_button = None  # a new board session numbers its presses from 1 again
            was_ready = self._ready
            self._ready = True
            self._hello = hello
            self._generation += 1
            self._error = None
            gen = self._generation
            listeners = list(self._listeners)
            self._cond.notify_all()
        if was_ready:
            log.warning("%s: board restarted (%s); sending everything again", self.url,
                        hello.describe())
        else:
            log.info("%s: board ready: %s", self.url, hello.describe())
        for listener in listeners:
            listener.link_ready(hello, gen)

    def _set_down(self, error: str, quiet: bool = False) -> None:
        with self._cond:
            changed = error != self._error
            self._ready = False
            self._error = error
            listeners = list(self._listeners)
            self._cond.notify_all()
        if changed:
            log.log(logging.DEBUG if quiet else logging.WARNING, "%s", error)
            for listener in listeners:
                listener.link_down(error)
