"""room-display board firmware (MicroPython, RP2040 / Raspberry Pi Pico; ESP32 works the same).

The thin hardware half: bytes in from USB CDC (or a UART), replies out, and the LEDs and e-paper
brought to whatever :class:`panel_board.Board` says they should show. All protocol and state
logic lives in ``panel_board.py``, which the host tests run as a simulator.

Copy ``panel_board.py``, ``epd_ssd1680.py`` and this file to the board (see ../README.md) and
edit the constants below for your wiring and panel.
"""

import select
import sys
import time

import micropython
import neopixel
import panel_board as pb
from epd_ssd1680 import EPD
from machine import SPI, UART, Pin

# -- configuration: wiring and panel -----------------------------------------------------------
TRANSPORT = "usb"          # "usb" (USB CDC, /dev/ttyACM*) or "uart" (UART0 on GP0/GP1)
UART_BAUD = 115200
LED_PIN = 16               # WS2812 data
LED_COUNT = 8
PANEL = "ssd1680"          # None if no e-paper is fitted
PANEL_WIDTH = 128          # native RAM orientation of the controller (2.9" SSD1680: 128x296)
PANEL_HEIGHT = 296
PANEL_PALETTE = "bw"       # "bw" or "bwr"
EPD_PINS = {"sck": 10, "mosi": 11, "cs": 9, "dc": 8, "rst": 12, "busy": 13}
SAFE_MODE_PIN = 15         # tied to GND at boot: skip the firmware, keep the REPL
MAX_FRAME = 512
MAX_IMAGE = 32768          # compressed image buffer; 800x480 bwr signs compress to ~5-15 KB


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

    def read(self):
        if self.uart is not None:
            return self.uart.read() or b""
        data = bytearray()
        while len(data) < 256 and self.poll.poll(0):
            data.extend(sys.stdin.buffer.read(1))
        return bytes(data)

    def write(self, data):
        if self.uart is not None:
            self.uart.write(data)
        else:
            sys.stdout.buffer.write(data)


class Leds:
    """WS2812 strip showing SET_LED's colour with its effect (steady, 1 Hz blink, 2 s pulse)."""

    def __init__(self):
        self.np = neopixel.NeoPixel(Pin(LED_PIN), LED_COUNT) if LED_COUNT else None
        self.state = (0, 0, 0, 0, 0)
        self.last = None

    def tick(self, now_ms):
        if self.np is None:
            return
        r, g, b, effect, bri = self.state
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
    if PANEL is None:
        return None
    p = EPD_PINS
    spi = SPI(1, baudrate=4_000_000, sck=Pin(p["sck"]), mosi=Pin(p["mosi"]))
    return EPD(spi, Pin(p["cs"], Pin.OUT), Pin(p["dc"], Pin.OUT), Pin(p["rst"], Pin.OUT),
               Pin(p["busy"], Pin.IN), PANEL_WIDTH, PANEL_HEIGHT, PANEL_PALETTE == "bwr")


def main():
    if Pin(SAFE_MODE_PIN, Pin.IN, Pin.PULL_UP).value() == 0:
        print("room-display: safe mode, REPL left alone")
        return
    caps = pb.Capabilities(led_count=LED_COUNT, width=PANEL_WIDTH if PANEL else 0,
                           height=PANEL_HEIGHT if PANEL else 0,
                           palette=PANEL_PALETTE if PANEL else "none",
                           max_frame=MAX_FRAME, max_image=MAX_IMAGE)
    board = pb.Board(caps)
    port = Port()
    leds = Leds()
    epd = make_epd()
    image_seen = 0
    port.write(board.hello(0))  # "I have (re)booted": the host sends its full state again
    while True:
        data = port.read()
        if data:
            for reply in board.feed(data):
                port.write(reply)
        leds.state = board.led
        leds.tick(time.ticks_ms())
        if epd is not None and board.image_version != image_seen:
            image_seen = board.image_version
            img = board.image
            # Replies were written above, before this slow refresh (PROTOCOL.md, IMAGE_END).
            epd.show(img.data, img.planes, img.full_refresh)
        if not data:
            time.sleep_ms(5)


main()
