"""Atomic replacement: readers see the old file or the new one, with the permissions asked for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from display.files import atomic_write


def test_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["status.json"]


def test_mode_is_applied_and_a_leftover_temporary_file_does_not_leak_its_own(
        tmp_path: Path) -> None:
    path = tmp_path / "room-display.toml"
    leftover = tmp_path / ".room-display.toml.tmp"
    leftover.write_text("from a crash")
    leftover.chmod(0o644)
    atomic_write(path, b"secret = 1\n", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"secret = 1\n"
    assert not leftover.exists()


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "x.json"
    with pytest.raises(FileNotFoundError):
        atomic_write(path, b"data")
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "child").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(target, b"data")  # a directory cannot be replaced by a file
    assert (target / "child").read_text() == "keep"
    assert not (tmp_path / ".dir-in-the-way.tmp").exists()
