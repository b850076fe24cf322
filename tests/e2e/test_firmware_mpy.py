"""The real firmware (``hardware/firmware/main.py``) on MicroPython's unix port, heap limited
to a Pico's, behind a pty, driven by the real agent: node, device workers, serial link.

Every panel family the firmware has a driver for draws the booked room's sign into its
controller RAM (read back from the recording SPI stand-in, decoded as Waveshare's drivers lay
the RAM out), and the LED board turns red.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import serial

from display.config import Config, DeviceConfig, parse_config
from display.devices.factory import make_device
from display.devices.serial_panel import SerialEinkDevice, SerialLedDevice
from display.encode import panel_protocol as pp
from display.encode.planes import planes_bytes
from display.intake.sink import EventSink
from display.model import Occupancy, RoomView, State
from display.node import Node
from display.outputs import LedOutput, Palette
from display.render.eink import render_sign
from display.store import ScheduleStore
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.firmware import FIRMWARE_DIR, PANELS, MicroBoard, tool
from display.testing.waiting import wait_for
from display.transport.serial_link import BoardReset, LinkOptions, PanelLink

START = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
MODELS = list(PANELS)


LED = {State.FREE: LedOutput((0, 192, 0)), State.BUSY: LedOutput((255, 0, 0), brightness=255)}


def room(state: State) -> RoomView:
    occ = Occupancy(at=START, state=state, since=None, until=None, current=None, next=())
    return RoomView(open_id="omm_a", name="3F", occupancy=occ, stale=False, as_of=START,
                    timezone="Asia/Shanghai")


def sign_planes(view: RoomView, config: Config) -> bytes:
    black, red = planes_bytes(render_sign(view, config.rooms[0].devices[1]))
    return black + (red or b"")


class Door:
    """A room with an LED board and a sign board, both running main.py, and the node."""

    def __init__(self, tmp_path: Path, model: str, store: ScheduleStore,
                 sign_board: MicroBoard, led_board: MicroBoard) -> None:
        _family, width, height, palette = PANELS[model]
        rotation = 90 if height > width else 0
        self.config = parse_config(f"""
