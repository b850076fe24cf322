"""The agent's serial devices against the reference firmware on a pty.

The board is :mod:`display.testing.boardsim`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from display.config import DeviceConfig
from display.devices.serial_panel import SerialEinkDevice, SerialLedDevice
from display.encode import panel_protocol as pp
from display.errors import DeviceError
from display.model import Occupancy, RoomView, State
from display.outputs import Effect, LedOutput, Palette, SignImage
from display.testing.boardsim import BoardSim
from display.testing.clock import FakeClock
from display.testing.firmware import panel_board
from display.testing.waiting import wait_for
from display.transport.serial_link import LinkOptions, PanelLink, split_baud

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
FAST = LinkOptions(ack_timeout=0.1, end_timeout=0.3, retries=3, hello_interval=0.1,
                   hello_timeout=0.6, reopen_initial=0.02, reopen_max=0.1)
COLOURS = {State.FREE: (0, 192, 0), State.SOON: (255, 160, 0), State.BUSY: (255, 0, 0),
           State.ENDING: (255, 0, 192)}


def view(state: State = State.FREE, name: str = "3F East") -> RoomView:
    occ = Occupancy(at=T0, state=state, since=None, until=None, current=None, next=())
    return RoomView(open_id="omm_1", name=name, occupancy=occ, stale=False, as_of=T0,
                    timezone="UTC")


def render_led(v: RoomView) -> LedOutput:
    effect = Effect.PULSE if v.occupancy.state is State.ENDING else Effect.STEADY
    return LedOutput(COLOURS[v.occupancy.state], effect, brightness=128)


def sign_renderer(size: tuple[int, int], noisy: bool = False,
                  red: bool = False) -> Callable[[RoomView], SignImage]:
    """A stand-in for the real renderer: room name and state; ``noisy`` defeats compression."""

    def render(v: RoomView) -> SignImage:
        black = Image.new("1", size, 1)
        draw = ImageDraw.Draw(black)
        draw.rectangle((2, 2, size[0] - 3, size[1] - 3), outline=0)
        draw.text((8, 8), f"{v.name}: {v.occupancy.state.value}", fill=0)
        if noisy:
            rng = random.Random(f"{v.name}{v.occupancy.state}")
            noise = Image.frombytes("1", (size[0], size[1] // 2), rng.randbytes(
                (size[0] + 7) // 8 * (size[1] // 2)))
            black.paste(noise, (0, size[1] // 2))
        red_plane = None
        if red:
            red_plane = Image.new("1", size, 1)
            ImageDraw.Draw(red_plane).rectangle((size[0] - 20, 0, size[0] - 1, 19), fill=0)
        return SignImage(black, red_plane)

    return render


def expected_planes(sign: SignImage) -> bytes:
    """Bit planes computed pixel by pixel, independently of the encoder under test."""
    out = bytearray()
    for plane in (sign.black, sign.red):
        if plane is None:
            continue
        w, h = plane.size
        px = plane.load()
        for y in range(h):
            for x0 in range(0, w, 8):
                byte = 0
                for bit in range(8):
                    x = x0 + bit
                    if x < w and px[x, y] == 0:
                        byte |= 0x80 >> bit
                out.append(byte)
    return bytes(out)


def config(path: Path, kind: str = "led", size: tuple[int, int] = (296, 128),
           palette: Palette = Palette.BW, **kw: int) -> DeviceConfig:
    return DeviceConfig(id=f"{kind}-1", kind=kind, url=str(path), protocol="panel", size=size,
                        palette=palette, **kw)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[BoardSim]:
    with BoardSim(tmp_path) as board:
        yield board


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def led_device(sim: BoardSim, clock: FakeClock) -> SerialLedDevice:
    dev = SerialLedDevice(config(sim.path), clock, render_led, link_options=FAST)
    dev.start()
    return dev


def eink_device(sim: BoardSim, clock: FakeClock, render: Callable[[RoomView], SignImage],
                **kw: int) -> SerialEinkDevice:
    size = (sim.caps.width, sim.caps.height)
    dev = SerialEinkDevice(config(sim.path, "eink", size, Palette(sim.caps.palette), **kw),
                           clock, render, link_options=FAST)
    dev.start()
    return dev


# -- LED -------------------------------------------------------------------------------------------


def test_booking_turns_the_board_led_red_and_health_is_online(sim: BoardSim,
                                                               clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        dev.show(view(State.FREE))
        wait_for(lambda: sim.led == (0, 192, 0, 0, 128), what="green LED")
        dev.show(view(State.ENDING))
        wait_for(lambda: sim.led == (255, 0, 192, 2, 128), what="pulsing magenta LED")
        health = wait_for(lambda: (h := dev.health()).online and h, what="online")
        assert health.error is None
        assert health.last_update == T0
        assert health.details["board"] == "296x128 bw, 8 LEDs, firmware 1.2.0"
    finally:
        dev.close()


def test_led_state_unchanged_is_not_resent(sim: BoardSim, clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        for _ in range(3):
            dev.show(view(State.BUSY))
        wait_for(lambda: sim.led[:3] == (255, 0, 0), what="red LED")
        wait_for(lambda: dev.health().online, what="online")
        assert len(sim.messages(pp.SetLed)) == 1
    finally:
        dev.close()


def test_lost_acks_are_retried_with_the_same_seq_and_applied_once(sim: BoardSim,
                                                                   clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        wait_for(lambda: dev.link.online, what="HELLO")
        sim.drop_replies = 2
        dev.show(view(State.BUSY))
        wait_for(lambda: dev.health().online, what="online after retries")
        sent = sim.messages(pp.SetLed)
        assert len(sent) == 3 and len({m.seq for m in sent}) == 1
        assert sim.board.duplicates == 2
        assert sim.board.led_version == 1
        assert sim.led[:3] == (255, 0, 0)
    finally:
        dev.close()


def test_garbage_on_the_line_is_ignored(sim: BoardSim, clock: FakeClock) -> None:
    sim.noise = b"\xff\x13boot: rst cause 4\r\n\x00\x05\x01\x02"
    sim.inject(b"\x00garbage\xfe\x00\x00\x01")
    dev = led_device(sim, clock)
    try:
        dev.show(view(State.SOON))
        wait_for(lambda: sim.led == (255, 160, 0, 0, 128), what="amber LED")
        wait_for(lambda: dev.health().online, what="online")
        assert dev.link.decoder.stats.dropped > 0
    finally:
        dev.close()


def test_silent_board_shows_offline_with_a_clear_error(tmp_path: Path,
                                                        clock: FakeClock) -> None:
    with BoardSim(tmp_path, plugged=False) as sim:
        sim.silent = True
        sim.plug()
        dev = led_device(sim, clock)
        try:
            dev.show(view(State.BUSY))
            health = wait_for(lambda: "HELLO" in ((h := dev.health()).error or "") and h,
                              what="an error")
            assert not health.online
            assert health.error == (f"no HELLO from board on {sim.path} within 0.6 s "
                                    "(wrong port or baud, or no firmware?)")
            assert sim.messages(pp.HelloRequest)
        finally:
            dev.close()


def test_board_that_stops_answering_goes_offline_then_recovers(sim: BoardSim,
                                                               clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        dev.show(view(State.FREE))
        wait_for(lambda: dev.health().online, what="online")
        sim.silent = True
        dev.show(view(State.BUSY))
        health = wait_for(lambda: (h := dev.health()).error and h, what="an error")
        assert not health.online
        assert "did not answer SetLed after 4 tries" in (health.error or "")
        sim.silent = False
        wait_for(lambda: sim.led[:3] == (255, 0, 0), what="red LED after recovery")
        wait_for(lambda: dev.health().online, what="online again")
    finally:
        dev.close()


def test_device_path_missing_is_offline_quietly_then_online_when_plugged(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with BoardSim(tmp_path, plugged=False) as sim:
        dev = led_device(sim, clock)
        try:
            dev.show(view(State.BUSY))
            health = wait_for(lambda: (h := dev.health()).error and h, what="offline")
            assert not health.online
            assert health.error == f"serial port {sim.path} not present (unplugged?)"
            wait_for(lambda: dev.link.open_attempts >= 5, what="several attempts to open")
            warnings = [r for r in caplog.records if r.levelname == "WARNING"]
            sim.plug()
            wait_for(lambda: sim.led[:3] == (255, 0, 0), what="red LED")
            wait_for(lambda: dev.health().online, what="online")
            # Retrying the open many times must not have logged a warning each time.
            assert len(warnings) <= 1
        finally:
            dev.close()


def test_unplug_replug_redraws_the_led_without_restarting(sim: BoardSim,
                                                          clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        dev.show(view(State.BUSY))
        wait_for(lambda: dev.health().online, what="online")
        sim.unplug()
        wait_for(lambda: not dev.health().online, what="offline")
        sim.reset()  # replugging USB power-cycles the board: LEDs dark
        sim.plug()
        wait_for(lambda: sim.led[:3] == (255, 0, 0), what="LED redrawn")
        wait_for(lambda: dev.health().online, what="online")
    finally:
        dev.close()


# -- e-ink -----------------------------------------------------------------------------------------


def test_image_reaches_the_board_intact(sim: BoardSim, clock: FakeClock) -> None:
    render = sign_renderer((296, 128))
    dev = eink_device(sim, clock, render)
    try:
        dev.show(view(State.BUSY))
        expected = expected_planes(render(view(State.BUSY)))
        wait_for(lambda: sim.image_planes == expected, what="image on the board")
        assert sim.image.full_refresh
        begin = sim.messages(pp.ImageBegin)[0]
        assert begin.length < len(expected) * 0.15
    finally:
        dev.close()


def test_bwr_image_has_both_planes(tmp_path: Path, clock: FakeClock) -> None:
    caps = panel_board.Capabilities(width=400, height=300, palette="bwr")
    with BoardSim(tmp_path, caps) as sim:
        render = sign_renderer((400, 300), red=True)
        dev = eink_device(sim, clock, render)
        try:
            dev.show(view(State.FREE))
            expected = expected_planes(render(view(State.FREE)))
            wait_for(lambda: sim.image_planes == expected, what="two planes on the board")
            assert sim.image.planes == 2
        finally:
            dev.close()


def test_unchanged_image_is_not_resent_and_refresh_policy(sim: BoardSim,
                                                          clock: FakeClock) -> None:
    render = sign_renderer((296, 128))
    dev = eink_device(sim, clock, render, full_refresh_every=2, full_refresh_hours=24)
    try:
        states = [State.FREE, State.FREE, State.SOON, State.BUSY, State.ENDING, State.ENDING]
        for state in states:
            # A second per view, so that the device's last_update says it is done with this
            # one: the board has the image before the device has counted it (partials, time
            # of the last full refresh), and the clock must not jump ahead of that count.
            clock.advance(timedelta(seconds=1))
            dev.show(view(state))
            expected = expected_planes(render(view(state)))
            wait_for(lambda e=expected: sim.image_planes == e, what=f"{state} image")
            wait_for(lambda: (h := dev.health()).online and h.last_update == clock.now(),
                     what=f"{state} applied")
        # FREE full, SOON partial, BUSY partial, ENDING full (2 partials since the last full).
        begins = sim.messages(pp.ImageBegin)
        assert [b.full_refresh for b in begins] == [True, False, False, True]
        # After the first image only the changed pixels travel (XOR delta).
        assert [b.delta for b in begins] == [False, True, True, True]
        clock.advance(timedelta(hours=25))
        dev.show(view(State.FREE))
        wait_for(lambda: len(sim.messages(pp.ImageBegin)) == 5, what="fifth image")
        assert sim.messages(pp.ImageBegin)[-1].full_refresh  # a day since the last full one
    finally:
        dev.close()


def test_board_without_the_delta_base_gets_the_whole_image(sim: BoardSim,
                                                          clock: FakeClock) -> None:
    render = sign_renderer((296, 128))
    dev = eink_device(sim, clock, render)
    try:
        dev.show(view(State.FREE))
        wait_for(lambda: sim.image_planes == expected_planes(render(view(State.FREE))))
        wait_for(lambda: dev.health().online, what="online")
        sim.board.base_planes = 0  # the board lost its delta base without rebooting
        dev.show(view(State.BUSY))
        expected = expected_planes(render(view(State.BUSY)))
        wait_for(lambda: sim.image_planes == expected, what="the whole image")
        assert [b.delta for b in sim.messages(pp.ImageBegin)] == [False, True, False]
    finally:
        dev.close()


def test_board_reset_mid_image_restarts_the_whole_state(tmp_path: Path,
                                                        clock: FakeClock) -> None:
    caps = panel_board.Capabilities(max_frame=128)
    with BoardSim(tmp_path, caps) as sim:
        render = sign_renderer((296, 128), noisy=True)
        led = led_device(sim, clock)
        dev = eink_device(sim, clock, render)
        # Both devices on one port would fight over it; this one shares the LED's link.
        dev.close()
        dev = SerialEinkDevice(config(sim.path, "eink"), clock, render, link=led.link)
        dev.start()
        try:
            led.show(view(State.BUSY))
            wait_for(lambda: sim.led[:3] == (255, 0, 0), what="red LED")
            sim.reset_on_chunk = 5
            dev.show(view(State.BUSY))
            expected = expected_planes(render(view(State.BUSY)))
            wait_for(lambda: sim.image_planes == expected, what="image after the reset")
            assert sim.boots == 2
            wait_for(lambda: sim.led[:3] == (255, 0, 0), what="LED sent again after the reset")
            wait_for(lambda: dev.health().online and led.health().online, what="both online")
        finally:
            dev.close()
            led.close()


def test_pty_closed_mid_transfer_and_recreated_ends_with_the_right_image(
        tmp_path: Path, clock: FakeClock) -> None:
    caps = panel_board.Capabilities(max_frame=64)
    with BoardSim(tmp_path, caps) as sim:
        render = sign_renderer((296, 128), noisy=True)
        dev = eink_device(sim, clock, render)
        try:
            dev.show(view(State.FREE))
            first = expected_planes(render(view(State.FREE)))
            wait_for(lambda: sim.image_planes == first, what="first image")
            wait_for(lambda: dev.health().online, what="online")
            sim.silent_on_chunk = 3  # hold the transfer mid-way so the unplug lands inside it
            dev.show(view(State.BUSY))
            wait_for(lambda: sim.silent, what="the third chunk")
            sim.unplug()
            wait_for(lambda: not dev.health().online, what="offline")
            sim.silent = False
            sim.plug()
            second = expected_planes(render(view(State.BUSY)))
            wait_for(lambda: sim.image_planes == second, what="the new image", timeout=10)
            wait_for(lambda: dev.health().online, what="online again")
            assert sim.boots == 1
        finally:
            dev.close()


def test_capability_mismatch_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    caps = panel_board.Capabilities(width=296, height=128, palette="bwr")
    with BoardSim(tmp_path, caps) as sim:
        dev = SerialEinkDevice(config(sim.path, "eink", (800, 480), Palette.BW), clock,
                               sign_renderer((800, 480)), link_options=FAST)
        dev.start()
        try:
            dev.show(view(State.BUSY))
            health = wait_for(lambda: (h := dev.health()).error and h, what="an error")
            assert health.error == "board reports 296x128 bwr, config says 800x480 bw"
            assert not health.online
            assert sim.messages(pp.ImageBegin) == []
        finally:
            dev.close()


def test_led_device_on_a_board_without_leds(tmp_path: Path, clock: FakeClock) -> None:
    with BoardSim(tmp_path, panel_board.Capabilities(led_count=0)) as sim:
        dev = led_device(sim, clock)
        try:
            dev.show(view(State.BUSY))
            health = wait_for(lambda: (h := dev.health()).error and h, what="an error")
            assert "reports no LEDs" in (health.error or "")
        finally:
            dev.close()


# -- URLs ------------------------------------------------------------------------------------------


def test_baud_is_taken_out_of_the_url() -> None:
    assert split_baud("/dev/ttyACM0") == ("/dev/ttyACM0", 115200)
    assert split_baud("/dev/ttyACM0?baud=921600") == ("/dev/ttyACM0", 921600)
    assert split_baud("socket://10.0.0.5:4000?baud=9600") == ("socket://10.0.0.5:4000", 9600)
    assert split_baud("loop://?logging=debug&baud=9600") == ("loop://?logging=debug", 9600)
    with pytest.raises(DeviceError, match="baud must be a positive integer"):
        split_baud("/dev/ttyACM0?baud=fast")


def test_link_over_a_baud_url_on_the_pty(sim: BoardSim) -> None:
    with PanelLink(f"{sim.path}?baud=921600", FAST) as link:
        hello, generation = link.wait_ready(2)
        assert (hello.width, hello.height, generation) == (296, 128, 1)
        assert link.baud == 921600


def test_image_larger_than_the_board_announces_is_not_sent(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    with BoardSim(tmp_path, panel_board.Capabilities(max_image=300)) as sim:
        render = sign_renderer((296, 128), noisy=True)  # compresses to well over 300 bytes
        dev = eink_device(sim, clock, render)
        try:
            dev.show(view(State.BUSY))
            health = wait_for(lambda: (h := dev.health()).error and h, what="an error")
            assert "the board on" in (health.error or "")
            assert "takes at most 300" in (health.error or "")
            assert sim.messages(pp.ImageBegin) == []  # refused here, not NAKed there
        finally:
            dev.close()


# -- the check-in button ---------------------------------------------------------------------------


def test_a_button_press_is_acked_and_handed_on_once_even_when_sent_again(
        tmp_path: Path, clock: FakeClock) -> None:
    with BoardSim(tmp_path, panel_board.Capabilities(button=True)) as sim:
        dev = led_device(sim, clock)
        heard: list[pp.Press] = []
        dev.link.add_button_listener(heard.append)
        try:
            wait_for(lambda: dev.link.online, timeout=5, what="board ready")
            frame = sim.press(panel_board.PRESS_CHECK_IN)
            wait_for(lambda: sim.board.button_acked == 1, timeout=5, what="the host's ACK")
            # The ACK was lost (as far as the board knows): the same frame comes again.
            sim.inject(frame)
            wait_for(lambda: len(sim.messages(pp.Ack)) == 2, timeout=5, what="second ACK")
            sim.press(panel_board.PRESS_END)
            wait_for(lambda: sim.board.button_acked == 2, timeout=5, what="ACK of the end")
            assert heard == [pp.Press.CHECK_IN, pp.Press.END]
            assert [a.seq for a in sim.messages(pp.Ack)] == [1, 1, 2]
            wait_for(lambda: dev.health().details.get("button", {}).get("last") == "end",
                     timeout=5, what="the press in the device's health")
            assert dev.health().details["button"]["presses"] == 2
            # A board that restarts numbers its presses from 1 again: not taken for a resend.
            sim.reset()
            wait_for(lambda: dev.link.generation >= 2, timeout=5, what="second session")
            sim.press(panel_board.PRESS_CHECK_IN)
            wait_for(lambda: len(heard) == 3, timeout=5, what="the press after the restart")
            assert heard[-1] is pp.Press.CHECK_IN
        finally:
            dev.close()


def test_a_board_without_a_button_shows_no_button_in_health(sim: BoardSim,
                                                            clock: FakeClock) -> None:
    dev = led_device(sim, clock)
    try:
        wait_for(lambda: dev.link.online, timeout=5, what="board ready")
        assert "button" not in dev.health().details
    finally:
        dev.close()
