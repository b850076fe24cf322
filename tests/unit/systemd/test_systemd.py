"""Running under systemd: the unit verifies and says what it must, the node notifies.

(scripts/install-pi: test_install.py.)"""

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


def _unit() -> str:
    return (ROOT / "systemd" / "room-display.service").read_text()


def _values(key: str) -> list[str]:
    """Every value of ``key=`` in the unit, each space-separated item apart."""
    return [item for line in _unit().splitlines() if line.startswith(f"{key}=")
            for item in line.split("=", 1)[1].split()]


def test_every_secret_reaches_the_service_by_load_credential() -> None:
    loaded = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in _values("LoadCredential")}
    assert loaded == {name: f"/etc/room-display/credentials/{name}" for name in (
        "feishu-app-secret", "feishu-verification-token", "feishu-encrypt-key",
        "mqtt-password", "web-token")}
    # What the examples name as credential:NAME is among them.
    for example in (ROOT / "examples").glob("*.toml"):
        for name in re.findall(r'= "credential:([\w-]+)"', example.read_text(encoding="utf-8")):
            assert name in loaded, (example.name, name)
    assert 'token = "credential:web-token"' in (ROOT / "examples" / "bridge.toml").read_text()


def test_time_sync_is_ordering_only() -> None:
    """systemd.special(7): order after time-sync.target, never pull it in."""
    assert "time-sync.target" in _values("After")
    assert "time-sync.target" not in _values("Wants") + _values("Requires")
    assert "network-online.target" in _values("Wants") and "network-online.target" in _values(
        "After")


def test_serial_drivers_are_loaded_before_the_device_allow_list_is_resolved() -> None:
    """DeviceAllow=char-ttyACM/char-ttyUSB resolve through /proc/devices when the unit starts
    (systemd.resource-control(5)); modprobe@ units, wanted and ordered before, load the USB
    serial drivers whether or not a board is plugged in, so a board plugged in later is
    allowed."""
    for module in ("cdc_acm", "usbserial"):
        assert f"modprobe@{module}.service" in _values("Wants")
        assert f"modprobe@{module}.service" in _values("After")
    assert _values("DevicePolicy") == ["closed"]
    assert "char-ttyACM" in _values("DeviceAllow") and "char-ttyUSB" in _values("DeviceAllow")
    assert _values("PrivateDevices") == ["no"]  # a private /dev would freeze at start
    readme = (ROOT / "README.md").read_text(encoding="utf-8")  # says which mechanism it is
    assert "modprobe@cdc_acm.service" in readme and "systemd.resource-control(5)" in readme
    template = Path("/lib/systemd/system/modprobe@.service")
    if template.exists():  # this machine's systemd ships the template the unit names
        assert "modprobe" in template.read_text()


def test_open_files_have_headroom_above_the_connection_caps() -> None:
    """1,100 slow connections hit the default 1,024; the unit leaves room well above that."""
    assert len(_values("LimitNOFILE")) == 1
    assert int(_values("LimitNOFILE")[0]) >= 8192
