"""The config schema is said once: keys, defaults and closed sets come from the dataclasses, and
what a user reads (every error line, the README's key table) is held against them."""

from __future__ import annotations

import dataclasses
import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from display import config_schema as schema
from display.config import (
    WEB_SWITCH,
    CheckinConfig,
    DetailsConfig,
    DeviceConfig,
    DeviceKind,
    FeishuConfig,
    MqttConfig,
    NodeConfig,
    OccupancyConfig,
    RoomConfig,
    Secret,
    WebConfig,
    parse_config,
)
from display.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

SECTIONS: dict[str, type] = {
    "node": NodeConfig, "occupancy": OccupancyConfig, "feishu": FeishuConfig,
    "mqtt": MqttConfig, "web": WebConfig, "rooms": RoomConfig, "rooms.devices": DeviceConfig,
    "details": DetailsConfig,
    "checkin": CheckinConfig}


def _error_lines() -> list[tuple[str, str]]:
    rows = []
    for line in (HERE / "error_lines.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            text, expected = line.split("\t")
            rows.append((text.replace("\\n", "\n") + "\n", expected))
    return rows


ERROR_LINES = _error_lines()


@pytest.mark.parametrize(("text", "expected"), ERROR_LINES,
                         ids=[expected.split(":")[0] for _, expected in ERROR_LINES])
def test_every_error_line_is_exactly_as_before(text: str, expected: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RD_NOPE", raising=False)
    path = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as err:
        parse_config(text, path)
    assert str(err.value) == f"{path}: {expected}"


def test_the_error_table_covers_every_section_and_closed_set() -> None:
    keys = {expected.split(":")[0] for _, expected in ERROR_LINES}
    for name in ("node.language", "node.clock", "feishu.mode", "mqtt.protocol",
                 "rooms[0].devices[0].kind", "rooms[0].devices[0].protocol",
                 "rooms[0].devices[0].palette", "rooms[0].devices[0].effects.soon"):
        assert name in keys
    assert len(ERROR_LINES) > 100


def _toml(value: Any) -> str | None:
    """``value`` as TOML, or None when it has no TOML spelling (a derived or empty default)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return f'"{value.value}"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return f'"{value}"'
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f'"{value[0]}x{value[1]}"'
    return None


def _defaults(section: type) -> dict[str, str]:
    """Each key of ``section`` with a constant default, spelt in TOML."""
    out = {}
    for f in dataclasses.fields(section):
        spelt = _toml(schema.default(f))
        if spelt is not None:
            out[f.name] = spelt
    return out


def test_readme_table_lists_every_key_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `\[{1,2}([\w.]+)\]{1,2} (\w+)` \| (.*?) \|", readme, re.M)
    documented = {(section, key): default for section, key, default in rows}
    expected = {(name, f.name) for name, section in SECTIONS.items()
                for f in dataclasses.fields(section)} | {("web", WEB_SWITCH)}
    assert set(documented) == expected
    for name, section in SECTIONS.items():
        for key, spelt in _defaults(section).items():
            assert documented[name, key].startswith(f"`{spelt}`"), (name, key)


@pytest.mark.parametrize("name", ["node", "occupancy", "feishu", "mqtt", "web", "rooms.devices",
                                  "checkin"])
def test_writing_every_default_out_changes_nothing(name: str, tmp_path: Path) -> None:
    """An absent key and the key written with its documented default read the same."""
    required = {"node": "", "occupancy": "", "feishu": "mode = 'webhook'\n",
                "mqtt": "url = 'mqtt://broker'\n", "web": "", "checkin": "",
                "rooms.devices": "id = 'd'\nurl = '/dev/ttyACM0'\n"}[name]
    header = ("[[rooms]]\nopen_id = 'omm_1'\n[[rooms.devices]]\n" if name == "rooms.devices"
              else f"[{name}]\n")
    written = "".join(f"{key} = {spelt}\n" for key, spelt in _defaults(SECTIONS[name]).items()
                      if f"{key} =" not in required)
    assert written  # the section has constant defaults to write
    bare = parse_config(header + required, tmp_path / "c.toml")
    full = parse_config(header + required + written, tmp_path / "c.toml")
    assert full == bare


def test_every_section_accepts_exactly_its_fields(tmp_path: Path) -> None:
    """The allowed keys named in the error are the dataclass's fields (and their spellings)."""
    with pytest.raises(ConfigError) as err:
        parse_config("[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nurl = 'virtual:x'\n"
                     "colour = '#ffffff'\n", tmp_path / "c.toml")
    allowed = str(err.value).split("(allowed: ")[1].rstrip(")").split(", ")
    assert allowed == sorted({f.name for f in dataclasses.fields(DeviceConfig)} | {"colors"})


def test_closed_sets_still_read_as_plain_strings(tmp_path: Path) -> None:
    """Status JSON, ``map`` and every ``device.kind == "led"`` elsewhere see the same text."""
    config = parse_config("[node]\nlanguage = 'zh+en'\nclock = 'trust'\n[[rooms]]\nopen_id = 'a'\n"
                          "[[rooms.devices]]\nid = 'd'\nurl = 'mqtt:lights/a'\n",
                          tmp_path / "c.toml")
    device = config.rooms[0].devices[0]
    assert device.kind is DeviceKind.LED and device.kind == "led"
    assert device.protocol == "json"  # the default on mqtt:TOPIC
    assert json.dumps({"kind": device.kind, "protocol": device.protocol}) == \
        '{"kind": "led", "protocol": "json"}'
    assert f"{device.kind:<4}|{device.protocol}|{config.node.language}|{config.node.clock}" == \
        "led |json|zh+en|trust"


def test_secrets_stay_hidden_in_every_section(tmp_path: Path) -> None:
    config = parse_config("[feishu]\napp_id = 'a'\napp_secret = 's3cret-1'\n"
                          "[mqtt]\nurl = 'mqtt://b'\npassword = 's3cret-2'\n"
                          "[web]\ntoken = 's3cret-3'\n", tmp_path / "c.toml")
    assert config.mqtt is not None and config.mqtt.password == Secret("s3cret-2")
    assert "s3cret" not in repr(config)


def test_use_names_a_closed_set() -> None:
    assert schema.use(DeviceKind) == 'use "led" or "eink"'
    assert schema.use(("zh", "en", "zh+en")) == "use zh | en | zh+en"
