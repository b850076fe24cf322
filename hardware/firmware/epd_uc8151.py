"""UC8151-class driver: Waveshare 2.9" b/w/r V3 (128x296), full refresh only.

Follows waveshareteam/e-Paper, RaspberryPi_JetsonNano/python/lib/waveshare_epd/epd2in9b_V3.py:
reset (200 ms high, 2 ms low, 200 ms high); 0x04 power on; BUSY; 0x00 0x0F 0x89 panel setting
(LUT from OTP); 0x61 resolution; 0x50 0x77 VCOM/data interval; 0x10 ← black (1 = white);
0x13 ← red (1 = white, i.e. 0 = red); 0x12 refresh; 200 ms; BUSY; then ``sleep()``: 0x02 power
off, BUSY, 0x07 0xA5 deep sleep. BUSY is active **low** and Waveshare sends 0x71 (get status)
while polling it.
"""

import time

from epd_base import EPD


class UC8151(EPD):
    busy_level = 0  # Waveshare ReadBusy: loops while the pin reads 0

    def poll_busy(self):
        self.cmd(0x71)
        return self.busy() == self.busy_level

    def begin(self, full):
        # Every refresh starts from deep sleep: reset and initialise again.
        self.rst(1)
        time.sleep_ms(200)
        self.rst(0)
        time.sleep_ms(2)
        self.rst(1)
        time.sleep_ms(200)
        self.cmd(0x04)  # power on
        self.wait()
        self.cmd(0x00, b"\x0f\x89")  # panel setting: LUT from OTP, 128x296; temperature, boost
        self.cmd(0x61, bytes((self.width & 0xF8, self.height >> 8, self.height & 0xFF)))
        self.cmd(0x50, b"\x77")  # VCOM and data interval
        self.initialised = True
        return True  # no partial refresh on this panel

    def writes(self, full):
        return ((0x10, 0, True), (0x13, 1, True))

    def refresh(self, full):
        self.cmd(0x12)  # display refresh
        time.sleep_ms(200)
        self.wait()
        self.cmd(0x02)  # power off
        self.wait()
        self.cmd(0x07, b"\xA5")  # deep sleep
