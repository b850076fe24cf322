"""The command line as a user meets it: the demo end to end, status, check, preview, identify."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from display.cli import main
from display.testing.broker import free_port
from display.testing.waiting import wait_for


def room_display(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "display", *args], capture_output=True,
                          text=True, timeout=timeout)


#: A user's shell as scripts/demo leaves it: the venv's bin is not on PATH.
SHELL_ENV = {**os.environ, "PATH": os.pathsep.join(
    p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    if Path(p).resolve() != Path(sys.executable).parent.resolve())}


class Demo:
    """``room-display demo`` in a subprocess, with its printed instructions parsed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.out = directory / "stdout.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "display", "demo", "--dir", str(directory / "demo"),
             "--port", str(free_port()), "--web-port", "0"],
            stdout=self.out.open("w"), stderr=(directory / "stderr.txt").open("w"), text=True,
            env=SHELL_ENV)
        text = wait_for(lambda: "Stop with Ctrl-C" in self.text() and self.text(), timeout=90,
                        what="demo instructions")
        self.curls = [line.strip() for line in text.splitlines()
                      if line.strip().startswith("curl ")]
        self.config = directory / "demo" / "room-display.toml"

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def printed(self, label: str) -> str:
        """The command printed after ``label`` (e.g. "Watch all rooms:")."""
        line = next(line for line in self.text().splitlines() if line.startswith(label))
        return line[len(label):].strip()

    def post(self, index: int) -> dict[str, Any]:
        """Run pasted command ``index`` as printed, in a shell, with the real curl."""
        proc = subprocess.run(["sh", "-c", self.curls[index]], capture_output=True, text=True,
                              timeout=30, env=SHELL_ENV, cwd=self.directory)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def panel(self, device: str) -> dict[str, Any]:
        path = self.directory / "demo" / "panels" / f"{device}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo"))
    yield running
    if running.proc.poll() is None:
        running.stop()


def test_demo_books_and_frees_a_room_within_a_second(demo: Demo) -> None:
    assert len(demo.curls) == 3
    wait_for(lambda: demo.panel("3f-large-led").get("state") == "free", what="free at start")
    started = time.monotonic()
    assert demo.post(0)["msg"] == "success"
    wait_for(lambda: demo.panel("3f-large-led").get("state") == "busy", timeout=1.0,
             what="busy within a second")
    assert time.monotonic() - started < 1.0
    assert demo.panel("3f-large-led")["led"]["colour"] == "#ff0000"
    wait_for(lambda: demo.panel("3f-large-sign").get("state") == "busy", what="sign busy")
    sign = Image.open(demo.directory / "demo" / "panels" / "3f-large-sign.png")
    assert sign.size == (296, 128)
    assert demo.post(1)["msg"] == "success"
    wait_for(lambda: demo.panel("3f-large-led").get("state") == "free", timeout=1.0,
             what="free again within a second")
    assert re.search(r"3F 大会议室 Large: BUSY until (tomorrow )?\d\d:\d\d \(meeting", demo.text())


def test_pasted_commands_work_again_and_again(demo: Demo) -> None:
    for _ in range(2):
        assert demo.post(0) == {"msg": "success", "verdict": "applied"}
        wait_for(lambda: demo.panel("3f-large-led").get("state") == "busy", timeout=5,
                 what="busy again")
        assert demo.post(1) == {"msg": "success", "verdict": "applied"}
        wait_for(lambda: demo.panel("3f-large-led").get("state") == "free", timeout=5,
                 what="free again")


