"""``send-test-event`` without a whole node: the envelope is one the intake takes, rooms are
found by id or name, and every refusal is one line with nothing sent or stored."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.cli import main
from display.cli.send_test_event import (
    SendError,
    booking_uid,
    build_envelope,
    catches,
    commit_event,
    find_room,
    post_event,
)
from display.config import FeishuConfig, FeishuMode, Secret, parse_config
from display.errors import ConfigError
from display.intake.envelope import parse_envelope
from display.intake.supervisor import IntakeSupervisor
from display.model import EventKind
from display.store import ScheduleStore
from display.testing.intake_support import Recorder, write_config
from display.testing.waiting import wait_for

NOW = datetime(2030, 5, 6, 9, 30, 12, 345000, tzinfo=UTC)
CONFIG = """
[node]
timezone = "UTC"
[feishu]
mode = "webhook"
verification_token = "vt"
[[rooms]]
open_id = "omm_a"
name = "Lobby"
[[rooms]]
open_id = "omm_b"
name = "Twin"
[[rooms]]
open_id = "omm_c"
name = "Twin"
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_envelope_is_one_the_intake_takes_and_cancel_names_the_whole_test_series() -> None:
    feishu = FeishuConfig(verification_token=Secret("vt"), app_id="cli_x")
    start = NOW.replace(microsecond=0)
    book = build_envelope(feishu, "omm_a", cancel=False, start=start,
                          end=start + timedelta(minutes=30), event_time=NOW)
    event = parse_envelope(book)
    assert (event.kind, event.uid, event.room_ids) == (EventKind.CREATED, booking_uid("omm_a"),
                                                       ("omm_a",))
    assert event.original_time == int(start.timestamp())  # an occurrence: no targeted re-sync
    assert (event.start, event.end) == (start, start + timedelta(minutes=30))
    assert book["token"] == "vt" and book["event"]["app_id"] == "cli_x"
    cancel = parse_envelope(build_envelope(feishu, "omm_a", cancel=True, start=start,
                                           end=start, event_time=NOW))
    assert (cancel.kind, cancel.original_time, cancel.uid) == (EventKind.DELETED, 0, event.uid)
    assert cancel.uuid != event.uuid and cancel.event_time_ms > event.start.timestamp() * 1000


def test_rooms_by_id_or_unique_name(tmp_path: Path) -> None:
    config = parse_config(CONFIG, tmp_path / "c.toml")
    assert find_room(config, "Lobby").open_id == "omm_a"
    assert find_room(config, "omm_c").open_id == "omm_c"
    with pytest.raises(ConfigError, match="2 rooms are named 'Twin'"):
        find_room(config, "Twin")
    listed = r"no room 'omm_zz'.*'room-display map list'.*omm_a \(Lobby\)"
    with pytest.raises(ConfigError, match=listed):
        find_room(config, "omm_zz")


