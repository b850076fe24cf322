"""``check`` on a config whose webhook and web page would listen on one socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from display.cli import main
from display.cli.check import check_listen_clash
from display.config import load_config

CONFIG = """
[node]
name = "clash"
timezone = "UTC"
state_dir = "state"
[feishu]
mode = "{mode}"
listen = "{feishu}"
verification_token = "t"
app_id = "cli_check"
app_secret = "env:CHECK_TEST_WEB_TOKEN"
domain = "http://127.0.0.1:9"
resync = false
[web]
listen = "{web}"
token = "env:CHECK_TEST_WEB_TOKEN"
[[rooms]]
open_id = "omm_a"
name = "Room A"
"""


def _problems(tmp_path: Path, feishu: str, web: str, mode: str = "webhook") -> list[str]:
    path = tmp_path / "room-display.toml"
    path.write_text(CONFIG.format(mode=mode, feishu=feishu, web=web), encoding="utf-8")
    return [line for line, ok in check_listen_clash(load_config(path)) if not ok]


@pytest.mark.parametrize(("feishu", "web"), [
    ("127.0.0.1:7777", "127.0.0.1:7777"),
    ("0.0.0.0:7777", "127.0.0.1:7777"),
    ("192.168.1.5:8470", "0.0.0.0:8470"),
    ("[::]:7777", "127.0.0.1:7777"),
    ("localhost:7777", "127.0.0.1:7777"),
    ("[::1]:7777", "[::1]:7777"),
])
def test_one_socket_for_two_listeners_is_a_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feishu: str, web: str) -> None:
    monkeypatch.setenv("CHECK_TEST_WEB_TOKEN", "secret")
    problems = _problems(tmp_path, feishu, web)
    assert problems == [f"[feishu] listen {feishu} clashes with [web] listen {web} (one port, "
                        "one program): give one of them another port"]


@pytest.mark.parametrize(("feishu", "web", "mode"), [
    ("127.0.0.1:7777", "127.0.0.1:8470", "webhook"),
    ("127.0.0.1:7777", "127.0.0.2:7777", "webhook"),
    ("0.0.0.0:7777", "[::1]:7777", "webhook"),
    ("127.0.0.1:0", "127.0.0.1:0", "webhook"),
    ("127.0.0.1:7777", "127.0.0.1:7777", "long_connection"),  # listen unused
])
def test_distinct_sockets_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feishu: str,
                                   web: str, mode: str) -> None:
    monkeypatch.setenv("CHECK_TEST_WEB_TOKEN", "secret")
    assert _problems(tmp_path, feishu, web, mode) == []


def test_check_exits_1_naming_the_clash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECK_TEST_WEB_TOKEN", "secret")
    path = tmp_path / "room-display.toml"
    path.write_text(CONFIG.format(mode="webhook", feishu="127.0.0.1:7777", web="127.0.0.1:7777"),
                    encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 1
    assert "clashes with [web] listen 127.0.0.1:7777" in capsys.readouterr().out
