"""Running under systemd: the unit verifies, the node notifies, install lays out a Pi."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from display.systemd import ClockSync

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_file_verifies_without_warnings(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "room-display.service").read_text()
    exe = Path(sys.executable).with_name("room-display")
    unit = unit.replace("/opt/room-display/.venv/bin/room-display", str(exe))
    (tmp_path / "room-display.service").write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "room-display.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "room-display.service" not in proc.stderr, proc.stderr  # no warnings about our unit
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=",
                "ConfigurationDirectory=", "LoadCredential=", "SupplementaryGroups=dialout"):
        assert key in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_reaches_the_gpio_uart_and_keeps_its_exposure(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "room-display.service").read_text()
    allowed = {line.split("=", 1)[1].split()[0] for line in unit.splitlines()
               if line.startswith("DeviceAllow=")}
    # USB boards and the Pi's GPIO UART (hardware/README.md), nothing else.
    assert allowed == {"char-ttyACM", "char-ttyUSB", "char-ttyAMA", "char-ttyS"}
    exe = Path(sys.executable).with_name("room-display")
    (tmp_path / "room-display.service").write_text(
        unit.replace("/opt/room-display/.venv/bin/room-display", str(exe)))
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true",
                           str(tmp_path / "room-display.service")],
                          capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for room-display.service: ([0-9.]+)",
                      proc.stdout + proc.stderr)
    if level is None:
        pytest.skip("this systemd-analyze has no offline security check")
    assert float(level[1]) <= 1.9


def test_clock_sync_follows_timesyncd_where_it_runs(tmp_path: Path) -> None:
    timesync = tmp_path / "timesync"
    assert ClockSync("auto", timesync)() is True, "no timesyncd: trust the clock"
    timesync.mkdir()
    assert ClockSync("auto", timesync)() is False, "timesyncd runs but has not synced"
    assert ClockSync("trust", timesync)() is True
    (timesync / "synchronized").touch()
    assert ClockSync("auto", timesync)() is True


def test_node_sends_ready_status_and_watchdog(tmp_path: Path) -> None:
    config = tmp_path / "room-display.toml"
    config.write_text('[node]\nname = "t"\nstate_dir = "state"\n'
                      '[[rooms]]\nopen_id = "omm_a"\nname = "A"\n')
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(config)],
                                env=env, stderr=subprocess.PIPE, text=True)
        try:
            messages = [sock.recv(4096).decode() for _ in range(3)]
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert messages[0] == "READY=1"
    assert messages[1] == "STATUS=1 free"
    assert messages[2] == "WATCHDOG=1"
    assert proc.returncode == 0


def test_install_dry_run_lays_out_a_pi(tmp_path: Path) -> None:
    root = tmp_path / "pi"
    proc = subprocess.run([str(ROOT / "scripts" / "install-pi"), "--root", str(root),
                           "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    etc = root / "etc" / "room-display"
    assert (etc / "config.toml").read_text().startswith("# room-display: a single box")
    # `sudo room-display status` / `check` from a shell look where the service keeps its state
    # (the unit's StateDirectory), not in /etc/room-display/state beside the config.
    from display.config import load_config
    installed = load_config(etc / "config.toml", resolve_secrets=False)
    assert installed.node.state_dir == Path("/var/lib/room-display")
    unit = (ROOT / "systemd" / "room-display.service").read_text()
    assert "StateDirectory=room-display\n" in unit
    assert oct((etc / "credentials").stat().st_mode & 0o777) == "0o700"
    assert oct((etc / "credentials" / "feishu-app-secret").stat().st_mode & 0o777) == "0o600"
    assert (root / "etc" / "systemd" / "system" / "room-display.service").exists()
    assert (root / "etc" / "udev" / "rules.d" / "99-room-display.rules").exists()
    assert (root / "opt" / "room-display" / "display" / "node.py").exists()
    assert "would run: systemctl enable --now room-display.service" in proc.stdout
    assert "would run: useradd --system" in proc.stdout  # no such user on this machine
    lines = proc.stdout.splitlines()
    assert lines.index("would run: apt-get update") < next(
        i for i, line in enumerate(lines) if line.startswith("would run: apt-get install"))
    # `room-display check`, as the last line says, works from any shell: it is on PATH.
    link = root / "usr" / "local" / "bin" / "room-display"
    assert link.is_symlink()
    assert os.readlink(link) == "/opt/room-display/.venv/bin/room-display"
    assert "room-display check" in proc.stdout.splitlines()[-1]
    # Running it again keeps an edited config.
    (etc / "config.toml").write_text("# edited\n")
    subprocess.run([str(ROOT / "scripts" / "install-pi"), "--root", str(root), "--dry-run"],
                   check=True, capture_output=True, timeout=120)
    assert (etc / "config.toml").read_text() == "# edited\n"