def test_printed_room_display_commands_work_as_printed(demo: Demo, tmp_path: Path) -> None:
    preview = demo.printed("See the e-ink sign:")
    proc = subprocess.run(["sh", "-c", preview], capture_output=True, text=True, timeout=60,
                          env=SHELL_ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "sign.png").size == (296, 128)
    watch = subprocess.Popen(["sh", "-c", demo.printed("Watch all rooms:")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SHELL_ENV,
                             cwd=tmp_path, start_new_session=True)
    try:
        assert watch.stdout is not None
        head = "".join(watch.stdout.readline().decode() for _ in range(3))  # the first screen
        assert "3F 大会议室 Large" in head or "room-display status at" in head, head
    finally:
        os.killpg(watch.pid, signal.SIGTERM)
        watch.wait(timeout=10)


def test_the_demos_web_page_is_where_it_says(demo: Demo) -> None:
    url = re.search(r"Every room live in a browser: (http://127\.0\.0\.1:\d+/)", demo.text())
    assert url is not None, demo.text()
    with urllib.request.urlopen(url.group(1) + "api/status", timeout=10) as page:
        doc = json.loads(page.read())
    assert [r["open_id"] for r in doc["rooms"]] == ["omm_demo_3f_large", "omm_demo_5f_focus"]


def test_status_of_the_running_demo(demo: Demo) -> None:
    demo.post(2)  # 5F "starting in 5 minutes"
    wait_for(lambda: demo.panel("5f-focus-led").get("state") == "soon", what="soon")
    doc = wait_for(lambda: (d := json.loads(room_display(
        "status", "--json", "-c", str(demo.config)).stdout))["rooms"][1]["state"] == "soon" and d,
        what="status shows soon")
    assert doc["node"]["running"] is True
    assert doc["node"]["links"]["feishu"]["up"] is True
    room = doc["rooms"][1]
    assert room["stale"] is False and room["next"][0]["uid"] == "demo-soon"
    assert {d["id"]: d["online"] for d in room["devices"]} == {"5f-focus-led": True,
                                                              "5f-focus-sign": True}
    text = room_display("status", "-c", str(demo.config)).stdout
    assert "5F Focus Room 专注室" in text and "SOON" in text and "NOTE" not in text


def test_identify_on_a_running_node_shows_the_pattern_then_the_room(demo: Demo) -> None:
    wait_for(lambda: demo.panel("3f-large-led").get("led"), what="led drawn")
    proc = room_display("identify", "3f-large-led", "--seconds", "1.5", "-c", str(demo.config))
    assert proc.returncode == 0 and "asked the running node" in proc.stdout
    wait_for(lambda: demo.panel("3f-large-led")["led"] == {
        "colour": "#ffffff", "effect": "blink", "brightness": 255}, what="identify pattern")
    wait_for(lambda: demo.panel("3f-large-led")["led"]["colour"] != "#ffffff", timeout=5,
             what="back to the room's colour")


def test_demo_stops_cleanly_on_ctrl_c(demo: Demo) -> None:
    assert demo.stop() == 0
    assert "Traceback" not in (demo.directory / "stderr.txt").read_text()
    status = room_display("status", "-c", str(demo.config))
    assert "the node is not running" in status.stdout
    doc = json.loads(room_display("status", "--json", "-c", str(demo.config)).stdout)
    assert doc["node"]["running"] is False
    assert all(r["stale"] for r in doc["rooms"]), "nobody vouches for the data: stale"


CONFIG = """
[node]
name = "cli-test"
timezone = "Asia/Shanghai"
language = "zh+en"
state_dir = "state"
[[rooms]]
open_id = "omm_a"
name = "3F 大会议室"
[[rooms.devices]]
id = "a-sign"
kind = "eink"
url = "virtual:panels"
size = "400x300"
palette = "bwr"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_check_passes_for_a_reachable_setup(config: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok      device a-sign" in out and "PROBLEM" not in out


def test_check_reports_an_unplugged_board(config: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    config.write_text(CONFIG + '[[rooms.devices]]\nid = "a-led"\nkind = "led"\n'
                      f'url = "{tmp_path}/ttyACM7"\n', encoding="utf-8")
    assert main(["check", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM device a-led (led, {tmp_path}/ttyACM7): {tmp_path}/ttyACM7 does not exist" \
        in out


def test_preview_writes_the_sign_at_its_size(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "sign.png"
    assert main(["preview", "3F 大会议室", "-o", str(out), "-c", str(config)]) == 0
    image = Image.open(out)
    assert image.size == (400, 300)
    assert (200, 0, 0) in {c for _, c in image.getcolors(1 << 16) or []}, "stale marker in red"
    assert main(["preview", "omm_a", "--size", "800x480", "-o", str(out), "-c",
                 str(config)]) == 0
    assert Image.open(out).size == (800, 480)


def test_preview_of_unknown_room_names_the_known_ones(config: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "omm_nope", "-c", str(config)]) == 1
    assert "no room 'omm_nope'" in capsys.readouterr().err


def test_identify_without_a_node_drives_the_device(config: Path, tmp_path: Path) -> None:
    proc = room_display("identify", "a-sign", "--seconds", "0.5", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "identified a-sign" in proc.stdout and "online" in proc.stdout
    assert Image.open(tmp_path / "panels" / "a-sign.png").size == (400, 300)


def test_help_lists_every_command() -> None:
    out = room_display("--help").stdout
    for command in ("run", "demo", "status", "check", "map", "preview", "identify"):
        assert command in out


def test_scripts_demo_prints_commands_that_work_where_the_user_is(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[3] / "scripts" / "demo"
    venv_program = script.parent.parent / ".venv" / "bin" / "room-display"
    if not venv_program.exists():
        pytest.skip("scripts/demo runs the repository's .venv, which this run does not use")
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([str(script), "--port", str(free_port()), "--web-port", "0"],
                            stdout=out.open("w"), stderr=subprocess.DEVNULL, env=SHELL_ENV,
                            cwd=tmp_path)
    try:
        text = wait_for(lambda: "Stop with Ctrl-C" in out.read_text() and out.read_text(),
                        timeout=90, what="the demo's instructions")
        assert (tmp_path / "demo-state" / "room-display.toml").exists()  # where the user is
        line = next(x for x in text.splitlines() if x.startswith("See the e-ink sign:"))
        command = line.removeprefix("See the e-ink sign:").strip()
        assert command.startswith(f"{venv_program} preview -c {tmp_path / 'demo-state'}")
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=60, env=SHELL_ENV, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "sign.png").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
