"""UC8179-class driver: Waveshare 7.5" V2 (800x480 b/w) and 7.5" b/w/r V2, full refresh.

Follows waveshareteam/e-Paper, RaspberryPi_JetsonNano/python/lib/waveshare_epd/epd7in5_V2.py and
epd7in5b_V2.py (``init``, ``display``, ``sleep``): reset; b/w: 0x06 17 17 28 17 booster, 0x01
07 07 28 17 power; b/w/r: 0x01 07 07 3F 3F, 0x06 17 17 28 17; 0x04 power on; 100 ms; BUSY;
0x00 panel setting (0x1F b/w OTP, 0x0F b/w/r OTP); 0x61 resolution 03 20 01 E0; 0x15 0x00;
0x50 (10 07 b/w, 11 07 b/w/r); 0x60 0x22. Display: 0x10 ← black inverted (1 = white); 0x13 ←
the black plane as it is (b/w, 1 = black) or the red plane (b/w/r, 1 = red); 0x12; 100 ms;
BUSY; sleep: (b/w: 0x50 0xF7) 0x02, BUSY, 0x07 0xA5. BUSY is active **low**, polled with 0x71.
The controller's RAM holds both 48,000-byte planes, so the board streams rows into it.
"""

import time

from epd_base import EPD


class UC8179(EPD):
    busy_level = 0

    def poll_busy(self):
        self.cmd(0x71)
        return self.busy() == self.busy_level

    def begin(self, full):
        self.reset(low_ms=2)
        if self.palette == "bwr":
            self.cmd(0x01, b"\x07\x07\x3f\x3f")  # power setting
            self.cmd(0x06, b"\x17\x17\x28\x17")  # booster soft start
        else:
            self.cmd(0x06, b"\x17\x17\x28\x17")
            self.cmd(0x01, b"\x07\x07\x28\x17")
        self.cmd(0x04)  # power on
        time.sleep_ms(100)
        self.wait()
        self.cmd(0x00, b"\x0f" if self.palette == "bwr" else b"\x1f")  # panel setting, OTP LUT
        w, h = self.width, self.height
        self.cmd(0x61, bytes((w >> 8, w & 0xFF, h >> 8, h & 0xFF)))  # resolution
        self.cmd(0x15, b"\x00")
        self.cmd(0x50, b"\x11\x07" if self.palette == "bwr" else b"\x10\x07")
        self.cmd(0x60, b"\x22")  # TCON
        self.initialised = True
        return True

    def writes(self, full):
        if self.palette == "bwr":
            return ((0x10, 0, True), (0x13, 1, False))
        return ((0x10, 0, True), (0x13, 0, False))

    def refresh(self, full):
        self.cmd(0x12)  # display refresh
        time.sleep_ms(100)
        self.wait()
        if self.palette != "bwr":
            self.cmd(0x50, b"\xf7")
        self.cmd(0x02)  # power off
        self.wait()
        self.cmd(0x07, b"\xA5")  # deep sleep
