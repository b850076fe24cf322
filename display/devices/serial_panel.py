"""LED lights and e-ink signs on a board speaking the serial ``panel`` protocol.

Each device is a :class:`~display.devices.base.DeviceWorker` (its own thread, newest view wins)
that renders the view, compares it with what the board already shows and sends only what
differs. After every HELLO (new port, reset board) the whole desired state goes again.

Two devices may share one board (LEDs and a panel on the same port): pass the same
:class:`~display.transport.serial_link.PanelLink` to both; requests are serialised by the link.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from display.clock import Clock
from display.config import DeviceConfig
from display.devices.base import DeviceWorker
from display.encode.deflate import deflate_raw
from display.encode.panel_image import EncodedImage, encode_sign
from display.encode.panel_protocol import (
    HOST_MAX_FRAME,
    OVERHEAD,
    Hello,
    ImageBegin,
    ImageChunk,
    ImageEnd,
    LedEffect,
    NakReason,
    Press,
    SetLed,
)
from display.encode.planes import xor_planes
from display.errors import DeviceError
from display.model import DeviceHealth, RoomView
from display.outputs import Effect, LedOutput, Palette, SignImage
from display.transport.serial_link import BoardRefused, BoardReset, LinkOptions, PanelLink
from display.unchanged import Unchanged

log = logging.getLogger(__name__)

CHUNK_HEADER = 6  # image_id:u16, offset:u32
MAX_RESTARTS = 3  # board resets in a row during one apply before giving up until the retry
BUSY_RETRY = 0.25  # s between IMAGE_BEGINs while the board's panel is still refreshing
BUSY_PATIENCE = 60.0  # s: longer than any panel's full refresh (a 7.5" b/w/r takes ~20 s)
T = TypeVar("T")

EFFECT_CODES = {Effect.STEADY: LedEffect.STEADY, Effect.BLINK: LedEffect.BLINK,
                Effect.PULSE: LedEffect.PULSE}


class _SerialDevice(DeviceWorker, Generic[T]):
    """Shared part: link ownership, HELLO → resend, health details, restart on reset."""

    def __init__(self, config: DeviceConfig, clock: Clock, render: Callable[[RoomView], T], *,
                 link: PanelLink | None = None, link_options: LinkOptions | None = None) -> None:
        super().__init__(config.id, config.url, clock)
        self.config = config
        self._render = render
        self._own_link = link is None
        self.link = link if link is not None else PanelLink(config.url, link_options)
        # A little past the link's own HELLO deadline, so its clearer error is the one we see.
        opts = self.link.options
        self._ready_timeout = opts.hello_timeout + 2 * opts.hello_interval
        self._last_press: tuple[Press, str] | None = None  # (press, when in ISO) for health
        self.link.add_listener(self)
        self.link.add_button_listener(self._pressed)

    def start(self) -> None:
        """Open the link when it is ours (a shared one is started by its owner), then work."""
        if self._own_link:
            self.link.start()
        super().start()

    # -- LinkListener ----------------------------------------------------------------------------

    def link_ready(self, hello: Hello, generation: int) -> None:
        """A new board session: it forgot our state, so send the desired view again."""
        self.resend()

    def link_down(self, error: str) -> None:
        self.mark(online=False, error=error)

    # -- DeviceWorker ----------------------------------------------------------------------------

    def apply(self, view: RoomView) -> None:
        output = self._render(view)
        for _ in range(MAX_RESTARTS):
            hello, generation = self.link.wait_ready(self._ready_timeout)
            self.check(hello)
            try:
                self.push(output, hello, generation)
                return
            except BoardReset:
                log.info("device %s: board restarted mid-transfer; sending it all again", self.id)
        raise DeviceError(f"{self.url}: board keeps restarting during transfers")

    def health(self) -> DeviceHealth:
        base = super().health()
        hello = self.link.hello
        details: dict[str, object] = {"board": hello.describe() if hello else None,
                                      "frames_dropped": self.link.decoder.stats.dropped}
        if hello is not None and hello.has_button:
            last = self._last_press
            details["button"] = {"presses": self.link.presses,
                                 "last": last[0].name.lower() if last else None,
                                 "at": last[1] if last else None}
        return dataclasses.replace(base, details=details)

    def _pressed(self, press: Press) -> None:
        # On the link's reader thread: record and return. What a press does to the booking
        # (check in, end early) is the node's business, not the panel's.
        self._last_press = (press, self._clock.now().isoformat())
        self._changed()
        on_press = self.on_press
        if on_press is not None:
            on_press("in" if press is Press.CHECK_IN else "end")

    def close(self) -> None:
        if self._own_link:
            self.link.close()  # first, so a request in flight fails fast instead of timing out
        super().close()

    def release(self) -> None:
        self.link.remove_listener(self)
        self.link.remove_button_listener(self._pressed)

    # -- for subclasses --------------------------------------------------------------------------

    def check(self, hello: Hello) -> None:
        """Raise :class:`DeviceError` if the board cannot show this device."""
        raise NotImplementedError

    def push(self, output: T, hello: Hello, generation: int) -> None:
        """Bring the board to ``output``; may raise :class:`BoardReset`."""
        raise NotImplementedError


class SerialLedDevice(_SerialDevice[LedOutput]):
    """An LED light: one SET_LED per change, and again after every HELLO."""

    kind = "led"

    def __init__(self, config: DeviceConfig, clock: Clock,
                 render: Callable[[RoomView], LedOutput], *, link: PanelLink | None = None,
                 link_options: LinkOptions | None = None) -> None:
        self._sent: Unchanged[tuple[int, LedOutput]] = Unchanged()  # (board session, output)
        super().__init__(config, clock, render, link=link, link_options=link_options)

    def check(self, hello: Hello) -> None:
        if hello.led_count == 0:
            raise DeviceError(f"board on {self.url} reports no LEDs ({hello.describe()})")

    def push(self, output: LedOutput, hello: Hello, generation: int) -> None:
        if self._sent.same((generation, output)):
            return
        r, g, b = output.colour
        self.link.request(SetLed(0, r, g, b, EFFECT_CODES[output.effect], output.brightness),
                          generation)
        self._sent.record((generation, output))


class SerialEinkDevice(_SerialDevice[SignImage]):
    """An e-ink sign: compressed bit planes in chunks, only when the image changed.

    Partial refresh normally; a full refresh for the first image of a board session, after
    ``full_refresh_every`` partial ones, and when the last full one is ``full_refresh_hours`` old.
    """

    kind = "eink"

    def __init__(self, config: DeviceConfig, clock: Clock,
                 render: Callable[[RoomView], SignImage], *, link: PanelLink | None = None,
                 link_options: LinkOptions | None = None) -> None:
        self._shown: Unchanged[tuple[int, str]] = Unchanged()  # (generation, digest) on the board
        self._shown_planes = b""  # its planes: the base of the next delta
        self._full_generation = -1
        self._partials = 0
        self._last_full = 0.0
        self._image_id = 0
        self.transfers = 0  # images sent, for tests and the benchmark
        self.bytes_sent = 0
        self.deltas = 0  # of them sent as deltas
        super().__init__(config, clock, render, link=link, link_options=link_options)

    def check(self, hello: Hello) -> None:
        cw, ch = self.config.size
        palette_ok = hello.palette == "bwr" or (
            hello.palette == "bw" and self.config.palette == Palette.BW)
        if (hello.width, hello.height) != (cw, ch) or not palette_ok:
            board = (f"{hello.width}x{hello.height} {hello.palette}" if hello.palette != "none"
                     else "no panel")
            raise DeviceError(f"board reports {board}, config says {cw}x{ch} "
                              f"{self.config.palette.value}")

    def push(self, output: SignImage, hello: Hello, generation: int) -> None:
        image = encode_sign(output)
        if (image.width, image.height) != (hello.width, hello.height):
            raise DeviceError(f"rendered image is {image.width}x{image.height}, "
                              f"panel is {hello.width}x{hello.height}")
        if self._shown.same((generation, image.digest)):
            return
        full = self._needs_full(generation)
        stream, delta = image.compressed, False
        shown = self._shown.last
        if hello.takes_delta and shown is not None and shown[0] == generation and \
                len(self._shown_planes) == len(image.planes):
            # Only the changed pixels: a state change touches a small part of the sign.
            diff = deflate_raw(xor_planes(self._shown_planes, image.planes))
            if len(diff) < len(stream):
                stream, delta = diff, True
        try:
            self._send(image, stream, delta, hello, generation, full)
        except BoardRefused as exc:
            if not delta or exc.reason not in (NakReason.NO_IMAGE, NakReason.BAD_CHECKSUM,
                                               NakReason.NO_MEMORY):
                raise
            log.info("device %s: board has no base for a delta; sending the whole image", self.id)
            self._send(image, image.compressed, False, hello, generation, full)
        self._shown.record((generation, image.digest))
        self._shown_planes = image.planes
        if full:
            self._full_generation = generation
            self._partials = 0
            self._last_full = self._clock.monotonic()
        else:
            self._partials += 1

    def _needs_full(self, generation: int) -> bool:
        if generation != self._full_generation:
            return True  # first image since the board (re)started: its screen is unknown
        if self._partials >= self.config.full_refresh_every:
            return True
        age = self._clock.monotonic() - self._last_full
        return age >= self.config.full_refresh_hours * 3600

    def _send(self, image: EncodedImage, data: bytes, delta: bool, hello: Hello,
              generation: int, full: bool) -> None:
        self._image_id = self._image_id % 0xFFFF + 1
        image_id = self._image_id
        if len(data) > hello.image_limit:  # the board's buffer, from its HELLO
            raise DeviceError(f"image {image.width}x{image.height} compresses to {len(data)} "
                              f"bytes; the board on {self.url} takes at most {hello.image_limit}")
        chunk = min(hello.max_frame, HOST_MAX_FRAME) - OVERHEAD - CHUNK_HEADER
        if chunk < 16:
            raise DeviceError(f"board on {self.url} reports max frame {hello.max_frame}, too small")
        log.debug("device %s: image %d, %d bytes%s (%d raw), %s refresh", self.id, image_id,
                  len(data), " delta" if delta else "", len(image.planes),
                  "full" if full else "partial")
        begin = ImageBegin(0, image_id, image.width, image.height, image.plane_count, full,
                           len(data), image.crc32, delta)
        deadline = time.monotonic() + BUSY_PATIENCE
        while True:
            try:
                self.link.request(begin, generation)
                break
            except BoardRefused as exc:
                # The board still draws the previous image from its buffers: wait for it.
                if exc.reason != NakReason.BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(BUSY_RETRY)
        for offset in range(0, len(data), chunk):
            self.link.request(ImageChunk(0, image_id, offset, data[offset:offset + chunk]),
                              generation)
        self.link.request(ImageEnd(0, image_id), generation)
        self.transfers += 1
        self.deltas += delta
        self.bytes_sent += len(data)
