"""SSD1680-family driver: Waveshare 2.9" V2 and 2.13" V3 (b/w, Waveshare's own LUTs), 2.13" V4
(b/w, OTP waveform) and 2.9" b/w/r V4.

Follows waveshareteam/e-Paper, RaspberryPi_JetsonNano/python/lib/waveshare_epd/:

* init (all four, ``epd2in9b_V4.init`` / ``epd2in13_V4.init``): reset; BUSY; 0x12 SWRESET; BUSY;
  0x01 driver output (height-1, 0x00); 0x11 0x03 data entry; 0x44/0x45 RAM window; 0x3C 0x05
  border; 0x21 0x00 0x80 display update control; 0x18 0x80 internal temperature sensor;
  0x4E/0x4F cursor 0; BUSY. ``epd2in9_V2.init`` sends no 0x3C/0x18 there. 2.9" V2 and 2.13" V3
  then load their LUT: 0x32 + 153 bytes, BUSY, 0x3F, 0x03 (gate), 0x04 (VSH, VSH2, VSL), 0x2C
  (VCOM) from bytes 153-158 (``SetLut``).
* full refresh: 0x24 ← black (1 = white); 0x26 ← the same plane on b/w panels (the base the next
  partial refresh compares with: ``display_Base`` / ``displayPartBaseImage``), the red plane
  (1 = red) on 2.9" b/w/r V4 (``epd2in9b_V4.display``); 0x22 0xC7 (LUT panels) or 0xF7 (OTP);
  0x20; BUSY (high = busy).
* partial refresh, b/w only: LUT panels (``epd2in9_V2.display_Partial``,
  ``epd2in13_V3.displayPartial``): reset pulse, partial LUT, 0x37 00 00 00 00 00 40 00 00 00 00,
  0x3C 0x80, 0x22 0xC0, 0x20, BUSY, window, cursor, 0x24 ← black, 0x22 0x0F, 0x20, BUSY.
  2.13" V4 (``epd2in13_V4.displayPartial``): reset pulse, 0x3C 0x80, 0x01, 0x11, window,
  cursor, 0x24 ← black, 0x22 0xFF, 0x20, BUSY. The three-colour panel always refreshes fully.
"""

import time

from epd_base import EPD

# model: (own LUT?, partial refresh?)
MODELS = {
    "2in9_V2": (True, True),
    "2in13_V3": (True, True),
    "2in13_V4": (False, True),
    "2in9b_V4": (False, False),
}


class SSD1680(EPD):
    busy_level = 1  # Waveshare ReadBusy: "0: idle, 1: busy"

    def __init__(self, spi, cs, dc, rst, busy, width, height, palette, model):
        super().__init__(spi, cs, dc, rst, busy, width, height, palette)
        self.model = model
        self.own_lut, self.has_partial = MODELS[model]
        if palette == "bwr":
            self.has_partial = False
        self.luts = None
        if self.own_lut:
            import epd_ssd1680_luts as luts  # only the LUT panels pay for the tables
            self.luts = luts.LUTS[model]

    def window(self):
        h = self.height - 1
        self.cmd(0x44, bytes((0, self.stride - 1)))
        self.cmd(0x45, bytes((0, 0, h & 0xFF, h >> 8)))

    def cursor(self):
        self.cmd(0x4E, b"\x00")
        self.cmd(0x4F, b"\x00\x00")

    def set_lut(self, lut):
        self.cmd(0x32, memoryview(lut)[:153])
        self.wait()
        self.cmd(0x3F, lut[153:154])
        self.cmd(0x03, lut[154:155])  # gate voltage
        self.cmd(0x04, lut[155:158])  # source voltages VSH, VSH2, VSL
        self.cmd(0x2C, lut[158:159])  # VCOM

    def init(self):
        self.reset()
        self.wait()
        self.cmd(0x12)  # SWRESET
        self.wait()
        h = self.height - 1
        self.cmd(0x01, bytes((h & 0xFF, h >> 8, 0x00)))  # driver output control
        self.cmd(0x11, b"\x03")  # data entry: x then y increment
        self.window()
        if self.model != "2in9_V2":
            self.cmd(0x3C, b"\x05")  # border waveform
        self.cmd(0x21, b"\x00\x80")  # display update control (every Waveshare SSD1680 init)
        if self.model != "2in9_V2":
            self.cmd(0x18, b"\x80")  # internal temperature sensor
        self.cursor()
        self.wait()
        if self.luts is not None:
            self.set_lut(self.luts[0])
        self.initialised = True

    def begin(self, full):
        full = full or not self.initialised or not self.has_partial
        if full:
            self.init()
            return True
        # Partial: Waveshare pulses reset (no SWRESET: the RAM keeps the base image).
        self.rst(0)
        time.sleep_ms(2)
        self.rst(1)
        time.sleep_ms(2)
        if self.luts is not None:
            self.set_lut(self.luts[1])
            self.cmd(0x37, b"\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00")
            self.cmd(0x3C, b"\x80")
            self.cmd(0x22, b"\xC0")
            self.cmd(0x20)
            self.wait()
        else:
            self.cmd(0x3C, b"\x80")
            h = self.height - 1
            self.cmd(0x01, bytes((h & 0xFF, h >> 8, 0x00)))
            self.cmd(0x11, b"\x03")
        self.window()
        return False

    def ram(self, command):
        self.cursor()
        self.cmd(command)

    def writes(self, full):
        if not full:
            return ((0x24, 0, True),)
        if self.palette == "bwr":
            return ((0x24, 0, True), (0x26, 1, False))
        return ((0x24, 0, True), (0x26, 0, True))

    def refresh(self, full):
        if full:
            self.cmd(0x22, b"\xC7" if self.luts is not None else b"\xF7")
        else:
            self.cmd(0x22, b"\x0F" if self.luts is not None else b"\xFF")
        self.cmd(0x20)  # master activation
        self.wait()