[node]
timezone = "Asia/Shanghai"
language = "zh+en"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "3F 大会议室"
[[rooms.devices]]
id = "led"
kind = "led"
url = "{led_board.path}"
[[rooms.devices]]
id = "sign"
kind = "eink"
url = "{sign_board.path}"
size = "{width}x{height}"
palette = "{palette}"
rotation = {rotation}
""", tmp_path / "room-display.toml")
        self.clock = FakeClock(START)
        self.node = Node(self.config, store, self.clock, make_device)
        self.sink = EventSink(store, self.clock, self.node.notify)
        self.sign_board, self.led_board = sign_board, led_board

    @property
    def sign(self) -> SerialEinkDevice:
        device = self.node.devices()["sign"][1]
        assert isinstance(device, SerialEinkDevice)
        return device

    def expected(self) -> bytes:
        return sign_planes(self.node.views()["omm_a"], self.config)

    def ram(self) -> bytes:
        black, red = self.sign_board.controller().planes()
        return black + (red or b"")

    def led(self) -> tuple[int, int, int] | None:
        leds = self.led_board.leds()
        return leds[-1] if leds else None


@pytest.fixture
def door_factory(tmp_path: Path) -> Iterator[Any]:
    opened: list[Any] = []

    def make(model: str, **sign_kw: Any) -> Door:
        sign_board = MicroBoard(tmp_path, model, name="sign-board", led_count=0, **sign_kw)
        opened.append(sign_board)
        led_board = MicroBoard(tmp_path, None, name="led-board")
        opened.append(led_board)
        store = ScheduleStore(tmp_path / "state" / "s.db")
        opened.append(store)
        door = Door(tmp_path, model, store, sign_board, led_board)
        opened.append(door.node)
        return door

    yield make
    for thing in reversed(opened):
        thing.close()


def book(door: Door) -> None:
    door.sink.accept(envelope(start=START, end=START + timedelta(hours=1), event_time=1))
    door.node.tick()


def cancel(door: Door) -> None:
    door.sink.accept(envelope("deleted", start=START, end=START + timedelta(hours=1),
                              event_time=2))
    door.node.tick()


@pytest.mark.parametrize("model", MODELS)
def test_booking_turns_led_red_and_controller_ram_into_the_sign(door_factory: Any,
                                                                 model: str) -> None:
    door = door_factory(model)
    door.node.tick()
    wait_for(lambda: door.ram() == door.expected(), 30, what=f"{model}: the free sign in RAM")
    book(door)
    wait_for(lambda: (led := door.led()) is not None and led[0] > 0 and led[1:] == (0, 0), 30,
             what="the LED board writes red")
    busy = door.expected()
    wait_for(lambda: door.ram() == busy, 30, what=f"{model}: the busy sign in controller RAM")
    ctl = door.sign_board.controller()
    assert ctl.refreshes >= 2, "each sign was refreshed on the panel"
    # A state change goes as a delta where the board announced it keeps a base (HELLO).
    hello = door.sign.link.hello
    assert hello is not None and hello.max_image is not None
    cancel(door)
    free = door.expected()
    assert free != busy
    wait_for(lambda: door.ram() == free, 30, what=f"{model}: the free sign after the change")
    assert door.sign.deltas == (2 if hello.takes_delta else 0)
    assert door.sign_board.alive and door.led_board.alive
    assert door.sign_board.errors() == ""


@pytest.mark.parametrize("compiled", [False, True], ids=["source", "mpy"])
def test_800x480_bwr_fits_the_pico_heap_without_a_delta_base(door_factory: Any,
                                                             compiled: bool) -> None:
    # As source (compiled on the board at boot) and as mpy-cross output, as flashed.
    door = door_factory("7in5b_V2", compiled=compiled)
    door.node.tick()
    wait_for(lambda: door.ram() == door.expected(), 60, what="800x480 bwr sign in RAM")
    hello = door.sign.link.hello
    assert hello is not None and not hello.takes_delta  # 96,000 bytes of planes: no base kept
    assert door.sign_board.errors() == ""


def test_a_board_whose_buffers_do_not_fit_announces_less_and_still_draws(
        door_factory: Any) -> None:
    # Asked for a 96,000-byte delta base and a 120 KB image buffer on a 190 KB heap, the
    # firmware gives up what does not fit at boot and says so in HELLO.
    door = door_factory("7in5b_V2", extra_config="DELTA_MAX = 200000\nMAX_IMAGE = 120000\n")
    door.node.tick()
    wait_for(lambda: door.sign.link.hello is not None, 20, what="HELLO")
    hello = door.sign.link.hello
    assert hello is not None
    assert not hello.takes_delta and hello.image_limit <= 120000, hello
    wait_for(lambda: door.ram() == door.expected(), 60, what="the sign drawn anyway")
    assert door.sign_board.alive


def test_board_reset_mid_image_ends_with_the_right_sign(door_factory: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    door = door_factory("2in9b_V3", extra_config="MAX_FRAME = 64\n")
    link = door.sign.link
    real_request = link.request
    chunks = 0

    def request(msg: pp.Message, generation: int | None = None) -> pp.Ack:
        nonlocal chunks
        if isinstance(msg, pp.ImageChunk):
            chunks += 1
            if chunks == 5:
                door.sign_board.reset()  # power cut with four chunks in the board's RAM
        return real_request(msg, generation)

    monkeypatch.setattr(link, "request", request)
    door.node.tick()
    wait_for(lambda: door.ram() == door.expected(), 60, what="the sign after the reset")
    ctl = door.sign_board.controller()
    assert ctl.boots == 2 and chunks > 5
    assert door.sign_board.errors() == ""


def test_board_answers_during_a_long_refresh_and_draws_the_next_image_after_it(
        tmp_path: Path) -> None:
    # BUSY stays busy for ~300 polls (> 3 s) after each refresh command, like a big panel; the
    # LED on the same board must change meanwhile, and the host must not think it hung.
    with MicroBoard(tmp_path, "2in9_V2", refresh_polls=300) as board:
        link = PanelLink(str(board.path), LinkOptions()).start()
        clock = FakeClock(START)
        sign_cfg = DeviceConfig(id="sign", kind="eink", url=str(board.path), protocol="panel",
                                size=(128, 296), palette=Palette.BW, rotation=90)
        led_cfg = DeviceConfig(id="led", kind="led", url=str(board.path), protocol="panel")
        sign = SerialEinkDevice(sign_cfg, clock, lambda v: render_sign(v, sign_cfg), link=link)
        led = SerialLedDevice(led_cfg, clock, lambda v: LED[v.occupancy.state], link=link)
        sign.start()
        led.start()
        try:
            link.wait_ready(10)
            sign.show(room(State.FREE))
            wait_for(lambda: board.controller().refreshes == 1, 20, what="first refresh begun")
            generation = link.generation  # (after the boot HELLO, which may cross our request)
            started = time.monotonic()
            led.show(room(State.BUSY))
            sign.show(room(State.BUSY))
            wait_for(lambda: board.leds() and board.leds()[-1] == (255, 0, 0), 10,
                     what="red LED while the panel is still refreshing")
            assert time.monotonic() - started < 2.5  # well inside the 3 s refresh
            expected = planes_bytes(render_sign(room(State.BUSY), sign_cfg))[0]
            wait_for(lambda: board.controller().planes()[0] == expected, 30,
                     what="the busy sign, drawn after the first refresh")
            assert link.generation == generation  # never declared hung, nothing resent
            assert board.controller().boots == 1 and board.errors() == ""
        finally:
            led.close()
            sign.close()
            link.close()


def test_garbage_on_the_line_leaves_the_board_answering(tmp_path: Path) -> None:
    with MicroBoard(tmp_path, "2in9_V2") as board:
        port = serial.Serial(str(board.path), timeout=0.2)
        try:
            rng = random.Random(7)
            noise = bytes(rng.randrange(256) for _ in range(3000))
            oversized = b"\x00" + b"\x55" * 5000 + b"\x00"
            body = b"\x01\x10\x05\x01\x02\x03\x00\x80\x00\x00"  # SET_LED, wrong CRC
            bad_crc = b"\x00" + pp.cobs_encode(body) + b"\x00"
            port.write(noise + oversized + bad_crc + b"\x00\x03\x03\x03")
            port.write(pp.encode_frame(pp.HelloRequest(9)))
            decoder = pp.FrameDecoder()
            replies: list[pp.Message] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(
                    isinstance(m, pp.Hello) and m.seq == 9 for m in replies):
                replies += decoder.feed(port.read(256))
            assert any(isinstance(m, pp.Hello) and m.seq == 9 for m in replies), replies
            port.write(pp.encode_frame(pp.SetLed(10, 255, 0, 0, 0, 255)))
            wait_for(lambda: any(isinstance(m, pp.Ack) and m.seq == 10
                                 for m in decoder.feed(port.read(64))), 10, what="ACK")
        finally:
            port.close()
        assert board.alive
        assert board.leds()[-1] == (255, 0, 0)
        assert board.errors() == ""


@pytest.mark.slow
def test_the_button_reaches_the_host_once_and_the_leds_flash_when_it_did(
        tmp_path: Path) -> None:
    """main.py's button on the unix port, through the real link: a short press checks in, one
    held 3 s ends the meeting (reported while still held), each handed on once, and the LEDs
    flash white when the host's ACK is back."""
    with MicroBoard(tmp_path, None, name="led-board") as board:
        link = PanelLink(str(board.path), LinkOptions(hello_interval=0.2)).start()
        heard: list[tuple[float, pp.Press]] = []
        link.add_button_listener(lambda press: heard.append((time.monotonic(), press)))
        try:
            hello, _gen = link.wait_ready(15)
            assert hello.has_button and hello.firmware == (1, 2, 0)
            for _attempt in range(3):  # the boot HELLO may overtake the answer to ours
                try:
                    link.request(pp.SetLed(0, 0, 192, 0, 0, 128))  # free: steady green
                    break
                except BoardReset:
                    link.wait_ready(15)
            white_before = board.leds().count((255, 255, 255))
            board.press()  # a person's short press: held 0.3 s
            wait_for(lambda: len(heard) == 1, 10, what="the check-in at the host")
            assert heard[0][1] is pp.Press.CHECK_IN
            wait_for(lambda: board.leds().count((255, 255, 255)) > white_before, 5,
                     what="the white flash of the ACK")
            wait_for(lambda: board.leds()[-1] == (0, 96, 0), 5, what="back to green")

            board.hold_button(True)
            held = time.monotonic()
            wait_for(lambda: len(heard) == 2, 10, what="the end, while still held")
            assert heard[1][1] is pp.Press.END
            assert 2.9 <= heard[1][0] - held <= 4.5
            board.hold_button(False)
            # Releasing a long press sends nothing more; nothing was handed on twice.
            link.request(pp.SetLed(0, 255, 0, 0, 0, 255))
            assert [p for _t, p in heard] == [pp.Press.CHECK_IN, pp.Press.END]
            assert link.presses == 2
        finally:
            link.close()
        assert board.errors() == ""


def test_mpy_cross_compiles_every_firmware_file(tmp_path: Path) -> None:
    files = sorted(FIRMWARE_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"main.py", "panel_board.py", "epd_base.py",
                                       "epd_ssd1680.py", "epd_uc8151.py", "epd_uc8179.py"}
    for source in files:
        out = tmp_path / (source.stem + ".mpy")
        done = subprocess.run([tool("mpy-cross"), "-o", str(out), str(source)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{source.name}: {done.stderr}"
        assert out.stat().st_size > 0
    assert os.path.getsize(tmp_path / "panel_board.mpy") > 1000
