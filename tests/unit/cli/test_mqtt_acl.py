"""``scripts/mqtt-credentials``: what it writes, what it keeps, what it refuses.

The broker running these files is rehearsed in tests/e2e/test_deploy_broker.py.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from display.cli.mqtt_acl import (
    DEFAULT_OUT,
    KEEP_MARKER,
    MAX_PACKET_BYTES,
    BrokerBridge,
    Device,
    Listener,
    Site,
    acl_text,
    bridge_conf_text,
    conf_text,
    hash_password,
    main,
    merge_passwd,
    password_matches,
    write_site,
)
from display.encode.mqtt_image import encode_image
from display.encode.planes import row_bytes

ROOT = Path(__file__).resolve().parents[3]
#: The site of examples/bridge.toml, examples/agent.toml and a 3F agent with a WLED light.
EXAMPLE = Site(bridges=("bridge-hq",), agents=("pi-5f-focus", "pi-3f-east"),
               devices=(Device("pi-3f-east", "lights/3f-east", "lights-3f-east"),),
               homeassistant="homeassistant")


def test_the_shipped_examples_are_what_the_script_writes(tmp_path: Path) -> None:
    assert (ROOT / "examples/mosquitto/room-display.acl").read_text() == acl_text(EXAMPLE)
    assert (ROOT / "examples/mosquitto/room-display.conf").read_text() == conf_text(DEFAULT_OUT)
    # ... and the command line of docs/MQTT.md writes exactly those.
    assert main(["--out", str(tmp_path), "--bridge", "bridge-hq", "--agent", "pi-5f-focus",
                 "--agent", "pi-3f-east", "--device", "pi-3f-east=lights/3f-east",
                 "--homeassistant", "homeassistant"]) == 0
    assert (tmp_path / "room-display.acl").read_text() == acl_text(EXAMPLE)
    assert (tmp_path / "room-display.conf").read_text() == conf_text(tmp_path)


def test_the_acl_has_no_pattern_lines_and_every_account_a_section() -> None:
    text = acl_text(EXAMPLE)
    assert not [line for line in text.splitlines() if line.startswith("pattern")]
    users = [line.split()[1] for line in text.splitlines() if line.startswith("user ")]
    assert users == ["bridge-hq", "pi-5f-focus", "pi-3f-east", "homeassistant",
                     "lights-3f-east"]
    assert "user bridge-hq\n" in text and "topic read room-display/v1/nodes/+/status" in text
    assert text.endswith(KEEP_MARKER + "\n")


def test_the_conf_listens_everywhere_binds_client_ids_and_caps_packets() -> None:
    text = conf_text(Path("/x"))
    assert "\nlistener 1883\n" in text
    assert "\nuse_username_as_clientid true\n" in text
    assert f"\nmax_packet_size {MAX_PACKET_BYTES}\n" in text
    assert "\npassword_file /x/passwd\n" in text and "\nacl_file /x/room-display.acl\n" in text
    assert "\nlistener 1884 10.0.0.5\n" in conf_text(Path("/x"), Listener(1884, "10.0.0.5"))


def test_the_packet_cap_fits_the_largest_e_ink_image() -> None:
    """A 2000x2000 black-and-red panel of incompressible pixels, with a long topic."""
    plane = row_bytes(2000) * 2000
    payload = encode_image(2000, 2000, secrets.token_bytes(plane), secrets.token_bytes(plane))
    topic = "site/building-one/floor-12/room-display-eink-signs/" + "x" * 100
    fixed_header, packet_id = 5, 2
    assert fixed_header + 2 + len(topic) + packet_id + len(payload) < MAX_PACKET_BYTES
    assert len(payload) > 256 * 1024, "bigger than a schedule: the image sets the cap"


def test_hashes_are_mosquittos_own() -> None:
    stored = hash_password("s3cret")
    kind, rounds, salt, digest = stored.split("$")[1:]
    assert (kind, rounds) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64
    assert password_matches(stored, "s3cret") and not password_matches(stored, "other")
    assert not password_matches("$6$abc$def", "s3cret")
    assert not password_matches("$7$101$!!$!!", "s3cret")
    assert hash_password("s3cret", salt=b"\0" * 12) == hash_password("s3cret", salt=b"\0" * 12)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_a_hash_mosquitto_passwd_made_is_recognised(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "ha", "pw-of-ha"], check=True,
                   capture_output=True)  # the test's own password, on purpose
    line = passwd.read_text()
    assert password_matches(line.split(":", 1)[1].strip(), "pw-of-ha")
    assert merge_passwd(line, {"ha": "pw-of-ha"}) == line, "a matching line is kept as it is"


def test_merge_keeps_lines_it_does_not_manage_and_changes_only_wrong_hashes() -> None:
    hand = f"by-hand:{hash_password('x')}"
    good = f"agent-1:{hash_password('a1')}"
    stale = f"agent-2:{hash_password('old')}"
    merged = merge_passwd("\n".join([hand, good, stale, "# a comment"]) + "\n",
                          {"agent-1": "a1", "agent-2": "new", "agent-3": "a3"}).splitlines()
    assert merged[0] == hand and merged[1] == good and merged[3] == "# a comment"
    assert merged[2].startswith("agent-2:") and password_matches(merged[2][8:], "new")
    assert merged[4].startswith("agent-3:") and password_matches(merged[4][8:], "a3")


def test_running_again_keeps_passwords_rotate_changes_them(tmp_path: Path) -> None:
    site = Site(bridges=("b",), agents=("a",))
    write_site(site, tmp_path)
    first = (tmp_path / "credentials/a/mqtt-password").read_text()
    with (tmp_path / "room-display.acl").open("a") as acl:
        acl.write("user mine\ntopic read mine/#\n")
    written = write_site(Site(bridges=("b",), agents=("a", "c")), tmp_path)
    assert (tmp_path / "credentials/a/mqtt-password").read_text() == first
    assert tmp_path / "credentials/c/mqtt-password" in written
    assert tmp_path / "credentials/a/mqtt-password" not in written
    assert (tmp_path / "room-display.acl").read_text().endswith(
        KEEP_MARKER + "\nuser mine\ntopic read mine/#\n")
    write_site(site, tmp_path, rotate=True)
    assert (tmp_path / "credentials/a/mqtt-password").read_text() != first
    assert (tmp_path / "credentials/a/mqtt-password").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(("args", "wanted"), [
    (["--device", "a-lights"], "write NODE=TOPIC or NODE=TOPIC=USER"),
    (["--device", "a=lights/#"], "no wildcards"),
    (["--device", "a=lights/a=bad/user"], "--device user 'bad/user' is not a node name"),
    (["--agent", "a/b"], "--agent 'a/b' is not a node name"),
    (["--listen", "0.0.0.0:99999"], "--listen '0.0.0.0:99999': write PORT or ADDRESS:PORT"),
    (["--homeassistant", "b"], "b: a node name cannot also be"),
    (["--device", "x=lights/x"], "--device names x, which is neither a --bridge nor an --agent"),
])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path: Path, args: list[str],
                                                      wanted: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        main(["--out", str(out), "--bridge", "b", *args])
    assert wanted in str(refused.value) and "\n" not in str(refused.value)
    assert not out.exists()


def test_listen_and_the_broker_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--bridge", "b", "--listen", "192.0.2.7:1884",
                 "--group", "no-such-group-here"]) == 0
    assert "\nlistener 1884 192.0.2.7\n" in (tmp_path / "room-display.conf").read_text()
    assert "no group 'no-such-group-here'" in capsys.readouterr().err
    assert (tmp_path / "passwd").stat().st_gid == os.getegid()


def test_docs_show_exactly_the_generated_files() -> None:
    docs = (ROOT / "docs/MQTT.md").read_text()
    for name in ("room-display.conf", "room-display.acl"):
        assert "```\n" + (ROOT / "examples/mosquitto" / name).read_text() + "```" in docs, name
    assert "--device pi-3f-east=lights/3f-east --homeassistant homeassistant" in docs


def test_a_broker_bridge_gets_an_account_and_the_standbys_bridge_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--bridge", "bridge-a", "--bridge", "bridge-b",
                 "--agent", "pi-1", "--device", "pi-1=lights/a", "--broker-bridge",
                 "broker-b=broker-a.local"]) == 0
    password = (tmp_path / "credentials/broker-b/mqtt-password").read_text().strip()
    conf = tmp_path / "room-display-bridge-broker-b.conf"
    lines = conf.read_text().splitlines()
    assert conf.stat().st_mode & 0o777 == 0o640, "it holds a password"
    assert "address broker-a.local:1883" in lines and "try_private true" in lines
    assert f"remote_password {password}" in lines and "remote_username broker-b" in lines
    carried = [line.split()[1] for line in lines if line.startswith("topic ")]
    assert carried == ["room-display/#", "homeassistant/#", "lights/a", "lights/a/#"]
    assert all(line.endswith(" both 1") for line in lines if line.startswith("topic "))
    # Its account reads and writes exactly what it carries, on both brokers.
    acl = (tmp_path / "room-display.acl").read_text()
    section = acl[acl.index("user broker-b\n"):].split("\n\n")[0].splitlines()
    assert section[1:] == [f"topic readwrite {t}" for t in carried]
    assert "broker-b:$7$" in (tmp_path / "passwd").read_text()
    # Run again: the same password; a name alone is the account without a file.
    assert main(["--out", str(tmp_path), "--bridge", "bridge-a", "--broker-bridge",
                 "broker-b=10.0.0.1:1884", "--broker-bridge", "broker-c"]) == 0
    assert f"remote_password {password}\n" in conf.read_text()
    assert "address 10.0.0.1:1884\n" in conf.read_text()
    assert not (tmp_path / "room-display-bridge-broker-c.conf").exists()
    assert "user broker-c\ntopic readwrite room-display/#\n" in \
        (tmp_path / "room-display.acl").read_text()


@pytest.mark.parametrize(("value", "address"), [
    ("b=10.0.0.1", "10.0.0.1:1883"), ("b=fd00::1", "fd00::1:1883"),
    ("b=[fd00::1]:1884", "fd00::1:1884"), ("b=broker-a.local:8883", "broker-a.local:8883")])
def test_the_primarys_address_and_port(tmp_path: Path, value: str, address: str) -> None:
    assert main(["--out", str(tmp_path), "--bridge", "x", "--broker-bridge", value]) == 0
    assert f"\naddress {address}\n" in (tmp_path / "room-display-bridge-b.conf").read_text()


def test_a_birth_topic_outside_discovery_is_carried_too() -> None:
    site = Site(bridges=("b",), birth_topic="ha/status")
    assert site.carried() == ("room-display/#", "homeassistant/#", "ha/status")


@pytest.mark.parametrize("value", ["broker b", "b=", "b=host:99999", "b=host name", "ha",
                                   "x", "b=[::1]:0"])
def test_a_bad_broker_bridge_is_one_line_and_writes_nothing(tmp_path: Path, value: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        main(["--out", str(out), "--bridge", "b", "--homeassistant", "ha", "--broker-bridge",
              "x", "--broker-bridge", value])
    assert "--broker-bridge" in str(refused.value) and "\n" not in str(refused.value)
    assert not out.exists()


def test_docs_show_exactly_the_generated_broker_bridge() -> None:
    """docs/MQTT.md, "Two brokers": its command writes the ACL section and file it shows."""
    docs = (ROOT / "docs/MQTT.md").read_text()
    command = ("--bridge bridge-hq --bridge bridge-hq2 --agent pi-5f-focus --agent pi-3f-east \\\n"
               "        --device pi-3f-east=lights/3f-east --homeassistant homeassistant \\\n"
               "        --broker-bridge broker-b=broker-a.local")
    assert command in docs
    site = Site(bridges=("bridge-hq", "bridge-hq2"), agents=EXAMPLE.agents,
                devices=EXAMPLE.devices, homeassistant="homeassistant",
                broker_bridges=(BrokerBridge("broker-b", "broker-a.local:1883"),))
    conf = bridge_conf_text(site, site.broker_bridges[0], "PASSWORD-OF-broker-b")
    assert "```\n" + conf + "```" in docs
    acl = acl_text(site)
    section = acl[acl.index("# Broker bridge broker-b"):acl.index("\n\n" + KEEP_MARKER)]
    assert "```\n" + section + "\n```" in docs
