"""Config: every mistake is one line naming the file, the key and the fix; exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from display.config import Secret, load_config, parse_config
from display.errors import ConfigError

GOOD = """
[node]
name = "pi-3f-east"
timezone = "Asia/Shanghai"
language = "zh+en"
[feishu]
app_id = "cli_x"
app_secret = "env:RD_TEST_SECRET"
[mqtt]
url = "mqtt://broker.local:1883"
password = "file:secret.txt"
[[rooms]]
open_id = "omm_1"
name = "3F 大会议室"
[[rooms.devices]]
id = "door-led"
kind = "led"
url = "/dev/serial/by-id/usb-room-display?baud=115200"
colours = { busy = "#ff0000" }
[[rooms.devices]]
id = "door-sign"
kind = "eink"
url = "virtual:panels"
size = "800x480"
palette = "bwr"
"""


def test_good_config_loads_with_secrets_hidden(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RD_TEST_SECRET", "s3cret")
    (tmp_path / "secret.txt").write_text("pw\n")
    config = parse_config(GOOD, tmp_path / "c.toml")
    assert config.role == "bridge"
    assert config.feishu is not None and config.feishu.app_secret.reveal() == "s3cret"
    assert "s3cret" not in repr(config)
    assert config.mqtt is not None and config.mqtt.password == Secret("pw")
    sign = config.rooms[0].devices[1]
    assert (sign.size, sign.palette.value, sign.scheme) == ((800, 480), "bwr", "virtual")
    assert sign.url == f"virtual:{tmp_path / 'panels'}"
    assert config.rooms[0].devices[0].colours["busy"] == (255, 0, 0)
    assert config.rooms[0].devices[0].protocol == "panel"


BAD = [
    ("invalid toml", "[node\n", "", "invalid TOML"),
    ("unknown section", "[nodes]\n", "nodes", "unknown section"),
    ("unknown key", "[node]\ntimezon = 'UTC'\n", "node.timezon", "unknown key"),
    ("bad zone", "[node]\ntimezone = 'Mars/Base'\n", "node.timezone", "unknown time zone"),
    ("bad language", "[node]\nlanguage = 'fr'\n", "node.language", "not supported"),
    ("minutes type", "[occupancy]\nsoon_minutes = '10'\n", "occupancy.soon_minutes",
     "must be an integer"),
    ("minutes range", "[occupancy]\nending_minutes = -1\n", "occupancy.ending_minutes",
     "out of range"),
    ("feishu mode", "[feishu]\nmode = 'poll'\n", "feishu.mode", "not supported"),
    ("missing app id", "[feishu]\napp_secret = 'x'\n", "feishu.app_id", "is required"),
    ("missing env", "[feishu]\napp_id = 'a'\napp_secret = 'env:RD_NOPE_NOT_SET'\n",
     "feishu.app_secret", "RD_NOPE_NOT_SET is not set"),
    ("missing secret file", "[feishu]\napp_id = 'a'\napp_secret = 'file:/nonexistent/s'\n",
     "feishu.app_secret", "cannot read secret file"),
    ("bad listen", "[feishu]\nmode = 'webhook'\nlisten = 'localhost'\n", "feishu.listen",
     "HOST:PORT"),
    ("resync type", "[feishu]\nmode = 'webhook'\nresync = 'yes'\n", "feishu.resync",
     "must be true or false"),
    ("resync range", "[feishu]\nmode = 'webhook'\nresync_minutes = 2000\n",
     "feishu.resync_minutes", "out of range"),
    ("bad mqtt url", "[mqtt]\nurl = 'http://x'\n", "mqtt.url", "not an MQTT URL"),
    ("room without id", "[[rooms]]\nname = 'x'\n", "rooms[0].open_id", "is required"),
    ("duplicate room", "[[rooms]]\nopen_id = 'a'\n[[rooms]]\nopen_id = 'a'\n",
     "rooms[1].open_id", "listed twice"),
    ("duplicate device",
     "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nurl = 'virtual:x'\n"
     "[[rooms]]\nopen_id = 'b'\n[[rooms.devices]]\nid = 'd'\nurl = 'virtual:x'\n",
     "rooms[1].devices[0].id", "used twice"),
    ("bad size", "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nkind = 'eink'\n"
     "url = 'virtual:x'\nsize = '800x48O'\n", "rooms[0].devices[0].size", "not a panel size"),
    ("bad palette", "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nkind = 'eink'\n"
     "url = 'virtual:x'\npalette = 'rgb'\n", "rooms[0].devices[0].palette", "not a palette"),
    ("bad kind", "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nkind = 'lamp'\n"
     "url = 'virtual:x'\n", "rooms[0].devices[0].kind", "not a device kind"),
    ("bad colour", "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\nurl = 'virtual:x'\n"
     "colours = { busy = 'red' }\n", "rooms[0].devices[0].colours.busy", "not a colour"),
    ("no url", "[[rooms]]\nopen_id = 'a'\n[[rooms.devices]]\nid = 'd'\n",
     "rooms[0].devices[0].url", "is required"),
]


@pytest.mark.parametrize(("name", "text", "key", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_key_and_problem(tmp_path: Path, name: str, text: str, key: str,
                                               problem: str) -> None:
    path = tmp_path / "bad.toml"
    with pytest.raises(ConfigError) as err:
        parse_config(text, path)
    assert err.value.key == key
    assert problem in str(err.value)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_in_one_line_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[node]\nlanguage = 'fr'\n")
    for command in (["check"], ["status"], ["run"]):
        proc = subprocess.run([sys.executable, "-m", "display", *command, "-c", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"room-display: {path}: node.language: 'fr' is not supported (use zh | en | zh+en)"]


def test_cli_usage_error_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "display", "frobnicate"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize("name", ["single-box", "bridge", "agent", "webhook"])
def test_examples_are_valid(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    for secret in ("feishu-app-secret", "mqtt-password", "feishu-verification-token",
                   "feishu-encrypt-key"):
        (creds / secret).write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("FEISHU_APP_SECRET", "x")
    monkeypatch.setenv("MQTT_PASSWORD", "x")
    root = Path(__file__).resolve().parents[3]
    config = load_config(root / "examples" / f"{name}.toml")
    assert config.role == {"single-box": "single", "bridge": "bridge", "agent": "agent",
                           "webhook": "single"}[name]
    if name == "webhook":  # every webhook key is in the example, with a value run accepts
        assert config.feishu is not None and config.feishu.mode == "webhook"
        assert config.feishu.verification_token and config.feishu.encrypt_key
        text = (root / "examples" / "webhook.toml").read_text()
        for key in ("verification_token", "encrypt_key", "listen", "path", "max_body_bytes",
                    "replay_window_seconds"):
            assert f"\n{key} = " in text


@pytest.mark.parametrize(("keys", "enabled"), [
    ("", True), ("resync_minutes = 0\n", False), ("resync = false\n", False),
    ("resync_minutes = 5\n", True)])
def test_resync_switches(tmp_path: Path, keys: str, enabled: bool) -> None:
    config = parse_config("[feishu]\nmode = 'webhook'\n" + keys, tmp_path / "c.toml")
    assert config.feishu is not None and config.feishu.resync_enabled is enabled


WLED_MQTT = """
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[rooms]]
open_id = "omm_a"
name = "A"
[[rooms.devices]]
id = "a-wled"
kind = "led"
url = "mqtt:{topic}"
protocol = "{protocol}"
"""


def test_a_wled_mqtt_topic_longer_than_wled_takes_is_refused(tmp_path: Path) -> None:
    """WLED keeps its device topic in ``char[MQTT_MAX_TOPIC_LEN + 1]``, 32 by default."""
    path = tmp_path / "room-display.toml"
    fits = "wled/" + "x" * 27  # 32 characters
    parse_config(WLED_MQTT.format(topic=fits, protocol="wled"), path)
    parse_config(WLED_MQTT.format(topic=fits + "y", protocol="json"), path)  # not WLED: no limit
    with pytest.raises(ConfigError) as caught:
        parse_config(WLED_MQTT.format(topic=fits + "y", protocol="wled"), path)
    assert str(caught.value) == (
        f"{path}: rooms[0].devices[0].url: WLED's MQTT device topic {fits}y is 33 characters, "
        "WLED takes at most 32 (MQTT_MAX_TOPIC_LEN) (use a shorter topic, e.g. "
        '"mqtt:wled/3f-east", and set the same Device Topic in WLED)')
    # `check` names it in one line, as every config problem.
    path.write_text(WLED_MQTT.format(topic=fits + "y", protocol="wled"))
    proc = subprocess.run([sys.executable, "-m", "display", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"room-display: {caught.value}"]


def test_mqtt_url_takes_one_broker_or_a_list_in_the_order_they_are_tried(tmp_path: Path) -> None:
    one = parse_config("[mqtt]\nurl = 'mqtt://broker.local'\n", tmp_path / "c.toml").mqtt
    two = parse_config("[mqtt]\nurl = ['mqtts://a.local', 'mqtts://b.local:9883']\n",
                       tmp_path / "c.toml").mqtt
    assert one is not None and two is not None
    assert (one.brokers, one.tls) == ((("broker.local", 1883),), False)
    assert (two.brokers, two.tls) == ((("a.local", 8883), ("b.local", 9883)), True)
    assert (two.host, two.port) == ("a.local", 8883)


@pytest.mark.parametrize(("text", "key", "secret"), [
    ("[web]\nlisten = '0.0.0.0:8470'\ntoken = 'credential:web-token'\n", "web.token",
     "credential:web-token"),
    ("[feishu]\napp_id = 'cli_x'\napp_secret = 'credential:feishu-app-secret'\n",
     "feishu.app_secret", "credential:feishu-app-secret")])
def test_an_empty_credential_is_named_not_called_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str,
        secret: str) -> None:
    # As under systemd after the file was written but before a restart: the service's copy
    # of the credential (LoadCredential=, taken at start) is still the empty file.
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / secret.removeprefix("credential:")).write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "c.toml")
    message = str(err.value)
    assert err.value.key == key and f"but {secret} is empty" in message
    assert "systemctl restart room-display" in message and "\n" not in message
