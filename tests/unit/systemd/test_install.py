"""scripts/install-pi by role: what it lays out, what it prints, and that the result runs.

The installer runs for real under ``--root`` with ``--dry-run``: every file under the root is
written as on a Pi, every command that would change this machine (apt, useradd, chown,
systemctl) is printed instead. Then ``room-display check`` reads the installed config with the
installed credentials layout, against a real broker and the Feishu stand-in.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from display.cli import main
from display.config import load_config
from display.testing.broker import Broker
from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi

ROOT = Path(__file__).resolve().parents[3]
INSTALL = ROOT / "scripts" / "install-pi"
UNIT_CREDENTIALS = {"feishu-app-secret", "feishu-verification-token", "feishu-encrypt-key",
                    "mqtt-password", "web-token"}
EXAMPLE = {"single": "single-box.toml", "bridge": "bridge.toml", "agent": "agent.toml"}
#: The secrets each role's installed config reads (the rest stay empty placeholders).
ROLE_SECRETS = {"single": {"feishu-app-secret"}, "bridge": {"feishu-app-secret", "mqtt-password"},
                "agent": {"mqtt-password"}}


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INSTALL), "--root", str(root), "--dry-run", *args],
                          capture_output=True, text=True, timeout=120)


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


@pytest.mark.parametrize("role", ["single", "bridge", "agent"])
def test_dry_run_lays_out_the_role_and_prints_every_step(role: str, tmp_path: Path) -> None:
    root = tmp_path / "pi"
    proc = install(root, "--role", role)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    etc = root / "etc" / "room-display"
    config = etc / "config.toml"
    # The role's example, with the service's state directory added, group-readable only.
    example = (ROOT / "examples" / EXAMPLE[role]).read_text(encoding="utf-8")
    installed = config.read_text(encoding="utf-8")
    assert installed.splitlines()[0] == example.splitlines()[0]
    assert installed.replace(
        'state_dir = "/var/lib/room-display"   # the service\'s StateDirectory\n', "") == example
    assert load_config(config, resolve_secrets=False).role == role
    assert load_config(config, resolve_secrets=False).node.state_dir == Path(
        "/var/lib/room-display")
    assert mode(config) == "0o640"
    assert f"would run: chown root:room-display {config}" in out
    # Credentials: root-only directory, one 0600 file per LoadCredential= of the unit.
    assert mode(etc / "credentials") == "0o700"
    assert {p.name for p in (etc / "credentials").iterdir()} == UNIT_CREDENTIALS
    for secret in UNIT_CREDENTIALS:
        assert mode(etc / "credentials" / secret) == "0o600"
        assert (etc / "credentials" / secret).read_text() == ""
    assert f"would run: chown -R root:root {etc}/credentials" in out
    # The role's own secrets are named to the installer.
    needs = next(line for line in out.splitlines() if f"credentials for role {role}" in line)
    for secret in ROLE_SECRETS[role]:
        assert secret in needs
    # The next step names the secret's file where this install put it (under --root).
    first = "mqtt-password" if role == "agent" else "feishu-app-secret"
    assert f"sudoedit {etc}/credentials/{first}" in out
    if role == "agent":
        assert "feishu" not in needs
    # The unit, the udev rule, the program and room-display on PATH.
    unit = root / "etc" / "systemd" / "system" / "room-display.service"
    assert unit.read_text() == (ROOT / "systemd" / "room-display.service").read_text()
    assert mode(unit) == "0o644"
    assert mode(root / "etc" / "udev" / "rules.d" / "99-room-display.rules") == "0o644"
    assert (root / "opt" / "room-display" / "display" / "node.py").exists()
    link = root / "usr" / "local" / "bin" / "room-display"
    assert os.readlink(link) == "/opt/room-display/.venv/bin/room-display"
    # Every step that changes the system is printed, in order, and none is run.
    lines = out.splitlines()
    expected = ["would run: apt-get update", "would run: apt-get install",
                "would run: python3 -m venv", f"would run: {root}/opt/room-display/.venv/bin/pip",
                "would run: chown root:room-display", "would run: udevadm control",
                "would run: systemctl daemon-reload",
                "would run: systemctl enable room-display.service",
                "would run: systemctl try-restart room-display.service"]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(e)) for e in expected]
    assert positions == sorted(positions)
    # Every file written under the root is printed too.
    assert f"+ install -m 0640 examples/{EXAMPLE[role]} (with state_dir) {config}" in out
    assert f"+ install -m 0600 /dev/null {etc}/credentials/web-token" in out
    assert "room-display check" in lines[-1]


def test_rerun_upgrades_and_keeps_config_and_credentials(tmp_path: Path) -> None:
    root = tmp_path / "pi"
    assert install(root, "--role", "bridge").returncode == 0
    etc = root / "etc" / "room-display"
    (etc / "config.toml").write_text("# edited by the site\n[feishu]\n[mqtt]\n")
    (etc / "credentials" / "feishu-app-secret").write_text("s3cret\n")
    os.chmod(etc / "credentials" / "feishu-app-secret", 0o644)  # loosened by hand
    stale = root / "opt" / "room-display" / "display" / "removed_upstream.py"
    stale.write_text("")
    (root / "opt" / "room-display" / ".venv").mkdir()
    (root / "opt" / "room-display" / ".venv" / "kept").write_text("")
    proc = install(root, "--role", "agent")  # even another role keeps what is there
    assert proc.returncode == 0, proc.stderr
    assert (etc / "config.toml").read_text() == "# edited by the site\n[feishu]\n[mqtt]\n"
    assert "kept " + str(etc / "config.toml") in proc.stdout
    assert "note: the kept config is for role bridge, not agent" in proc.stdout
    assert (etc / "credentials" / "feishu-app-secret").read_text() == "s3cret\n"
    assert mode(etc / "credentials" / "feishu-app-secret") == "0o600"
    assert mode(etc / "config.toml") == "0o640"
    assert not stale.exists(), "an upgrade leaves no file the new version removed"
    assert (root / "opt" / "room-display" / ".venv" / "kept").exists(), "the venv is kept"
    assert (root / "opt" / "room-display" / "display" / "node.py").exists()
    assert "would run: systemctl try-restart room-display.service" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "kiosk"], "install-pi: unknown role 'kiosk': use single, bridge or agent"),
    ([], "install-pi: --role is required: single, bridge or agent"),
    (["--role"], "usage: install-pi --role single|bridge|agent"),
])
def test_a_wrong_role_is_one_line_and_changes_nothing(args: list[str], message: str,
                                                      tmp_path: Path) -> None:
    root = tmp_path / "pi"
    proc = install(root, *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1
    assert proc.stdout == ""
    assert not root.exists()


def test_dry_run_without_root_changes_nothing(tmp_path: Path) -> None:
    watched = [Path("/opt/room-display"), Path("/etc/room-display"),
               Path("/usr/local/bin/room-display"),
               Path("/etc/systemd/system/room-display.service")]
    before = [p.exists() for p in watched]
    proc = subprocess.run([str(INSTALL), "--role", "single", "--dry-run"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.exists() for p in watched] == before
    assert not [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert "would run: install -m 0644" in proc.stdout and "/etc/systemd/system/" in proc.stdout
    assert "would run: systemctl enable room-display.service" in proc.stdout


def test_help_shows_the_roles() -> None:
    proc = subprocess.run([str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert "--role single" in proc.stdout and "--role agent" in proc.stdout
    assert "--dry-run" in proc.stdout


@pytest.mark.parametrize("role", ["single", "bridge", "agent"])
def test_installed_config_passes_check_with_its_credentials(
        role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The example a role installs, with its secrets written where the installer put their
    files, passes ``check`` against a real broker (which refuses anonymous logins) and the
    Feishu stand-in: only the boards (not plugged into this machine) are missing."""
    root = tmp_path / "pi"
    assert install(root, "--role", role).returncode == 0
    etc = root / "etc" / "room-display"
    config = etc / "config.toml"
    text = config.read_text(encoding="utf-8")
    # This machine's stand-ins for the site: a state dir here, the stand-in Feishu, a broker.
    text = text.replace('state_dir = "/var/lib/room-display"', f'state_dir = "{tmp_path}/state"')
    secrets = {name: f"{name}-value" for name in ROLE_SECRETS[role]}
    for name, value in secrets.items():
        (etc / "credentials" / name).write_text(value + "\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)  # as `sudo room-display check`
    with FeishuStandIn(app_id="cli_a1b2c3d4e5f6",
                       app_secret=secrets.get("feishu-app-secret", "unused")) as standin:
        FreeBusyApi(standin)
        if "[feishu]" in text:
            text = text.replace("[feishu]\n", f'[feishu]\ndomain = "{standin.domain}"\n', 1)
        broker = None
        if "[mqtt]" in text:
            user = re.search(r'^username = "([^"]+)"', text, re.M)
            assert user is not None
            broker = Broker(tmp_path / "broker", users={user[1]: secrets["mqtt-password"]})
            broker.start()
            text = text.replace("mqtt://broker.local:1883", broker.url)
        config.write_text(text, encoding="utf-8")
        try:
            code = main(["check", "-c", str(config)])
        finally:
            if broker is not None:
                broker.stop()
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    if role == "bridge":  # no boards: every check passes
        assert code == 0 and not problems, out
    else:  # the example's boards are not plugged into this machine
        assert code == 1 and problems, out
    for line in problems:
        assert re.match(r"PROBLEM device \S+ \(\w+, /dev/\S+\): /dev/\S+ does not exist", line), out
    if role != "agent":
        assert "credentials accepted" in out
    if role != "single":
        assert re.search(r"^ok .*broker", out, re.M | re.I), out
