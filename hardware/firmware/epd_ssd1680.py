"""Minimal driver for SSD1680-class Waveshare SPI e-paper (2.9" V2 b/w, 2.9" b/w/r, 2.13" V3).

Takes the protocol's bit planes as they arrive (1 = ink, MSB first, rows padded to bytes) and
writes them to the controller RAM in its native orientation: no rotation on the board.
Untested on every panel variant: check your panel's datasheet for the update sequence.
"""

import time


class EPD:
    def __init__(self, spi, cs, dc, rst, busy, width, height, has_red):
        self.spi, self.cs, self.dc, self.rst, self.busy = spi, cs, dc, rst, busy
        self.width, self.height, self.has_red = width, height, has_red
        self.stride = (width + 7) // 8
        self.initialised = False

    def _cmd(self, c, data=None):
        self.dc(0)
        self.cs(0)
        self.spi.write(bytes((c,)))
        self.cs(1)
        if data is not None:
            self._data(data)

    def _data(self, data):
        self.dc(1)
        self.cs(0)
        self.spi.write(data)
        self.cs(1)

    def _wait(self, timeout_ms=30000):
        start = time.ticks_ms()
        while self.busy() == 1 and time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
            time.sleep_ms(10)

    def init(self):
        self.rst(1)
        time.sleep_ms(20)
        self.rst(0)
        time.sleep_ms(5)
        self.rst(1)
        time.sleep_ms(20)
        self._wait()
        self._cmd(0x12)  # software reset
        self._wait()
        h = self.height - 1
        self._cmd(0x01, bytes((h & 0xFF, h >> 8, 0x00)))  # driver output control
        self._cmd(0x11, b"\x03")  # data entry: x then y increment
        self._cmd(0x44, bytes((0, self.stride - 1)))
        self._cmd(0x45, bytes((0, 0, h & 0xFF, h >> 8)))
        self._cmd(0x3C, b"\x05")  # border waveform
        self._cmd(0x18, b"\x80")  # internal temperature sensor
        self.initialised = True

    def _ram(self, command, data):
        self._cmd(0x4E, b"\x00")
        self._cmd(0x4F, b"\x00\x00")
        self._cmd(command)
        self._data(data)

    def show(self, planes, plane_count, full):
        """Draw ``planes`` (black, then red if present) with a full or partial refresh."""
        if not self.initialised or full:
            self.init()
        size = self.stride * self.height
        black = bytearray(planes[:size])
        # Controller RAM: 1 = white on the black/white plane; ours is 1 = ink.
        for i in range(size):
            black[i] ^= 0xFF
        self._ram(0x24, black)
        if self.has_red:
            red = planes[size:2 * size] if plane_count > 1 else bytes(size)
            self._ram(0x26, red)  # 1 = red, as in our plane
        # b/w panels: 0x26 holds the previous image, which a partial refresh diffs against.
        # Three-colour panels have no partial refresh: always the full waveform.
        self._cmd(0x22, b"\xF7" if (full or self.has_red) else b"\xFF")
        self._cmd(0x20)
        self._wait()
        if not self.has_red:
            self._ram(0x26, black)  # the base for the next partial refresh
