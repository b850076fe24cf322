"""``room-display map``: edits in place keep comments, validate first, write nothing on error."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from display.cli import main
from display.config import load_config

ORIGINAL = """\
# Site config for the 3rd floor. Keep this comment!
[node]
name = "pi-3f"   # the Pi by the east door
timezone = "Asia/Shanghai"

# The big room
[[rooms]]
open_id = "omm_big"
name = "3F 大会议室"

[[rooms.devices]]
id = "big-led"   # LED strip over the door
kind = "led"
url = "virtual:panels"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(ORIGINAL, encoding="utf-8")
    path.chmod(0o640)
    return path


def run(path: Path, *args: str) -> int:
    return main(["map", *args, "-c", str(path)])


def test_list(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config_file) == 0
    out = capsys.readouterr().out
    assert "omm_big  3F 大会议室" in out and "big-led" in out


def test_add_rename_and_remove_keep_comments(config_file: Path) -> None:
    assert run(config_file, "add-room", "omm_small", "3F Small") == 0
    assert run(config_file, "add-device", "3F Small", "small-sign", "--kind", "eink",
               "--url", "virtual:panels", "--size", "400x300", "--palette", "bwr") == 0
    assert run(config_file, "rename-room", "omm_big", "3F Boardroom") == 0
    config = load_config(config_file)
    assert [(r.open_id, r.name) for r in config.rooms] == [("omm_big", "3F Boardroom"),
                                                           ("omm_small", "3F Small")]
    assert config.rooms[1].devices[0].size == (400, 300)
    text = config_file.read_text(encoding="utf-8")
    for comment in ("# Site config for the 3rd floor. Keep this comment!",
                    "# the Pi by the east door", "# The big room", "# LED strip over the door"):
        assert comment in text
    assert config_file.stat().st_mode & 0o777 == 0o640
    assert run(config_file, "remove-device", "big-led") == 0
    assert run(config_file, "remove-room", "3F Small") == 0
    config = load_config(config_file)
    assert [(r.open_id, r.devices) for r in config.rooms] == [("omm_big", ())]
    assert "# Site config for the 3rd floor. Keep this comment!" in config_file.read_text()


@pytest.mark.parametrize("args", [
    ("rename-room", "omm_nope", "X"),
    ("remove-room", "nope"),
    ("remove-device", "nope"),
    ("add-device", "omm_big", "big-led", "--kind", "led", "--url", "virtual:x"),  # duplicate id
    ("add-device", "omm_big", "sign", "--kind", "eink", "--url", "virtual:x", "--size", "huge"),
    ("add-room", "omm_big", "again"),  # duplicate room
])
def test_bad_edit_changes_nothing_and_says_why(config_file: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              args: tuple[str, ...]) -> None:
    assert run(config_file, *args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"room-display: {config_file}")
    assert config_file.read_text(encoding="utf-8") == ORIGINAL


def test_invalid_toml_is_reported_not_rewritten(config_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config_file.write_text("[node\n")
    assert run(config_file, "add-room", "omm_x", "X") == 1
    assert "invalid TOML" in capsys.readouterr().err
    assert config_file.read_text() == "[node\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root (CI runs as root)")
def test_map_as_root_keeps_owner_group_and_mode(config_file: Path) -> None:
    """``sudo room-display map`` on root:GROUP 0640 leaves root:GROUP 0640 (the service reads it
    through GROUP), not root:root."""
    group = grp.getgrnam("daemon").gr_gid  # a non-root group every Debian has
    os.chown(config_file, 0, group)
    before = config_file.stat().st_ino
    assert run(config_file, "add-room", "omm_new", "New Room") == 0
    after = config_file.stat()
    assert after.st_ino != before, "replaced (atomically), not rewritten in place"
    assert (after.st_uid, after.st_gid, after.st_mode & 0o7777) == (0, group, 0o640)
    assert [r.open_id for r in load_config(config_file).rooms][-1] == "omm_new"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_map_refuses_when_it_cannot_keep_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    """User nobody owns the config but not its group: map cannot give the new file that
    group, so it says so in one line and leaves the file as it was."""
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrnam("daemon").gr_gid
    folder = Path(tempfile.mkdtemp(prefix="rd-map-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        path = folder / "room-display.toml"
        path.write_text(ORIGINAL, encoding="utf-8")
        os.chown(path, nobody.pw_uid, group)
        path.chmod(0o640)

        groups = os.getgroups()
        os.setgroups([])
        os.setegid(nobody.pw_gid)
        os.seteuid(nobody.pw_uid)
        try:
            code = run(path, "add-room", "omm_new", "New")
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(groups)
        err = capsys.readouterr().err
        assert code == 1, err
        assert "cannot keep its owner and group" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert path.read_text(encoding="utf-8") == ORIGINAL
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, group)
        assert not list(folder.glob(".*.tmp"))
    finally:
        shutil.rmtree(folder)