@pytest.mark.parametrize(("text", "args", "expected"), [
    (CONFIG.replace('[feishu]\nmode = "webhook"\nverification_token = "vt"\n', ""), ["omm_a"],
     "no Feishu intake"),
    (CONFIG.replace('verification_token = "vt"\n', ""), ["omm_a"],
     "feishu.verification_token: is not set"),
    (CONFIG, ["Twin"], "2 rooms are named"),
    (CONFIG, ["omm_a"], "no node is running"),
])
def test_refusals_are_one_line_and_store_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 text: str, args: list[str],
                                                 expected: str) -> None:
    path = _config(tmp_path, text)
    assert main(["send-test-event", *args, "-c", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "state" / "schedule.db").exists()


@pytest.mark.parametrize("minutes", ["0", "1441", "half"])
def test_minutes_out_of_range_is_a_usage_error(minutes: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["send-test-event", "omm_a", "--minutes", minutes, "-c", str(_config(tmp_path))])
    assert caught.value.code == 2


def test_an_unreachable_webhook_is_one_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feishu = FeishuConfig(mode=FeishuMode.WEBHOOK, listen=f"127.0.0.1:{port}",
                          verification_token=Secret("vt"))
    env = build_envelope(feishu, "omm_a", cancel=False, start=NOW, end=NOW + timedelta(hours=1),
                         event_time=NOW)
    with pytest.raises(SendError, match=rf"cannot reach the node's webhook "
                                        rf"http://127.0.0.1:{port}/webhook/event"):
        post_event(feishu, env)


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real webhook intake child with token ``vt`` and encrypt key ``ek``."""
    tmp = tmp_path_factory.mktemp("ste")
    config = write_config(tmp / "c.toml", state_dir=tmp / "state", feishu={
        "mode": "webhook", "listen": "127.0.0.1:0", "verification_token": "vt",
        "encrypt_key": "ek", "resync": False}, rooms=("omm_a",))
    sup = IntakeSupervisor(config, Recorder(), silence=20, backoff_initial=0.2)
    sup.start()
    try:
        yield wait_for(lambda: sup.ready_listen, 60, what="webhook intake ready")
    finally:
        sup.close()


def _feishu(listen: str, token: str = "vt", key: str = "ek") -> FeishuConfig:
    return FeishuConfig(mode=FeishuMode.WEBHOOK, listen=listen,
                        verification_token=Secret(token), encrypt_key=Secret(key))


def test_the_webhook_takes_the_sealed_event_and_a_replay_is_a_duplicate(webhook: str) -> None:
    feishu = _feishu(webhook)
    env = build_envelope(feishu, "omm_a", cancel=False, start=NOW, end=NOW + timedelta(hours=1),
                         event_time=NOW)
    assert post_event(feishu, env) == (f"the webhook http://{webhook}/webhook/event", "applied")
    assert post_event(feishu, env)[1] == "duplicate"  # same uuid: dedupe, as for Feishu's


@pytest.mark.parametrize(("token", "key", "reason"), [
    ("other", "ek", "HTTP 401: invalid verification_token"),
    ("vt", "other-key", "HTTP 401: signature verification failed")])
def test_a_refusal_by_the_webhook_names_its_reason(webhook: str, token: str, key: str,
                                                   reason: str) -> None:
    feishu = _feishu(webhook, token, key)
    env = build_envelope(feishu, "omm_a", cancel=False, start=NOW, end=NOW + timedelta(hours=1),
                         event_time=NOW)
    with pytest.raises(SendError, match=f"refused the test event: {reason}"):
        post_event(feishu, env)


def test_output_says_what_was_done_and_how_to_see_it(tmp_path: Path) -> None:
    from display.cli.send_test_event import Sent, describe

    config = parse_config(CONFIG, tmp_path / "c.toml")
    sent = Sent(config.rooms[0], False, NOW, NOW + timedelta(minutes=30), "the webhook X",
                "applied")
    text = describe(sent, config, "site.toml")
    assert text.splitlines() == [
        "booked Lobby (omm_a) from 09:30 to 10:00 through the webhook X: applied",
        "see it: room-display status -c site.toml",
        "undo: room-display send-test-event omm_a -c site.toml --cancel"]


def test_a_node_that_would_die_of_sigusr2_is_not_sent_it() -> None:
    """SIGUSR2's default action ends a process: only a node that catches it is signalled."""
    plain = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); input()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert plain.stdout is not None and plain.stdout.readline() == "up\n"
        assert catches(plain.pid, signal.SIGUSR2) is False
    finally:
        plain.communicate("\n")
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: None)
    try:
        assert catches(os.getpid(), signal.SIGUSR2) is True
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert catches(2**22 + 12345, signal.SIGUSR2) is None  # no such process


def _book(tmp_path: Path, state: str = "state") -> tuple[Any, dict[str, Any]]:
    config = parse_config(CONFIG.replace("[node]\n", f'[node]\nstate_dir = "{state}"\n'),
                          tmp_path / "c.toml")
    assert config.feishu is not None
    env = build_envelope(config.feishu, "omm_a", cancel=False, start=NOW,
                         end=NOW + timedelta(hours=1), event_time=NOW)
    return config, env


def test_a_node_gone_meanwhile_leaves_the_event_stored(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    config, env = _book(tmp_path)
    with pytest.raises(SendError, match=rf"the node \(pid {gone.pid}\) stopped; the test event "
                                        "is stored"):
        commit_event(config, env, gone.pid)
    with ScheduleStore(tmp_path / "state" / "schedule.db") as store:
        assert store.seen(env["uuid"]) and store.bookings("omm_a")


def test_a_store_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the state directory should be")
    config, env = _book(tmp_path, "blocker/state")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(SendError, match=r"cannot write the schedule store .*sudo room-display"):
        commit_event(config, env, gone.pid)


def test_a_node_that_does_not_catch_sigusr2_gets_nothing(tmp_path: Path) -> None:
    plain = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); input()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert plain.stdout is not None and plain.stdout.readline() == "up\n"
        config, env = _book(tmp_path)
        with pytest.raises(SendError, match="restart it first"):
            commit_event(config, env, plain.pid)
        assert plain.poll() is None  # not signalled
    finally:
        plain.communicate("\n")
    assert not (tmp_path / "state" / "schedule.db").exists()


def test_a_webhook_listening_on_every_address_is_reached_on_loopback(webhook: str) -> None:
    port = webhook.rsplit(":", 1)[1]
    feishu = _feishu(f"0.0.0.0:{port}")
    env = build_envelope(feishu, "omm_a", cancel=True, start=NOW, end=NOW, event_time=NOW)
    assert post_event(feishu, env) == (f"the webhook http://127.0.0.1:{port}/webhook/event",
                                       "applied")
