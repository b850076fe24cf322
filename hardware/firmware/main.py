"""room-display board firmware (MicroPython, RP2040 / Raspberry Pi Pico; ESP32 works the same).

The thin hardware half: bytes in from USB CDC (or a UART), replies out, the LEDs and the e-paper
brought to whatever :class:`panel_board.Board` says they should show. Protocol and image
streaming live in ``panel_board.py``; each controller family has its own driver file.

Settings: edit the constants below, or (better, survives firmware updates) put the ones you
change in a ``board_config.py`` next to this file, e.g. ``PANEL = "7in5b_V2"``.
"""

import gc
import select
import sys
import time

import micropython
import neopixel
import panel_board as pb
from machine import SPI, UART, Pin

# -- configuration: wiring and panel -----------------------------------------------------------
TRANSPORT = "usb"          # "usb" (USB CDC, /dev/ttyACM*) or "uart" (UART0 on GP0/GP1)
UART_BAUD = 115200
LED_PIN = 16               # WS2812 data
LED_COUNT = 8
PANEL = "2in9_V2"          # a key of PANELS below, or None if no e-paper is fitted
# Waveshare Pico e-Paper HAT wiring. The panel never talks back, but the RP2040 SPI block always
# claims a MISO pin: left to the default, SPI(1) would take GP8, which is DC here, and GP12 (the
# other choice) is RST. GP28 (SPI1 RX, free on the HAT) takes that role harmlessly.
EPD_PINS = {"spi": 1, "sck": 10, "mosi": 11, "miso": 28, "cs": 9, "dc": 8, "rst": 12,
            "busy": 13}
SAFE_MODE_PIN = 15         # tied to GND at boot: skip the firmware, keep the REPL
BUTTON_PIN = 14            # check-in button to GND (pull-up inside); None if none is fitted
MAX_FRAME = 512
MAX_IMAGE = 16384          # compressed image buffer; signs compress to 1-6 KB (800x480 bwr ~5 KB)
DELTA_MAX = 24576          # keep a delta base only for planes up to this many bytes

# Waveshare model: (driver module, class, width, height, palette) in the controller's native
# orientation. The driver files cite the vendor sequences they follow.
PANELS = {
    "2in9_V2": ("epd_ssd1680", "SSD1680", 128, 296, "bw"),
    "2in13_V3": ("epd_ssd1680", "SSD1680", 122, 250, "bw"),
    "2in13_V4": ("epd_ssd1680", "SSD1680", 122, 250, "bw"),
    "2in9b_V4": ("epd_ssd1680", "SSD1680", 128, 296, "bwr"),
    "2in9b_V3": ("epd_uc8151", "UC8151", 128, 296, "bwr"),
    "7in5_V2": ("epd_uc8179", "UC8179", 800, 480, "bw"),
    "7in5b_V2": ("epd_uc8179", "UC8179", 800, 480, "bwr"),
}

try:  # noqa: SIM105 - MicroPython has no contextlib
    from board_config import *  # noqa: F403 - local overrides of the constants above
except ImportError:
    pass


class Port:
    """Non-blocking byte I/O over USB CDC (stdin/stdout) or a UART."""

    def __init__(self):
        if TRANSPORT == "uart":
            self.uart = UART(0, baudrate=UART_BAUD, tx=Pin(0), rx=Pin(1), rxbuf=4096,
                             timeout=0)
        else:
            self.uart = None
            # A 0x03 byte inside a frame must not raise KeyboardInterrupt.
            micropython.kbd_intr(-1)
            self.poll = select.poll()
            self.poll.register(sys.stdin, select.POLLIN)
            self.stdin = sys.stdin.buffer
            self.stdout = sys.stdout.buffer
        self.buf = bytearray(256)

    def read(self):
        """Whatever has arrived, up to 256 bytes (a view of a reused buffer)."""
        if self.uart is not None:
            n = self.uart.readinto(self.buf) or 0
            return memoryview(self.buf)[:n]
        n = 0
        while n < 256 and self.poll.poll(0):
            got = self.stdin.readinto(memoryview(self.buf)[n:n + 1])
            if not got:
                break
            n += 1
        return memoryview(self.buf)[:n]

    def write(self, data):
        if self.uart is not None:
            self.uart.write(data)
        else:
            self.stdout.write(data)


class Uptime:
    """Milliseconds since boot that never wrap (``ticks_ms`` wraps after ~12 days on a Pico)."""

    def __init__(self):
        self.last = time.ticks_ms()
        self.ms = 0

    def now(self):
        t = time.ticks_ms()
        self.ms += time.ticks_diff(t, self.last)
        self.last = t
        return self.ms


