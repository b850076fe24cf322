"""The check-in rules as pure functions, and what bad input to the control socket and the release
helper gets: one line, nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from display.checkin.control import ControlServer, NoNodeError, request
from display.checkin.mqtt import parse_action
from display.checkin.policy import (
    RoomPolicy,
    back_to_back,
    is_series,
    release_at,
    room_policy,
)
from display.checkin.service import Action, Result, _done
from display.config import CheckinMode, parse_config
from display.model import Booking

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def booking(uid: str, start: datetime, end: datetime, organizer: str | None = "ou_a",
            original_time: int = 0) -> Booking:
    return Booking(event_id=uid, uid=uid, original_time=original_time, start=start, end=end,
                   organizer_open_id=organizer)


def test_allow_list_and_per_room_override(tmp_path: Path) -> None:
    config = parse_config("""
[checkin]
mode = "release"
window_minutes = 5
rooms = ["omm_a", "omm_b"]
[[rooms]]
open_id = "omm_a"
[[rooms]]
open_id = "omm_b"
checkin = "dry-run"
checkin_window_minutes = 15
[[rooms]]
open_id = "omm_c"
checkin = "release"
""", tmp_path / "c.toml")
    a, b, c = config.rooms
    assert room_policy(config, a) == RoomPolicy(CheckinMode.RELEASE, timedelta(minutes=5))
    assert room_policy(config, b) == RoomPolicy(CheckinMode.DRY_RUN, timedelta(minutes=15))
    assert room_policy(config, c).mode is CheckinMode.OFF  # not on the allow-list
    assert room_policy(parse_config("", tmp_path / "d.toml"), a).mode is CheckinMode.OFF


def test_back_to_back_needs_the_same_organizer_and_no_gap() -> None:
    first = booking("a", T, T + H)
    same = booking("b", T + H, T + 2 * H)
    gap = booking("c", T + H + timedelta(minutes=5), T + 2 * H)
    other = booking("d", T + H, T + 2 * H, organizer="ou_b")
    unknown = booking("e", T + H, T + 2 * H, organizer=None)
    day = [first, same, gap, other, unknown]
    assert back_to_back(same, day)
    assert not back_to_back(gap, day)
    assert not back_to_back(other, day)
    assert not back_to_back(unknown, day)
    assert not back_to_back(first, day)


def test_series_occurrences_and_exceptions() -> None:
    one = booking("s", T, T + H)
    assert not is_series(one, [one])
    assert is_series(one, [one, booking("s", T + 24 * H, T + 25 * H)])
    assert is_series(booking("x", T, T + H, original_time=int(T.timestamp())), [])


def test_release_time_from_start_or_first_seen_and_never_after_the_end() -> None:
    b = booking("a", T, T + H)
    w = timedelta(minutes=10)
    assert release_at(b, T - timedelta(minutes=30), w) == T + w
    assert release_at(b, T + timedelta(minutes=20), w) == T + timedelta(minutes=30)
    assert release_at(booking("short", T, T + timedelta(minutes=10)), T, w) is None


def test_mqtt_payloads() -> None:
    assert parse_action(b" IN\n") is Action.IN
    assert parse_action(b"end") is Action.END
    assert parse_action(b"PRESS") is None
    assert parse_action(b"\xff") is None


def test_control_socket_refuses_bad_requests_in_one_line(tmp_path: Path) -> None:
    seen: list[tuple[str, Action]] = []

    def handler(room: str, action: Action) -> object:
        seen.append((room, action))
        return _done(Result(True, f"{action.value} {room}"))

    with_state = tmp_path / "state"
    with_state.mkdir()
    try:
        request(with_state, "omm_a", Action.IN)
    except NoNodeError as exc:
        assert "no node is running" in str(exc)
    else:
        raise AssertionError("no node runs")
    server = ControlServer(tmp_path / "run" / "control.sock", with_state,
                           handler)  # type: ignore[arg-type]
    assert server.start()
    try:
        assert request(with_state, "omm_a", Action.END) == Result(True, "end omm_a")
        for bad in (b"not json\n", b'{"room": "omm_a", "action": "maybe"}\n', b"[]\n",
                    b'{"room": 3, "action": "in"}\n'):
            assert server.answer(bad).ok is False
        assert seen == [("omm_a", Action.END)]
    finally:
        server.close()
    assert not (with_state / "control.sock").exists()


def test_release_helper_refuses_a_bad_request_and_sends_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[feishu]\napp_id = 'a'\napp_secret = 'b'\n"
                      "domain = 'http://127.0.0.1:9'\n")
    for body, expected in (("{", "bad request"),
                           (json.dumps({"room_id": "omm_a", "uid": "u", "original_time": 0,
                                        "start": 1, "end": 2, "status": "ACCEPTED"}),
                            "request.status must be one of")):
        done = subprocess.run([sys.executable, "-m", "display.intake.feishu.release", "-c",
                               str(config)], input=body, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2
        answer = json.loads(done.stdout)
        assert answer["outcome"] == "failed" and expected in answer["detail"]
