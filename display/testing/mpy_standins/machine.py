"""Recording stand-in for MicroPython's ``machine`` (Pin, SPI, UART) on the unix port.

Loaded ahead of the built-in module by the firmware tests (``display/testing/firmware.py``).
Settings come
from the ``ROOM_DISPLAY_STANDIN`` environment variable, ``key=value`` pairs separated by ``;``:
``log`` (file the bus traffic is appended to), ``dc`` and ``busy`` (pin numbers), ``busy_level``
(the BUSY value that means busy), ``refresh`` (the refresh command byte, after which BUSY reads
busy for ``refresh_polls`` polls, 3 by default, like a panel that is drawing), ``button`` (a
pin number) and ``button_file``: that pin reads the file's first byte, ``0`` while a test holds
the button down, ``1`` (or no file) when released, as a button to ground with a pull-up reads.

Log records: ``C`` + command byte (SPI write with DC low), ``D`` + u16 length (LE) + data (DC
high), ``L`` + r g b (neopixel write), ``B`` (the firmware booted), ``T`` + u64 (LE) wall-clock
nanoseconds, written right after each refresh command.
"""

import os
import struct
import time

_cfg = {}
for _part in (os.getenv("ROOM_DISPLAY_STANDIN") or "").split(";"):
    if "=" in _part:
        _k, _v = _part.split("=", 1)
        _cfg[_k] = _v

# Open for the life of the process, like the bus it records.
_log = open(_cfg["log"], "ab") if "log" in _cfg else None  # noqa: SIM115
_DC = int(_cfg.get("dc", "-1"))
_BUSY = int(_cfg.get("busy", "-1"))
_BUSY_LEVEL = int(_cfg.get("busy_level", "1"))
_REFRESH = int(_cfg.get("refresh", "-1"))
_REFRESH_POLLS = int(_cfg.get("refresh_polls", "3"))
_BUTTON = int(_cfg.get("button", "-1"))
_BUTTON_FILE = _cfg.get("button_file")
_state = {"dc": 0, "busy_polls": 0, "claimed": {}}


def record(kind, data=b""):
    """Append one record to the log (used by the neopixel stand-in too)."""
    if _log is None:
        return
    if kind == b"D":
        _log.write(b"D" + bytes((len(data) & 0xFF, len(data) >> 8)))
    else:
        _log.write(kind)
    if data:
        _log.write(data)


def _seen_button(level):
    """Note in ``button_file`` + ``.seen`` how long this press has been read as held: the first
    and the latest ``ticks_ms`` of the reads that saw it down (gone when released), so a test
    can let go of a short press once the firmware has really seen it, however starved the
    process is."""
    seen = _BUTTON_FILE + ".seen"
    if level:
        if _state.get("down_since") is not None:
            _state["down_since"] = None
            try:  # noqa: SIM105 (the unix port has no contextlib)
                os.remove(seen)
            except OSError:
                pass
        return
    now = time.ticks_ms()
    if _state.get("down_since") is None:
        _state["down_since"] = now
    with open(seen, "w") as f:
        f.write(f"{_state['down_since']} {now}")


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        owner = _state["claimed"].get(id)
        if owner is not None and owner != "pin":
            raise ValueError(f"pin {id} already used by {owner}")
        _state["claimed"][id] = "pin"
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self(value)

    def __call__(self, v=None):
        return self.value(v)

    def value(self, v=None):
        if v is None:
            if self.id == _BUSY:
                if _state["busy_polls"] > 0:
                    _state["busy_polls"] -= 1
                    return _BUSY_LEVEL
                return 1 - _BUSY_LEVEL
            if self.id == _BUTTON and _BUTTON_FILE:
                try:
                    with open(_BUTTON_FILE, "rb") as f:
                        level = 0 if f.read(1) == b"0" else 1
                except OSError:
                    level = 1
                _seen_button(level)
                return level
            return self.level
        self.level = 1 if v else 0
        if self.id == _DC:
            _state["dc"] = self.level
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    def __init__(self, id, baudrate=1000000, sck=None, mosi=None, miso=None, **kw):
        # A real RP2040 claims a MISO pin whatever we do; one left to the default lands on a
        # pin the panel uses (GP8 = DC on SPI1). Demand an explicit one, as the firmware must.
        for name, pin in (("sck", sck), ("mosi", mosi), ("miso", miso)):
            if pin is None:
                raise ValueError(f"SPI({id}): {name} pin not given")
            if _state["claimed"].get(pin.id) == "pin" and pin.mode not in (-1,):
                raise ValueError(f"SPI {name} on pin {pin.id}, which is in use")
            _state["claimed"][pin.id] = "SPI " + name

    def write(self, data):
        if _state["dc"]:
            record(b"D", data)
            return
        for c in bytes(data):
            record(b"C", bytes((c,)))
            if c == _REFRESH:
                _state["busy_polls"] = _REFRESH_POLLS  # the panel draws for a while
                record(b"T", struct.pack("<Q", time.time_ns()))

    def init(self, *a, **kw):
        pass

    def deinit(self):
        pass


class UART:
    def __init__(self, *a, **kw):
        raise OSError("UART stand-in: the tests use the USB CDC transport")


def freq(*a):
    return 125000000


def unique_id():
    return b"\xe6\x61\x41\x04\x03\x65\x43\x21"


record(b"B")
