"""``room-display rooms [NAME]`` and ``map add-room`` by name, against the Feishu stand-in: what
a user reads, and nothing written when a name is unknown or ambiguous."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from display.cli import main
from display.config import load_config
from display.testing.feishu_standin import FeishuStandIn, RoomsApi, directory_room, room_level


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def api(standin: FeishuStandIn) -> RoomsApi:
    api = RoomsApi(standin)
    api.levels = {"hq": room_level("hq", "HQ"), "f3": room_level("f3", "3F", "hq"),
                  "f5": room_level("f5", "5F", "hq")}
    api.rooms = [
        directory_room("omm_east", "3F East 大会议室", capacity=12, level="f3",
                       path=("0", "hq", "f3")),
        directory_room("omm_west", "3F West", capacity=6, level="f3", path=("0", "hq", "f3")),
        directory_room("omm_focus1", "Focus 1", capacity=2, level="f5", path=("0", "hq", "f5")),
        directory_room("omm_focus2", "Focus 2", capacity=2, level="f5", path=("0", "hq", "f5")),
        directory_room("omm_focus", "focus", capacity=1, level="f5", path=("0", "hq", "f5")),
    ]
    return api


@pytest.fixture
def config(tmp_path: Path, standin: FeishuStandIn) -> Path:
    path = tmp_path / "room-display.toml"
    path.write_text(f"""# keep me
[node]
timezone = "Asia/Shanghai"
[feishu]
app_id = "{standin.app_id}"
app_secret = "{standin.app_secret}"
domain = "{standin.domain}"
[[rooms]]
open_id = "omm_west"
name = "West"
""", encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rooms_lists_ids_seats_and_where(config: Path, api: RoomsApi,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "rooms", "-c", str(config))
    assert code == 0
    lines = out.splitlines()
    assert "  omm_east    " in lines[1] and "12  HQ / 3F" in lines[1]
    assert lines[1].endswith("3F East 大会议室")
    assert lines[2].startswith("* omm_west")  # already in this config
    assert lines[-1].startswith("5 of 5 room(s)")


def test_rooms_name_filters_any_case(config: Path, api: RoomsApi,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "rooms", "FOCUS", "-c", str(config))
    assert code == 0 and out.count("omm_focus") == 3 and "omm_east" not in out
    code, out, _ = _run(capsys, "rooms", "nowhere", "-c", str(config))
    assert code == 0 and "no room's name contains 'nowhere' (5 rooms" in out


def test_rooms_json(config: Path, api: RoomsApi, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "rooms", "3f", "--json", "-c", str(config))
    assert code == 0
    assert json.loads(out) == {"rooms": [
        {"open_id": "omm_east", "name": "3F East 大会议室", "capacity": 12, "path": ["HQ", "3F"],
         "configured": False},
        {"open_id": "omm_west", "name": "3F West", "capacity": 6, "path": ["HQ", "3F"],
         "configured": True}]}


@pytest.mark.parametrize(("change", "expected"), [
    ({"scope_granted": False}, "lacks the scope vc:room:readonly (Feishu code 99991672"),
    ({"rate_limited": 1, "reset": 3600}, "rate limit (code 99991400)"),
])
def test_rooms_errors_are_one_line(config: Path, api: RoomsApi,
                                   capsys: pytest.CaptureFixture[str], change: dict[str, object],
                                   expected: str) -> None:
    api.set(**change)
    code, out, err = _run(capsys, "rooms", "-c", str(config))
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and expected in err


def test_rooms_without_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")
    code, _, err = _run(capsys, "rooms", "-c", str(path))
    assert code == 1 and "feishu.app_id: is not set" in err


def test_add_room_by_a_unique_part_of_its_name(config: Path, api: RoomsApi,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "map", "add-room", "east", "-c", str(config))
    assert code == 0 and "Feishu room '3F East 大会议室': omm_east" in out
    rooms = {r.open_id: r.name for r in load_config(config, resolve_secrets=False).rooms}
    assert rooms == {"omm_west": "West", "omm_east": "3F East 大会议室"}
    assert config.read_text(encoding="utf-8").startswith("# keep me")


def test_an_exact_name_wins_over_names_containing_it(config: Path, api: RoomsApi,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "map", "add-room", "Focus", "Quiet", "-c", str(config))[0] == 0
    rooms = {r.open_id: r.name for r in load_config(config, resolve_secrets=False).rooms}
    assert rooms["omm_focus"] == "Quiet"


@pytest.mark.parametrize(("ref", "expected"), [
    ("focus ", "'focus ' matches 2 Feishu rooms: Focus 1 (omm_focus1), Focus 2 (omm_focus2)"),
    ("3f", "'3f' matches 2 Feishu rooms: 3F East 大会议室 (omm_east), 3F West (omm_west)"),
    ("Atrium", "no Feishu room's name contains 'Atrium' (5 rooms"),
])
def test_an_ambiguous_or_unknown_name_writes_nothing(config: Path, api: RoomsApi,
                                                     capsys: pytest.CaptureFixture[str],
                                                     ref: str, expected: str) -> None:
    before = config.read_bytes()
    code, _, err = _run(capsys, "map", "add-room", ref, "-c", str(config))
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert config.read_bytes() == before


def test_an_id_asks_feishu_nothing(config: Path, api: RoomsApi,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "map", "add-room", "omm_new", "-c", str(config))[0] == 0
    assert api.calls == []
    names = {r.open_id: r.name for r in load_config(config, resolve_secrets=False).rooms}
    assert names["omm_new"] == "omm_new"