class Leds:
    """WS2812 strip showing SET_LED's colour with its effect (steady, 1 Hz blink, 2 s pulse);
    :meth:`flash` blinks white over it for a moment (a button press reached the host)."""

    FLASH_MS = 600

    def __init__(self):
        self.np = neopixel.NeoPixel(Pin(LED_PIN), LED_COUNT) if LED_COUNT else None
        self.state = (0, 0, 0, 0, 0)
        self.last = None
        self.flash_from = None

    def flash(self, now_ms):
        self.flash_from = now_ms

    def tick(self, now_ms):
        if self.np is None:
            return
        r, g, b, effect, bri = self.state
        if self.flash_from is not None:
            since = now_ms - self.flash_from
            if since < self.FLASH_MS:
                # Two white blinks of 150 ms: seen from across the corridor, any state colour.
                r, g, b, effect, bri = (255, 255, 255, 0, 255 if (since // 150) % 2 == 0 else 0)
            else:
                self.flash_from = None
        level = bri
        if effect == 1:  # blink
            level = bri if (now_ms // 500) % 2 == 0 else 0
        elif effect == 2:  # pulse: triangle wave, 2 s period, never fully dark
            phase = now_ms % 2000
            tri = phase if phase < 1000 else 2000 - phase
            level = bri * (100 + tri * 900 // 1000) // 1000
        colour = (r * level // 255, g * level // 255, b * level // 255)
        if colour != self.last:
            self.np.fill(colour)
            self.np.write()
            self.last = colour


def make_epd():
    """The panel's driver, or ``None``; the SPI bus is built with every pin named."""
    if PANEL is None:
        return None
    module, cls, width, height, palette = PANELS[PANEL]
    p = EPD_PINS
    spi = SPI(p["spi"], baudrate=4_000_000, sck=Pin(p["sck"]), mosi=Pin(p["mosi"]),
              miso=Pin(p["miso"]))
    # CS idle high before the first transfer.
    cs = Pin(p["cs"], Pin.OUT, value=1)
    dc = Pin(p["dc"], Pin.OUT, value=0)
    rst = Pin(p["rst"], Pin.OUT, value=1)
    busy = Pin(p["busy"], Pin.IN, Pin.PULL_UP)  # as Waveshare's Pico code sets it
    driver = getattr(__import__(module), cls)
    args = (spi, cs, dc, rst, busy, width, height, palette)
    return driver(*args, PANEL) if cls == "SSD1680" else driver(*args)


def capabilities():
    if PANEL is None:
        return pb.Capabilities(led_count=LED_COUNT, width=0, height=0, palette="none",
                               max_frame=MAX_FRAME, button=BUTTON_PIN is not None)
    _module, _cls, width, height, palette = PANELS[PANEL]
    planes = (2 if palette == "bwr" else 1) * ((width + 7) // 8) * height
    return pb.Capabilities(led_count=LED_COUNT, width=width, height=height, palette=palette,
                           max_frame=MAX_FRAME, max_image=MAX_IMAGE, delta=planes <= DELTA_MAX,
                           button=BUTTON_PIN is not None)


def make_board(epd):
    """The protocol state machine with its buffers; what does not fit the heap is given up
    (first the delta base, then half the image buffer at a time) and HELLO says so."""
    caps = capabilities()
    while True:
        try:
            return pb.Board(caps, epd)
        except MemoryError:
            gc.collect()
            if caps.delta:
                caps.delta = False
            elif caps.max_image > 2048:
                caps.max_image //= 2
            else:
                raise


def main():
    if Pin(SAFE_MODE_PIN, Pin.IN, Pin.PULL_UP).value() == 0:
        print("room-display: safe mode, REPL left alone")
        return
    port = Port()
    leds = Leds()
    epd = make_epd()
    board = make_board(epd)
    uptime = Uptime()
    button_pin = Pin(BUTTON_PIN, Pin.IN, Pin.PULL_UP) if BUTTON_PIN is not None else None
    button = pb.ButtonReader()
    acked = [0]

    def serve_button(now):
        # Pressed reads 0 (the button pulls the pin to ground). Sent at once, again until the
        # host's ACK; the LEDs flash when it arrives, so the person knows it got through.
        if button_pin is not None:
            press = button.update(button_pin.value() == 0, now)
            if press:
                port.write(board.press(press, now))
        again = board.button_due(now)
        if again is not None:
            port.write(again)
        if board.button_acked != acked[0]:
            acked[0] = board.button_acked
            leds.flash(now)

    def pump():
        # While the panel refreshes: answer the host and keep the button and the LEDs' effect
        # running.
        data = port.read()
        if data:
            board.feed(data, port.write)
        now = uptime.now()
        serve_button(now)
        leds.state = board.led
        leds.tick(now)

    if epd is not None:
        epd.idle = pump
    gc.collect()
    port.write(board.hello(0))  # "I have (re)booted": the host sends its full state again
    while True:
        try:
            data = port.read()
            if data:
                # Replies go out as soon as they are known, before a slow panel refresh.
                board.feed(data, port.write)
            now = uptime.now()
            serve_button(now)
            leds.state = board.led
            leds.tick(now)
            if not data:
                time.sleep_ms(5)
        except MemoryError:
            # feed() answers NAK NO_MEMORY itself; this is the last line: never a dead board.
            gc.collect()
        except Exception as exc:  # a driver or I/O fault must not end the loop
            sys.print_exception(exc, sys.stderr)
            time.sleep_ms(100)


main()
