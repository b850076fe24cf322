"""What a new user and an attacker hit outside the demo: each case ends in one clear line (or a
node that keeps running), never a traceback or a dark panel."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from display.errors import EventError
from display.model import Booking
from display.testing.waiting import wait_for

CONFIG = """
[node]
name = "hard-test"
timezone = "Asia/Shanghai"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "Room A"
[[rooms.devices]]
id = "a-led"
kind = "led"
url = "virtual:panels"
"""


def room_display(*args: str, timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "display", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


class Node:
    """``room-display run`` in a subprocess."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.err = config.parent / "node-stderr.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "display", "run", "-c", str(config), *extra],
            stdout=subprocess.DEVNULL, stderr=self.err.open("w"))
        self.config = config

    def log(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def status(self) -> dict[str, object]:
        proc = room_display("status", "--json", "-c", str(self.config))
        assert proc.returncode == 0, proc.stderr
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    def running_status(self) -> dict[str, object]:
        def ready() -> dict[str, object] | None:
            assert self.proc.poll() is None, self.log()
            proc = room_display("status", "--json", "-c", str(self.config))
            if proc.returncode != 0:  # before the node opened (and repaired) its store
                return None
            doc: dict[str, object] = json.loads(proc.stdout)
            node = doc["node"]
            return doc if isinstance(node, dict) and node.get("running") else None
        return wait_for(ready, timeout=60, what="node status")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def node_factory() -> Iterator[type[Node]]:
    started: list[Node] = []

    class Tracked(Node):
        def __init__(self, config: Path, *extra: str) -> None:
            super().__init__(config, *extra)
            started.append(self)

    yield Tracked
    for node in started:
        node.stop()


# -- dates ---------------------------------------------------------------------------------------


def test_a_booking_outside_2000_2100_cannot_exist() -> None:
    ok = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(EventError, match="end: 9999-12-31"):
        Booking("e_0", "e", 0, ok, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    with pytest.raises(EventError, match="start: 1970"):
        Booking("e_0", "e", 0, datetime(1970, 1, 1, tzinfo=UTC), ok)


def _store_row(db: Path, start_ms: int, end_ms: int, event_id: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO slots (room_id, key, start_ms, end_ms, event_id, uid, "
                     "original_time) VALUES ('omm_a', ? || '_0', ?, ?, ?, ?, 0)",
                     (event_id, start_ms, end_ms, event_id, event_id))


def test_a_stored_year_9999_booking_is_skipped_logged_once_and_counted(
        config: Path, node_factory: type[Node]) -> None:
    from display.store import ScheduleStore

    db = config.parent / "state" / "schedule.db"
    ScheduleStore(db).close()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    _store_row(db, now_ms - 60_000, 253_402_300_799_999, "bad_9999")  # ...T23:59:59.999999
    _store_row(db, now_ms - 60_000, now_ms + 3_600_000, "good_0")
    node = node_factory(config)
    doc = node.running_status()
    node_doc = doc["node"]
    assert isinstance(node_doc, dict) and node_doc["store"]["unusable_rows"] == 1
    rooms = doc["rooms"]
    assert isinstance(rooms, list) and rooms[0]["state"] == "busy"
    assert rooms[0]["current"]["event_id"] == "good_0"
    text = room_display("status", "-c", str(config))
    assert "skipped 1 stored booking(s)" in text.stdout
    assert node.stop() == 0
    assert node.log().count("skipping stored booking bad_9999") == 1
    # The next start has nothing left to skip: the row is logged once, not at every start.
    again = node_factory(config)
    doc = again.running_status()
    assert isinstance(doc["node"], dict) and doc["node"]["store"]["unusable_rows"] == 0
    assert "bad_9999" not in again.log()


# -- corrupted store -----------------------------------------------------------------------------


def test_a_corrupted_store_is_moved_aside_and_the_node_starts(
        config: Path, node_factory: type[Node]) -> None:
    state = config.parent / "state"
    state.mkdir()
    garbage = b"this is not SQLite at all\n" * 200
    (state / "schedule.db").write_bytes(garbage)
    node = node_factory(config)
    doc = node.running_status()
    store = doc["node"]["store"]  # type: ignore[index]
    aside = Path(store["moved_aside"])
    assert aside.parent == state and aside.name.startswith("schedule.db.corrupt-")
    assert aside.read_bytes() == garbage, "kept for inspection, unchanged"
    assert "not a database" in store["corrupt_reason"]
    assert doc["rooms"][0]["state"] == "free"  # type: ignore[index]
    text = room_display("status", "-c", str(config)).stdout
    assert "store: was corrupt" in text and str(aside) in text
    assert node.stop() == 0
    assert "is corrupt" in node.log() and "moved it to" in node.log()


# -- one line instead of a traceback -------------------------------------------------------------


@pytest.mark.parametrize("where", ["a-file", "/proc/room-display-state", "read-only"])
def test_an_unusable_state_dir_is_one_line(config: Path, tmp_path: Path, where: str) -> None:
    if where == "a-file":
        state = tmp_path / "a-file"
        state.write_text("not a directory")
    elif where == "read-only":
        ro = tmp_path / "ro"
        ro.mkdir()
        state = ro / "state"
        # A read-only filesystem: a bind mount would need root in a namespace; a directory
        # without write permission fails the same call (EACCES vs EROFS) for a non-root user,
        # and root ignores permissions, so use /sys (mounted read-only in containers) then.
        ro.chmod(0o500)
        if sys.platform == "linux" and Path("/proc/self").exists() and _is_root():
            state = Path("/sys/room-display-state")
    else:
        state = Path(where)
    config.write_text(CONFIG.replace('state_dir = "state"', f'state_dir = "{state}"'))
    line = one_line_error(room_display("run", "-c", str(config), timeout=60))
    assert f"state directory {state} is not usable" in line and "[node] state_dir" in line


def _is_root() -> bool:
    import os
    return os.geteuid() == 0


def test_preview_into_a_missing_folder_is_one_line(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "no-such-folder" / "sign.png"
    line = one_line_error(room_display("preview", "omm_a", "--size", "296x128", "-o", str(out),
                                       "-c", str(config)))
    assert f"cannot write {out}" in line


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_replay_of_a_missing_file_or_directory_is_one_line(config: Path, tmp_path: Path,
                                                           kind: str) -> None:
    target = tmp_path / "events.jsonl"
    if kind == "directory":
        target.mkdir()
    line = one_line_error(room_display("run", "--replay", str(target), "-c", str(config)))
    assert f"cannot replay {target}" in line


def test_a_deeply_nested_replay_line_is_reported_and_the_node_runs(
        config: Path, tmp_path: Path, node_factory: type[Node]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    node = node_factory(config, "--replay", str(events))
    node.running_status()
    assert node.stop() == 0
    log = node.log()
    assert "Traceback" not in log
    assert f"{events}:1: JSON nested too deeply" in log
    assert "replay: " in log and "ReplayReport(" not in log, "a readable line, not a repr"


def test_demo_in_an_unusable_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line_error(room_display("demo", "--dir", str(blocker / "demo"), "--port",
                                       str(_free_port())))
    assert "demo --dir" in line and "not usable" in line


def _free_port() -> int:
    from display.testing.broker import free_port
    return free_port()


def test_demo_on_a_busy_port_says_so_at_once(tmp_path: Path) -> None:
    import socket
    import time
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        line = one_line_error(room_display("demo", "--dir", str(tmp_path / "d"), "--port",
                                           str(port)))
        assert time.monotonic() - started < 30
    assert f"127.0.0.1:{port} is taken" in line


def test_a_bad_tz_is_reported_as_tz(config: Path) -> None:
    import os
    config.write_text(CONFIG.replace('timezone = "Asia/Shanghai"\n', ""))
    env = {**os.environ, "TZ": "Mars/Olympus"}
    line = one_line_error(room_display("check", "-c", str(config), env=env))
    assert line.startswith("room-display: TZ: unknown time zone 'Mars/Olympus'")
    assert "node.timezone" not in line


# -- -c anywhere, secrets only where needed --------------------------------------------------------


@pytest.mark.parametrize("order", ["before-verb", "after-verb", "before-command"])
def test_map_takes_c_anywhere(config: Path, order: str) -> None:
    c = ["-c", str(config)]
    argv = {"before-verb": ["map", *c, "add-room", "omm_new", "New"],
            "after-verb": ["map", "add-room", "omm_new", "New", *c],
            "before-command": [*c, "map", "add-room", "omm_new", "New"]}[order]
    proc = subprocess.run([sys.executable, "-m", "display", *argv], capture_output=True,
                          text=True, timeout=60, cwd=config.parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert 'open_id = "omm_new"' in config.read_text()


SECRET_CONFIG = CONFIG.replace("[[rooms]]", """[feishu]
app_id = "cli_x"
app_secret = "credential:feishu-app-secret"
resync = false
[[rooms]]""")


def test_commands_that_need_no_secret_never_read_one(config: Path) -> None:
    import os
    config.write_text(SECRET_CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    for argv in (["map"], ["status"], ["map", "add-room", "omm_b", "B"],
                 ["preview", "omm_a", "--size", "296x128", "-o",
                  str(config.parent / "s.png")]):
        proc = room_display(*argv, "-c", str(config), env=env)
        assert proc.returncode == 0, (argv, proc.stderr)
    # check needs the secret: without the installer's credentials folder it says which file.
    line = one_line_error(room_display("check", "-c", str(config), env=env))
    assert f"cannot read credential {config.parent}/credentials/feishu-app-secret" in line


def test_credentials_are_found_beside_the_config_outside_systemd(config: Path) -> None:
    import os
    config.write_text(SECRET_CONFIG)
    creds = config.parent / "credentials"
    creds.mkdir()
    (creds / "feishu-app-secret").write_text("s3cret\n")
    from display.config import load_config
    env_before = os.environ.pop("CREDENTIALS_DIRECTORY", None)
    try:
        loaded = load_config(config)
    finally:
        if env_before is not None:
            os.environ["CREDENTIALS_DIRECTORY"] = env_before
    assert loaded.feishu is not None and loaded.feishu.app_secret.reveal() == "s3cret"


# -- room ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a/b", "room+", "room#", "nul\x00", ""])
def test_room_ids_that_cannot_be_topic_levels_are_refused(config: Path, bad: str) -> None:
    before = config.read_text()
    if "\x00" not in bad:  # a command line cannot carry NUL; the config file can
        line = one_line_error(room_display("map", "add-room", bad, "Bad", "-c", str(config)))
        assert "open_id" in line and (("is empty" in line) if not bad else "forbid" in line)
        assert config.read_text() == before
    escaped = bad.replace("\x00", "\\u0000")
    config.write_text(CONFIG.replace('open_id = "omm_a"', f'open_id = "{escaped}"'))
    line = one_line_error(room_display("check", "-c", str(config)))
    assert "rooms[0].open_id" in line


# -- status, identify ----------------------------------------------------------------------------


def test_status_json_watch_streams_json_without_escapes(config: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "display", "status", "--json", "--watch",
                             "-c", str(config)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "\x1b" not in first + second
    assert json.loads(first)["node"]["name"] == "hard-test"
    assert json.loads(second)["rooms"][0]["open_id"] == "omm_a"


def test_status_shows_link_and_device_times_in_local_time() -> None:
    from display.status import render_text
    doc = {"generated_at": "2030-01-01T18:00:00+08:00",
           "node": {"name": "n", "role": "single", "running": True,
                    "links": {"feishu": {"up": True, "since": "2030-01-01T09:30:00+00:00"}}},
           "rooms": [{"open_id": "omm_a", "name": "A", "state": "free", "devices": [
               {"id": "d", "kind": "led", "url": "u", "online": True,
                "last_update": "2030-01-01T09:59:00+00:00", "error": None}]}]}
    text = render_text(doc)
    assert "since 17:30" in text and "last update 17:59" in text


def test_status_text_counts_events_for_rooms_not_in_the_config() -> None:
    from display.status import render_text
    doc = {"generated_at": "2030-01-01T18:00:00+08:00",
           "node": {"name": "n", "role": "single", "running": True, "intake": {"events": {
               "received": 4, "applied": 1, "unknown_room": 3}}}, "rooms": []}
    assert ("  Feishu events: 4 received, 1 applied, 0 duplicate, 0 refused, 3 for rooms not "
            "in the config") in render_text(doc).splitlines()


def test_status_text_counts_feishu_events() -> None:
    from display.status import render_text
    doc = {"generated_at": "2030-01-01T18:00:00+08:00",
           "node": {"name": "n", "role": "single", "running": True, "intake": {"events": {
               "received": 9, "applied": 5, "duplicate": 1, "superseded": 0, "ignored": 0,
               "refused": 2, "failed": 1}}}, "rooms": []}
    assert ("  Feishu events: 9 received, 5 applied, 1 duplicate, 2 refused, 1 not stored "
            "(Feishu retries them)") in render_text(doc).splitlines()


@pytest.mark.parametrize("seconds", ["-5", "0", "nan", "1e9"])
def test_identify_seconds_must_be_positive(config: Path, seconds: str) -> None:
    proc = room_display("identify", "a-led", "--seconds", seconds, "-c", str(config))
    assert proc.returncode == 2 and "--seconds" in proc.stderr


def test_identify_on_an_offline_device_reports_failure(config: Path, tmp_path: Path) -> None:
    config.write_text(CONFIG.replace('url = "virtual:panels"', f'url = "{tmp_path}/ttyACM9"'))
    proc = room_display("identify", "a-led", "--seconds", "0.2", "-c", str(config))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("room-display: cannot identify a-led: it is "
                                                   "offline")


# -- check tells the truth ------------------------------------------------------------------------


def _check(config: Path, text: str) -> str:
    config.write_text(text, encoding="utf-8")
    proc = room_display("check", "-c", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


WEBHOOK = CONFIG.replace("[[rooms]]", """[feishu]
mode = "webhook"
resync = false
[[rooms]]""")


def test_check_names_a_webhook_without_verification_token(config: Path) -> None:
    out = _check(config, WEBHOOK)
    assert "PROBLEM Feishu webhook: no verification_token" in out


def test_run_refuses_a_webhook_without_verification_token_in_one_line(config: Path) -> None:
    """Not a node that restarts its intake child forever: one line, exit 1, nothing started."""
    config.write_text(WEBHOOK, encoding="utf-8")
    line = one_line_error(room_display("run", "-c", str(config)))
    assert line == (f"room-display: {config}: feishu.verification_token: is required in webhook "
                    "mode (every Feishu event carries it; copy it from the app's Events page)")
    assert not (config.parent / "state" / "schedule.db").exists()


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_whitespace_verification_token_is_refused_in_one_line(config: Path,
                                                                command: str) -> None:
    config.write_text(WEBHOOK.replace("resync = false", 'resync = false\n'
                                      'verification_token = "   "'), encoding="utf-8")
    line = one_line_error(room_display(command, "-c", str(config)))
    assert line == (f"room-display: {config}: feishu.verification_token: is only whitespace "
                    "(copy the token from the app's Events page)")
    assert not (config.parent / "state" / "schedule.db").exists()


def test_check_names_resync_without_app_credentials(config: Path) -> None:
    out = _check(config, WEBHOOK.replace("resync = false", 'verification_token = "t"'))
    assert "PROBLEM Feishu webhook: re-sync is on but there are no app credentials" in out
    assert "re-sync is off" not in out


def test_check_names_an_mqtt_device_without_a_broker(config: Path) -> None:
    out = _check(config, CONFIG.replace('url = "virtual:panels"', 'url = "mqtt:lights/a"'))
    assert "PROBLEM device a-led (led, mqtt:lights/a): mqtt: devices need an [mqtt]" in out


@pytest.mark.parametrize("kind", ["regular file", "directory", "/dev/null"])
def test_check_names_a_device_url_that_is_no_serial_port(config: Path, tmp_path: Path,
                                                         kind: str) -> None:
    target = {"regular file": tmp_path / "ttyFAKE", "directory": tmp_path / "ttydir",
              "/dev/null": Path("/dev/null")}[kind]
    if kind == "regular file":
        target.write_text("")
    elif kind == "directory":
        target.mkdir()
    out = _check(config, CONFIG.replace('url = "virtual:panels"', f'url = "{target}"'))
    assert f"PROBLEM device a-led (led, {target}): {target} is " in out
    assert "not a serial port" in out


def test_check_names_two_devices_on_one_serial_port(config: Path) -> None:
    import os
    import pty
    leader, follower = pty.openpty()
    try:
        port = os.ttyname(follower)
        text = CONFIG.replace('url = "virtual:panels"', f'url = "{port}"') + (
            f'[[rooms.devices]]\nid = "a-sign"\nkind = "eink"\nurl = "{port}"\n')
        out = _check(config, text)
    finally:
        os.close(leader)
        os.close(follower)
    assert f"PROBLEM device a-sign: port {port} is already used by device a-led" in out
    assert "ok      device a-led" in out


def test_check_names_a_corrupted_store(config: Path) -> None:
    state = config.parent / "state"
    state.mkdir()
    (state / "schedule.db").write_bytes(b"garbage" * 1000)
    out = _check(config, CONFIG)
    assert f"PROBLEM schedule store {state / 'schedule.db'} is corrupt" in out
    assert (state / "schedule.db").read_bytes() == b"garbage" * 1000, "check changes nothing"


# -- disk full at start ----------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only: skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    # Unbuffered: a buffered file would keep the last partial block and fail again on close.
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_at_start_shows_what_is_stored_as_stale_and_recovers(
        config: Path, full_disk: Path, node_factory: type[Node]) -> None:
    from display.store import ScheduleStore

    state = full_disk / "state"
    ScheduleStore(state / "schedule.db").close()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    _store_row(state / "schedule.db", now_ms - 60_000, now_ms + 3_600_000, "held_0")
    config.write_text(CONFIG.replace('state_dir = "state"', f'state_dir = "{state}"'))
    filler = _fill(full_disk)
    node = node_factory(config)
    panel = config.parent / "panels" / "a-led.json"

    def shown() -> dict[str, object]:
        assert node.proc.poll() is None, node.log()
        try:
            doc: dict[str, object] = json.loads(panel.read_text())
        except (OSError, ValueError):
            return {}
        return doc

    wait_for(lambda: shown().get("state") == "busy" and shown().get("stale") is True,
             timeout=60, what="the stored booking, shown stale")
    assert "cannot write the schedule store" in node.log()
    filler.unlink()
    wait_for(lambda: shown().get("stale") is False, timeout=60, what="fresh again once writable")
    assert shown().get("state") == "busy"
    assert "writable again" in node.log()
    assert node.stop() == 0


def test_the_demo_follows_map_edits_as_map_says(tmp_path: Path) -> None:
    out = tmp_path / "demo-out.txt"
    demo_dir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "display", "demo", "--dir", str(demo_dir),
                             "--port", str(_free_port())], stdout=out.open("w"),
                            stderr=(tmp_path / "demo-err.txt").open("w"))
    try:
        wait_for(lambda: "Stop with Ctrl-C" in out.read_text(), timeout=90, what="demo ready")
        config = demo_dir / "room-display.toml"
        edit = room_display("map", "add-room", "omm_added", "Added Room", "-c", str(config))
        assert edit.returncode == 0 and "reloads it by itself" in edit.stdout

        def listed() -> bool:
            doc = json.loads(room_display("status", "--json", "-c", str(config)).stdout)
            return bool(doc["node"].get("running")) and any(
                r["open_id"] == "omm_added" for r in doc["rooms"] if r["state"] is not None)

        wait_for(listed, timeout=30, what="the running demo showing the added room")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_status_of_a_stopped_node_with_an_unusable_row_is_one_line(config: Path) -> None:
    from display.store import ScheduleStore

    db = config.parent / "state" / "schedule.db"
    ScheduleStore(db).close()
    _store_row(db, 946_684_800_000, 253_402_300_799_999, "bad_9999")
    line = one_line_error(room_display("status", "-c", str(config)))
    assert "holds a booking of omm_a that cannot be shown" in line and "run skips it" in line


def test_run_v_reaches_the_intake_child(config: Path, node_factory: type[Node]) -> None:
    import contextlib
    import urllib.error
    import urllib.request
    port = _free_port()
    config.write_text(CONFIG.replace("[[rooms]]", f"""[feishu]
mode = "webhook"
verification_token = "t"
resync = false
listen = "127.0.0.1:{port}"
[[rooms]]"""))
    node = node_factory(config, "-v")
    wait_for(lambda: "webhook intake listening" in node.log(), timeout=90, what="intake ready")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook/event", data=b"{}")
    # Any answer will do: the child logs the request line at DEBUG.
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=10).close()
    wait_for(lambda: " DEBUG feishu-intake[" in node.log(), timeout=30,
             what="a DEBUG line from the intake child")
    assert node.stop() == 0


# -- disk full during a run -----------------------------------------------------------------------


def _fill_to_the_last_page(directory: Path) -> Path:
    """Fill a filesystem completely: 64 KiB writes, then page-sized ones, unbuffered."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (65536, 4096, 512):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def _post_event(port: int, event: dict[str, object]) -> int:
    import urllib.error
    import urllib.request
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook/event",
                                     data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_disk_that_fills_during_a_run_is_not_acked_shown_and_retried(
        config: Path, full_disk: Path, node_factory: type[Node]) -> None:
    """A commit that fails is answered 503 (Feishu retries), `status` shows the store link down
    with the error and the rooms stale, and once space is back the store link is up again by
    itself (the intake retries a write) and Feishu's retry is applied."""
    from datetime import timedelta

    from display.testing.envelopes import envelope

    port = _free_port()
    state = full_disk / "state"
    config.write_text(CONFIG.replace('state_dir = "state"', f'state_dir = "{state}"').replace(
        "[[rooms]]", f"""[feishu]
mode = "webhook"
verification_token = "vtoken"
resync = false
listen = "127.0.0.1:{port}"
[[rooms]]"""))
    node = node_factory(config)
    wait_for(lambda: "webhook intake listening" in node.log(), timeout=90, what="intake ready")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    first = envelope(uid="before", start=start, end=start + timedelta(minutes=30))
    assert _post_event(port, first) == 200
    filler = _fill_to_the_last_page(full_disk)
    later = envelope(uid="during", start=start + timedelta(hours=2),
                     end=start + timedelta(hours=3))
    assert _post_event(port, later) == 503, "not acknowledged: Feishu delivers it again"

    def store_link() -> dict[str, object]:
        links = node.running_status()["node"]["links"]  # type: ignore[index]
        return links.get("store") or {}  # type: ignore[no-any-return, union-attr]

    wait_for(lambda: store_link().get("up") is False, timeout=30, what="the store link down")
    assert "cannot write the schedule store" in str(store_link()["error"])
    doc = node.running_status()
    assert doc["rooms"][0]["stale"] is True  # type: ignore[index]
    assert "store: DOWN" in room_display("status", "-c", str(config)).stdout
    filler.unlink()
    wait_for(lambda: store_link().get("up") is True, timeout=30,
             what="the store link up again without a new event (the intake retried)")
    assert _post_event(port, later) == 200  # Feishu's retry
    def upcoming() -> list[object]:
        return [b["uid"] for b in node.running_status()["rooms"][0]["next"]]  # type: ignore[index]

    wait_for(lambda: upcoming() == ["during"], timeout=30, what="the retried event applied")
    assert node.running_status()["rooms"][0]["stale"] is False  # type: ignore[index]
    assert node.stop() == 0


def test_a_taken_webhook_port_shows_its_cause_in_status_and_on_the_page(
        config: Path, node_factory: type[Node]) -> None:
    import socket
    import urllib.request

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = _free_port()
        config.write_text(WEBHOOK.replace("resync = false", f'resync = false\nverification_token'
                                          f' = "t"\nlisten = "127.0.0.1:{port}"')
                          + f'[web]\nlisten = "127.0.0.1:{web}"\n', encoding="utf-8")
        node = node_factory(config)
        cause = f"cannot listen on 127.0.0.1:{port}: address already in use (feishu.listen)"

        def feishu_error() -> object:
            links = node.running_status()["node"]["links"]  # type: ignore[index]
            return links["feishu"]["error"] == cause  # type: ignore[index]

        wait_for(feishu_error, timeout=30, what="the cause as the feishu link's error")
        assert "link feishu: DOWN since" in room_display("status", "-c", str(config)).stdout
        assert cause in room_display("status", "-c", str(config)).stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/status", timeout=10) as page:
            assert json.loads(page.read())["node"]["links"]["feishu"]["error"] == cause
        assert f"exited with code 1: {cause}" in node.log()


def test_status_text_lists_the_fleet_with_each_nodes_devices() -> None:
    from display.status import render_text
    doc = {"generated_at": "2030-01-01T18:00:00+08:00",
           "node": {"name": "bridge-1", "role": "bridge", "running": True, "fleet": {
               "agent-3f": {"online": False, "role": "agent", "version": "1.4.0",
                            "clock_synced": True, "last_seen": "2030-01-01T09:58:00+00:00",
                            "links": {"broker": {"up": True}, "bridge": {
                                "up": False, "error": "no schedule for 12 min"}},
                            "rooms": ["omm_a"], "devices": [
                                {"id": "3f-led", "kind": "led", "room": "omm_a",
                                 "online": False, "last_update": "2030-01-01T09:57:00+00:00",
                                 "error": "port /dev/ttyACM0 gone"}]},
               "bridge-1": {"online": True, "role": "bridge", "version": "1.4.0",
                            "clock_synced": None, "last_seen": None, "links": {},
                            "devices": []}}},
           "rooms": []}
    lines = render_text(doc).splitlines()
    assert lines[1:] == [
        "  nodes on the broker:",
        "    agent-3f (agent): OFFLINE, version 1.4.0, clock synced, last seen 17:58",
        "      links: bridge DOWN (no schedule for 12 min), broker up",
        "      device 3f-led [led] OFFLINE room omm_a last update 17:57  error: port "
        "/dev/ttyACM0 gone",
        "    bridge-1 (bridge): online, version 1.4.0, clock unknown"]


def test_status_text_names_an_agents_device_room_by_the_bridges_name_for_it() -> None:
    from display.status import render_text
    device = {"id": "3f-led", "kind": "led", "online": True}
    doc = {"generated_at": "2030-01-01T18:00:00+08:00",
           "node": {"name": "bridge-1", "role": "bridge", "running": True, "fleet": {
               "agent-3f": {"online": True, "role": "agent", "version": "1.4.0",
                            "clock_synced": True, "links": {}, "devices": [
                                dict(device, room="omm_a"), dict(device, id="x", room="omm_z")]}}},
           "rooms": [{"open_id": "omm_a", "name": "3F 大会议室", "state": "free", "stale": False,
                      "devices": []}]}
    text = render_text(doc)
    assert "      device 3f-led [led] online  room 3F 大会议室\n" in text
    assert "      device x [led] online  room omm_z\n" in text  # a room the bridge does not list


def test_demo_on_a_busy_web_port_says_so_at_once(tmp_path: Path) -> None:
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(room_display("demo", "--dir", str(tmp_path / "d"), "--port",
                                           str(_free_port()), "--web-port", str(port)))
    assert line == (f"room-display: demo --web-port {port}: 127.0.0.1:{port} is taken (Address "
                    "already in use); stop what uses it or pick another --web-port")
    same = _free_port()
    line = one_line_error(room_display("demo", "--dir", str(tmp_path / "d"), "--port",
                                       str(same), "--web-port", str(same)))
    assert "the webhook and the web page need a port each" in line


def test_a_reload_onto_a_taken_webhook_port_shows_the_cause_not_an_exit_code(
        config: Path, node_factory: type[Node]) -> None:
    import socket

    free = _free_port()
    text = WEBHOOK.replace("resync = false", f'resync = false\nverification_token = "t"\n'
                           f'listen = "127.0.0.1:{free}"') + "[web]\nenabled = false\n"
    config.write_text(text, encoding="utf-8")
    node = node_factory(config)

    def feishu() -> dict[str, object]:
        links = node.running_status()["node"]["links"]  # type: ignore[index]
        return links["feishu"]  # type: ignore[index,no-any-return]

    wait_for(lambda: feishu()["up"] is True, timeout=60, what="the webhook up")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(text.replace(f"127.0.0.1:{free}", f"127.0.0.1:{port}"),
                          encoding="utf-8")
        cause = f"cannot listen on 127.0.0.1:{port}: address already in use (feishu.listen)"
        wait_for(lambda: feishu() == {**feishu(), "up": False, "error": cause}, timeout=30,
                 what="the cause as the feishu link's error")
