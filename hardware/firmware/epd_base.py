"""What every e-paper driver here shares: SPI command/data writes, reset, BUSY, plane streaming.

A driver subclass says, per refresh, which controller RAM gets which plane and whether the bits
are inverted (:meth:`EPD.writes`), and how it wakes up and refreshes the panel. The image comes
from ``panel_board.ImageSource`` one row at a time (1 = ink, MSB first), so no driver ever holds
a whole plane: the controller's RAM does.
"""

import time


class EPD:
    """Base driver. ``busy_level`` is the BUSY pin value that means "busy"."""

    busy_level = 1
    refresh_timeout_ms = 40000  # a 7.5" three-colour full refresh takes ~16-20 s

    def __init__(self, spi, cs, dc, rst, busy, width, height, palette):
        self.spi, self.cs, self.dc, self.rst, self.busy = spi, cs, dc, rst, busy
        self.width, self.height, self.palette = width, height, palette
        self.stride = (width + 7) // 8
        self.initialised = False
        self.one = bytearray(1)
        self.blank = bytearray(self.stride)
        self.mask = (1 << (8 * self.stride)) - 1  # XOR with it: invert a whole row at once
        self.refreshes = 0
        # Called while the panel is busy refreshing, once the image has been streamed into the
        # controller: main.py keeps answering the host (a 7.5" refresh takes ~20 s).
        self.idle = None
        self.streamed = False

    # -- SPI ------------------------------------------------------------------------------------

    def cmd(self, c, data=None):
        self.dc(0)
        self.cs(0)
        self.one[0] = c
        self.spi.write(self.one)
        self.cs(1)
        if data is not None:
            self.data(data)

    def data(self, data):
        self.dc(1)
        self.cs(0)
        self.spi.write(data)
        self.cs(1)

    def reset(self, low_ms=2):
        """Reset pulse (Waveshare's ``reset()``): 20 ms high, ``low_ms`` low, 20 ms high."""
        self.rst(1)
        time.sleep_ms(20)
        self.rst(0)
        time.sleep_ms(low_ms)
        self.rst(1)
        time.sleep_ms(20)

    def poll_busy(self):
        """One look at BUSY; UC81xx drivers send 0x71 (get status) first, as Waveshare does."""
        return self.busy() == self.busy_level

    def wait(self):
        start = time.ticks_ms()
        while self.poll_busy():
            if time.ticks_diff(time.ticks_ms(), start) > self.refresh_timeout_ms:
                return False  # a panel that never releases BUSY must not hang the board
            if self.streamed and self.idle is not None:
                self.idle()
            time.sleep_ms(10)
        return True

    # -- streaming -------------------------------------------------------------------------------

    def write_plane(self, source, plane, invert):
        """Stream ``plane`` of ``source`` into the RAM whose write command was just sent;
        ``plane`` past the image's planes (a b/w image on a b/w/r panel) writes no ink."""
        dc, cs, spi = self.dc, self.cs, self.spi
        n = self.stride
        dc(1)
        cs(0)
        if plane >= source.planes:
            row = self.blank
            if invert:
                row = b"\xff" * n
            for _ in range(self.height):
                spi.write(row)
        else:
            mask = self.mask
            for row in source.rows(plane):
                if invert:
                    row = (int.from_bytes(row, "big") ^ mask).to_bytes(n, "big")
                spi.write(row)
        cs(1)

    def show(self, source, full):
        """Draw ``source`` (a verified image) with a full or partial refresh."""
        self.streamed = False
        full = self.begin(full)
        for command, plane, invert in self.writes(full):
            self.ram(command)
            self.write_plane(source, plane, invert)
        self.streamed = True  # the board's buffers are free again: it may take the next image
        try:
            self.refresh(full)
        finally:
            self.streamed = False
        self.refreshes += 1

    # -- per controller ---------------------------------------------------------------------------

    def begin(self, full):
        """Wake/initialise the controller; return whether this refresh is a full one."""
        raise NotImplementedError

    def writes(self, full):
        """``(RAM write command, plane index, invert)`` in the order the vendor sends them."""
        raise NotImplementedError

    def ram(self, command):
        self.cmd(command)

    def refresh(self, full):
        raise NotImplementedError
