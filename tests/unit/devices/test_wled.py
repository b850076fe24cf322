"""``protocol = "wled"``: the JSON state WLED gets, and the serial device on a pty."""

from __future__ import annotations

import json
import os
import select
import time
import tty
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from display.config import DeviceConfig
from display.devices.wled import SerialWledDevice
from display.encode.wled import wled_line, wled_state
from display.model import Occupancy, RoomView, State
from display.outputs import Effect, LedOutput
from display.testing.clock import FakeClock
from display.testing.waiting import wait_for

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def view(state: State) -> RoomView:
    occ = Occupancy(at=T0, state=state, since=None, until=None, current=None, next=())
    return RoomView(open_id="omm_1", name="3F", occupancy=occ, stale=False, as_of=T0,
                    timezone="UTC")


def render(v: RoomView) -> LedOutput:
    if v.occupancy.state is State.BUSY:
        return LedOutput((255, 0, 0), Effect.STEADY, 200)
    return LedOutput((0, 192, 0), Effect.PULSE, 100)


def test_state_payloads() -> None:
    assert wled_state(LedOutput((255, 0, 0), Effect.STEADY, 200)) == {
        "on": True, "bri": 200,
        "seg": [{"col": [[255, 0, 0], [0, 0, 0]], "fx": 0, "sx": 128, "pal": 0}]}
    assert wled_state(LedOutput((1, 2, 3), Effect.BLINK))["seg"][0]["fx"] == 1
    assert wled_state(LedOutput((1, 2, 3), Effect.PULSE))["seg"][0]["fx"] == 2
    assert wled_state(LedOutput((1, 2, 3), brightness=0))["on"] is False


def test_blink_and_breathe_run_at_the_protocol_periods_on_wled() -> None:
    # WLED's own arithmetic (wled00/FX.cpp), written out here independently of the module:
    # blink(): cycle = (255 - speed) * 20 + 2 * FRAMETIME, FRAMETIME = 1000 / 42 (int) = 23 ms;
    # mode_breath(): one breath = 65536 / ((speed >> 3) + 10) ms.
    blink = wled_state(LedOutput((255, 0, 0), Effect.BLINK))["seg"][0]
    assert abs((255 - blink["sx"]) * 20 + 2 * 23 - 1000) <= 20  # 1 Hz, as PROTOCOL.md says
    assert blink["ix"] == 128  # on for half the cycle
    pulse = wled_state(LedOutput((0, 192, 0), Effect.PULSE))["seg"][0]
    assert abs(65536 / ((pulse["sx"] >> 3) + 10) - 2000) <= 40  # 2 s breathing
    # The old fixed sx = 128 was a 2.6 s blink: the mistake this guards against.
    assert blink["sx"] != 128


def test_effects_draw_the_state_colour_whatever_palette_the_board_had() -> None:
    for effect in (Effect.BLINK, Effect.PULSE):
        seg = wled_state(LedOutput((255, 0, 0), effect))["seg"][0]
        assert seg["pal"] == 0  # "Default": the segment colour, not a palette
        assert seg["col"] == [[255, 0, 0], [0, 0, 0]]  # between flashes / breaths: dark


def test_line_is_compact_json_with_a_newline() -> None:
    line = wled_line(LedOutput((0, 192, 0)))
    assert line == (b'{"on":true,"bri":128,"seg":[{"col":[[0,192,0],[0,0,0]],"fx":0,"sx":128,'
                    b'"pal":0}]}\n')


class Pty:
    """The WLED end of a pty, reached through a symlink that can disappear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master: int | None = None
        self.slave: int | None = None
        self.buffer = b""

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path.symlink_to(os.ttyname(self.slave))

    def unplug(self) -> None:
        self.path.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def lines(self) -> list[bytes]:
        assert self.master is not None
        while select.select([self.master], [], [], 0)[0]:
            self.buffer += os.read(self.master, 4096)
        return self.buffer.splitlines(keepends=True)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "wled")
    yield p
    p.unplug()


def device(path: Path, keepalive: float = 0.2) -> SerialWledDevice:
    cfg = DeviceConfig(id="wled-1", kind="led", url=f"{path}?baud=115200", protocol="wled")
    dev = SerialWledDevice(cfg, FakeClock(T0), render, keepalive=keepalive)
    dev.start()
    return dev


def test_state_reaches_the_wled_port_as_json_lines(pty: Pty) -> None:
    pty.plug()
    dev = device(pty.path)
    try:
        dev.show(view(State.BUSY))
        wait_for(lambda: pty.lines(), what="a line")
        first = json.loads(pty.lines()[0])
        assert first == wled_state(render(view(State.BUSY)))
        dev.show(view(State.FREE))
        wait_for(lambda: any(json.loads(x)["seg"][0]["fx"] == 2 for x in pty.lines()),
                 what="breathing green")
        assert all(x.endswith(b"\n") for x in pty.lines())
        assert dev.health().online
    finally:
        dev.close()


def test_missing_port_is_offline_then_state_arrives_when_plugged(pty: Pty) -> None:
    dev = device(pty.path)
    try:
        dev.show(view(State.BUSY))
        health = wait_for(lambda: (h := dev.health()).error and h, what="offline")
        assert not health.online
        assert health.error == f"serial port {pty.path} not present (unplugged?)"
        pty.plug()
        wait_for(lambda: pty.lines(), what="state after plugging in")
        wait_for(lambda: dev.health().online, what="online")
        assert json.loads(pty.lines()[-1])["seg"][0]["col"][0] == [255, 0, 0]
    finally:
        dev.close()


def test_opening_the_port_leaves_dtr_and_rts_low(pty: Pty, monkeypatch: pytest.MonkeyPatch) -> None:
    import serial

    seen: list[tuple[bool | None, bool | None]] = []
    real = serial.serial_for_url

    def spy(*args: Any, **kw: Any) -> Any:
        port = real(*args, **kw)
        assert kw.get("do_not_open"), "opened before DTR/RTS could be set"
        real_open = port.open

        def open_() -> None:
            seen.append((port.dtr, port.rts))
            real_open()

        port.open = open_
        return port

    monkeypatch.setattr(serial, "serial_for_url", spy)
    pty.plug()
    dev = device(pty.path, keepalive=30)
    try:
        dev.show(view(State.BUSY))
        wait_for(lambda: pty.lines(), what="a line")
        assert seen == [(False, False)]  # an ESP dev board's auto-reset circuit stays quiet
    finally:
        dev.close()


def test_unplug_is_noticed_at_once_and_a_replugged_board_is_right_within_2_s(pty: Pty) -> None:
    pty.plug()
    dev = device(pty.path, keepalive=30)  # the keepalive must not be what brings it back
    try:
        dev.show(view(State.BUSY))
        wait_for(lambda: dev.health().online, what="online")
        pty.unplug()
        unplugged = time.monotonic()
        wait_for(lambda: not dev.health().online, 5, what="offline without a new view")
        assert time.monotonic() - unplugged < 1.0
        pty.buffer = b""
        pty.plug()
        plugged = time.monotonic()
        wait_for(lambda: pty.lines(), 5, what="the state on the replugged board")
        assert time.monotonic() - plugged < 2.0
        assert json.loads(pty.lines()[-1])["seg"][0]["col"][0] == [255, 0, 0]
        wait_for(lambda: dev.health().online, what="online again")
        # A board that was still booting missed the first line: it comes again while it boots.
        wait_for(lambda: len(pty.lines()) >= 2, 3, what="a second line during the boot window")
    finally:
        dev.close()
