"""Serial benchmark: bytes on the wire for an e-ink state change, and LED latency over a pty.

Run: ``python bench/bench_serial.py``. Prints figures and the machine they were measured on.

1. A realistic sign (room name, state in large type, bookings, a day timeline) is drawn with
   Pillow for 296x128 and 800x480, b/w and b/w/r; a state change (free → busy) is encoded as the
   agent sends it (IMAGE_BEGIN, chunks at a 512-byte max frame, IMAGE_END, COBS and delimiters)
   and compared with the raw planes. Target: ≤ 15 % of raw.
2. LED latency: from ``SerialLedDevice.show(view)`` to the SET_LED frame read by the simulated
   board on the far end of a pty, p50/p99 over a few hundred changes. Target: p99 ≤ 20 ms.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, ImageFont

from bench.common import machine, median, percentile, wait
from display.config import DeviceConfig, DeviceKind, DeviceProtocol
from display.devices.serial_panel import CHUNK_HEADER, SerialLedDevice
from display.encode import panel_protocol as pp
from display.encode.deflate import deflate_raw
from display.encode.panel_image import encode_sign
from display.encode.planes import xor_planes
from display.model import Occupancy, RoomView, State
from display.outputs import Effect, LedOutput, SignImage
from display.testing.boardsim import BoardSim
from display.testing.clock import FakeClock
from display.transport.serial_link import LinkOptions

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def font(path: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def sign(size: tuple[int, int], state: str, red: bool) -> SignImage:
    """A door sign as the real renderer lays it out (approximately)."""
    w, h = size
    s = h / 128
    black = Image.new("1", size, 1)
    redp = Image.new("1", size, 1) if red else None
    d = ImageDraw.Draw(black)
    d.text((int(6 * s), int(4 * s)), "3F East · Large Room", font=font(BOLD, int(14 * s)), fill=0)
    big = font(BOLD, int(34 * s))
    target = ImageDraw.Draw(redp) if (redp is not None and state == "BUSY") else d
    target.text((int(6 * s), int(24 * s)), state, font=big, fill=0)
    small = font(FONT, int(11 * s))
    d.text((int(6 * s), int(64 * s)), "09:00-10:30 Weekly sync, until 10:30", font=small, fill=0)
    for i, line in enumerate(["11:00-11:30 1:1", "14:00-15:00 Design review",
                              "16:00-17:00 Hiring"]):
        d.text((w // 2 + int(4 * s), int((26 + 12 * i) * s)), line, font=small, fill=0)
    y = h - int(22 * s)
    d.line((int(6 * s), y, w - int(6 * s), y), fill=0)
    span = w - int(12 * s)
    for start, end in [(9, 10.5), (11, 11.5), (14, 15), (16, 17)]:
        x0 = int(6 * s + (start - 8) / 11 * span)
        x1 = int(6 * s + (end - 8) / 11 * span)
        d.rectangle((x0, y - int(8 * s), x1, y), fill=0)
    for hour in range(8, 20, 2):
        x = int(6 * s + (hour - 8) / 11 * span)
        d.text((x, y + int(2 * s)), f"{hour:02d}", font=small, fill=0)
    d.text((w - int(90 * s), h - int(12 * s)), "updated 09:02", font=small, fill=0)
    return SignImage(black, redp)


def wire_bytes(image: SignImage, before: SignImage | None = None,
               max_frame: int = 512) -> tuple[int, int, int]:
    """(raw plane bytes, compressed bytes, bytes on the wire host → board) for one image;
    with ``before``, as the XOR delta from it (what the agent sends for a state change)."""
    enc = encode_sign(image)
    stream = enc.compressed
    if before is not None:
        stream = deflate_raw(xor_planes(encode_sign(before).planes, enc.planes))
    chunk = max_frame - pp.OVERHEAD - CHUNK_HEADER
    frames: list[pp.Message] = [pp.ImageBegin(1, 1, enc.width, enc.height, enc.plane_count, False,
                            len(stream), enc.crc32, before is not None)]
    for off in range(0, len(stream), chunk):
        frames.append(pp.ImageChunk(1, 1, off, stream[off:off + chunk]))
    frames.append(pp.ImageEnd(1, 1))
    wire = sum(len(pp.encode_frame(f)) for f in frames)
    return len(enc.planes), len(stream), wire


def bench_images() -> None:
    print("E-ink, host -> board bytes, max frame 512 bytes. 'whole' = first image after a HELLO;")
    print("'change' = state change free -> busy, sent as a delta from the image shown")
    print(f"{'panel':>14} {'':>6} {'raw B':>8} {'deflate B':>10} {'wire B':>8} {'% raw':>6} "
          f"{'s@115200':>9} {'s@921600':>9} {'encode ms':>10}")
    for size in ((296, 128), (800, 480)):
        for red in (False, True):
            before, after = sign(size, "FREE", red), sign(size, "BUSY", red)
            for kind, base in (("whole", None), ("change", before)):
                t = time.perf_counter()
                raw, comp, wire = wire_bytes(after, base)
                ms = (time.perf_counter() - t) * 1000
                label = f"{size[0]}x{size[1]} {'bwr' if red else 'bw'}"
                # 10 bits per byte on an 8N1 line.
                print(f"{label:>14} {kind:>6} {raw:>8} {comp:>10} {wire:>8} "
                      f"{100 * wire / raw:>5.1f}% {wire * 10 / 115200:>9.3f} "
                      f"{wire * 10 / 921600:>9.3f} {ms:>10.1f}")
    print("(raw at 115200 baud: 296x128 bw", f"{296 * 128 // 8 * 10 / 115200:.2f} s;",
          f"800x480 bwr {800 * 480 // 8 * 2 * 10 / 115200:.2f} s)")


def bench_led(iterations: int = 300) -> None:
    states = [State.FREE, State.BUSY]
    colours = {State.FREE: (0, 192, 0), State.BUSY: (255, 0, 0)}

    def render(v: RoomView) -> LedOutput:
        return LedOutput(colours[v.occupancy.state], Effect.STEADY, 128)

    with tempfile.TemporaryDirectory() as tmp, BoardSim(Path(tmp)) as sim:
        cfg = DeviceConfig(id="led", kind=DeviceKind.LED, url=str(sim.path),
                           protocol=DeviceProtocol.PANEL)
        dev = SerialLedDevice(cfg, FakeClock(T0), render, link_options=LinkOptions())
        dev.start()
        try:
            dev.link.wait_ready(5)
            latencies = []
            for i in range(iterations):
                state = states[i % 2]
                occ = Occupancy(at=T0, state=state, since=None, until=None, current=None,
                                next=())
                v = RoomView(open_id="omm", name="3F", occupancy=occ, stale=False, as_of=T0,
                             timezone="UTC")
                n = len(sim.received)
                t0 = time.perf_counter()
                dev.show(v)
                arrived = wait(lambda n=n: [t for t, m in sim.received[n:]  # type: ignore[misc]
                                            if isinstance(m, pp.SetLed)], 5, "a SET_LED frame")
                latencies.append((arrived[0] - t0) * 1000)
                wait(lambda: dev.health().online, 5, "the device to be online")
        finally:
            dev.close()
    print(f"LED: show() -> SET_LED frame read on the pty, {iterations} changes: "
          f"p50 {median(latencies):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
          f"max {max(latencies):.2f} ms (target p99 <= 20 ms)")


def main() -> None:
    print(f"machine: {machine()}")
    bench_images()
    bench_led()


if __name__ == "__main__":
    main()
