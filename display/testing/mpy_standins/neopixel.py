"""Recording stand-in for MicroPython's ``neopixel``: each ``write()`` logs the first pixel."""

import machine


class NeoPixel:
    def __init__(self, pin, n, bpp=3, timing=1):
        self.n = n
        self.buf = [(0, 0, 0)] * n

    def __setitem__(self, i, v):
        self.buf[i] = v

    def __getitem__(self, i):
        return self.buf[i]

    def __len__(self):
        return self.n

    def fill(self, v):
        for i in range(self.n):
            self.buf[i] = v

    def write(self):
        machine.record(b"L", bytes(self.buf[0]))
