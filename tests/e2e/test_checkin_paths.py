"""Check-in from every place, into a single box or a bridge: ``room-display checkin`` through
the node's control socket, MQTT from a panel agent, and the firmware's button on MicroPython's
unix port through the real serial link."""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from display.app import App
from display.checkin.ledger import Step
from display.checkin.mqtt import CheckinSubscriber
from display.checkin.service import Action
from display.config import parse_config
from display.model import EventKind, RoomEvent, State
from display.testing.broker import Broker, Recorder, running_broker
from display.testing.checkin_box import T0, CheckinBox, write_box_config
from display.testing.clock import FakeClock
from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi, InstanceReplyApi, slot
from display.testing.firmware import MicroBoard
from display.testing.waiting import wait_for
from display.transport.mqtt_client import MqttLink

_apps = itertools.count(1)
END = T0 + timedelta(hours=1)


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def feishu(standin: FeishuStandIn) -> tuple[FeishuStandIn, FreeBusyApi, InstanceReplyApi]:
    standin.app_id = f"cli_paths_{next(_apps)}"
    freebusy = FreeBusyApi(standin)
    freebusy.slots["omm_a"] = [slot("bk-1", T0, END)]
    return standin, freebusy, InstanceReplyApi(standin, freebusy)


def config_for(standin: FeishuStandIn, tmp: Path, **kw: object) -> Path:
    return write_box_config(tmp / "config.toml", domain=standin.domain, app_id=standin.app_id,
                            app_secret=standin.app_secret, **kw)  # type: ignore[arg-type]


def steps(app_or_box: App | CheckinBox) -> list[tuple[str, Step]]:
    service = app_or_box.checkin if isinstance(app_or_box, App) else app_or_box.service
    assert service is not None
    return [(r.key, r.step) for r in service.ledger.records()]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "display", "checkin", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_room_display_checkin_keeps_the_booking_and_end_frees_the_room(
        feishu: tuple[FeishuStandIn, FreeBusyApi, InstanceReplyApi], tmp_path: Path) -> None:
    standin, _freebusy, reply = feishu
    config = config_for(standin, tmp_path, window=1)
    assert cli(config, "omm_a").stderr.strip().startswith("room-display: no node is running")
    clock = FakeClock(T0 - timedelta(minutes=1))
    with App(parse_config(config.read_text(), config), clock) as app:
        assert app.control.start()
        app.node.tick()
        app.store.apply(RoomEvent(uuid="u1", kind=EventKind.CREATED, event_id="bk-1_0",
                                  uid="bk-1", original_time=0, event_time_ms=1, start=T0,
                                  end=END, room_ids=("omm_a",), organizer_open_id="ou_alice"),
                        clock.now())
        app.node.notify(["omm_a"])
        clock.advance(timedelta(seconds=70))
        app.node.tick()
        kept = cli(config, "omm_a")
        assert kept.returncode == 0, kept.stderr
        assert "checked in" in kept.stdout
        clock.advance(timedelta(minutes=5))  # long past the 1-minute window
        app.node.tick()
        assert reply.calls == []
        assert app.node.views()["omm_a"].occupancy.state is State.BUSY
        ended = cli(config, "omm_a", "--end")
        assert ended.returncode == 0, ended.stderr
        assert "the room is free" in ended.stdout
        assert reply.calls == [{"room_id": "omm_a", "uid": "bk-1", "original_time": 0,
                                "status": "ENDED_BEFORE_DUE"}]
        app.node.tick()
        assert app.node.views()["omm_a"].occupancy.state is State.FREE
        again = cli(config, "omm_a", "--end")
        assert again.returncode == 1 and "no meeting" in again.stderr
        nonsense = cli(config, "no-such-room")
        assert nonsense.returncode == 1 and "no room 'no-such-room'" in nonsense.stderr


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(tmp_path)


def test_an_agents_press_checks_in_through_the_bridge_and_releases_nothing_itself(
        feishu: tuple[FeishuStandIn, FreeBusyApi, InstanceReplyApi], tmp_path: Path,
        broker: Broker) -> None:
    standin, _freebusy, reply = feishu
    bridge_dir, agent_dir = tmp_path / "bridge", tmp_path / "agent"
    bridge_dir.mkdir()
    agent_dir.mkdir()
    config = config_for(standin, bridge_dir, window=10,
                        extra=f'\n[mqtt]\nurl = "{broker.url}"\n')
    agent_config = parse_config(f"""
[node]
name = "pi-agent"
timezone = "UTC"
state_dir = "state"
[mqtt]
url = "{broker.url}"
[[rooms]]
open_id = "omm_a"
""", agent_dir / "config.toml")
    recorder = Recorder(broker.port, "room-display/v1/rooms/+/checkin")
    with CheckinBox(config, FakeClock(T0)) as bridge:
        assert bridge.config.mqtt is not None
        link = MqttLink(bridge.config.mqtt, "bridge")
        CheckinSubscriber(link, bridge.service, lambda: bridge.config).attach()
        link.start()
        bridge.book("bk-1", T0, END)
        bridge.tick_at(T0 + timedelta(minutes=2))
        with App(agent_config, FakeClock(T0 + timedelta(minutes=2))) as agent:
            assert agent.checkin is None  # an agent never decides or talks to Feishu
            agent.start_mqtt()
            assert agent.mqtt is not None and agent.mqtt.link.wait_connected(10)
            assert link.wait_connected(10)
            result = agent.press("omm_a", Action.IN, "button").result(5)
            assert result.ok, result.message
            wait_for(lambda: steps(bridge) == [("bk-1_0", Step.CHECKED_IN)], 10,
                     what="the check-in at the bridge")
        assert recorder.get("room-display/v1/rooms/omm_a/checkin") == (b"in", False)
        # A malformed or retained payload checks nobody in.
        recorder.publish("room-display/v1/rooms/omm_a/checkin", b"maybe")
        recorder.publish("room-display/v1/rooms/omm_a/checkin", b"end", retain=True)
        bridge.tick_at(T0 + timedelta(minutes=30))
        assert reply.calls == []
        assert bridge.service.checkins == {"mqtt": 1}
        link.close()
    recorder.close()


@pytest.mark.slow
def test_the_boards_button_checks_in_and_a_long_press_ends_the_meeting(
        feishu: tuple[FeishuStandIn, FreeBusyApi, InstanceReplyApi], tmp_path: Path) -> None:
    standin, _freebusy, reply = feishu
    with MicroBoard(tmp_path, None, name="led-board") as board:
        config = config_for(standin, tmp_path, window=10, devices=(
            f'[[rooms.devices]]\nid = "led"\nkind = "led"\nurl = "{board.path}"'))
        with CheckinBox(config, FakeClock(T0)) as box:
            box.book("bk-1", T0, END)
            box.tick_at(T0 + timedelta(minutes=3))
            board.press()  # a person's short press
            wait_for(lambda: steps(box) == [("bk-1_0", Step.CHECKED_IN)], 20,
                     what="the board's check-in")
            assert box.service.checkins == {"button": 1}
            box.tick_at(T0 + timedelta(minutes=20))
            assert reply.calls == []
            board.hold_button(True)  # held 3 s: end the meeting
            wait_for(lambda: steps(box) == [("bk-1_0", Step.ENDED)], 30, what="the end")
            board.hold_button(False)
            assert [c["status"] for c in reply.calls] == ["ENDED_BEFORE_DUE"]
            box.node.tick()
            assert box.view().occupancy.state is State.FREE
        assert board.errors() == ""


def _post(address: str, room: str, body: bytes, headers: dict[str, str],
          query: str = "") -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(*address.rsplit(":", 1), timeout=60)
    try:
        conn.request("POST", f"/api/rooms/{room}/checkin{query}", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("token", ["s3cret", None])
def test_the_web_page_checks_in_only_with_a_token_in_the_header(
        feishu: tuple[FeishuStandIn, FreeBusyApi, InstanceReplyApi], tmp_path: Path,
        token: str | None) -> None:
    standin, _freebusy, reply = feishu
    web = '\n[web]\nlisten = "127.0.0.1:0"\n' + (f'token = "{token}"\n' if token else "")
    config = config_for(standin, tmp_path, window=10, extra=web)
    clock = FakeClock(T0 + timedelta(minutes=2))
    with App(parse_config(config.read_text(), config), clock) as app:
        app.start_web()
        assert app.web is not None
        app.store.apply(RoomEvent(uuid="u1", kind=EventKind.CREATED, event_id="bk-1_0",
                                  uid="bk-1", original_time=0, event_time_ms=1, start=T0,
                                  end=END, room_ids=("omm_a",), organizer_open_id="ou_alice"),
                        clock.now())
        app.node.notify(["omm_a"])
        app.node.tick()
        address = app.web.address
        body = json.dumps({"action": "in"}).encode()
        if token is None:  # no token configured: the page stays read-only
            status, answer = _post(address, "omm_a", body, {})
            assert status == 403 and "needs [web] token" in answer["message"]
            assert steps(app) == [("bk-1_0", Step.WAITING)]
            return
        assert _post(address, "omm_a", body, {})[0] == 401
        # The token as a query parameter (fine for reading) does not check anyone in.
        assert _post(address, "omm_a", body, {}, f"?token={token}")[0] == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert _post(address, "omm_a", b"{", auth)[0] == 400
        assert _post(address, "omm_nowhere", body, auth)[0] == 404
        status, answer = _post(address, "omm_a", body, auth)
        assert status == 200 and answer["ok"] and "checked in" in answer["message"]
        assert steps(app) == [("bk-1_0", Step.CHECKED_IN)]
        app.node.tick()
        room = app.node.status()["rooms"][0]
        assert room["checkin"] == {"state": "checked_in", "release_at": None,
                                   "free_until": None}
        assert reply.calls == []


def test_an_agents_press_while_the_broker_is_away_is_sent_when_it_is_back(
        tmp_path: Path, broker: Broker) -> None:
    agent_config = parse_config(f"""
[node]
name = "pi-agent"
timezone = "UTC"
state_dir = "state"
[mqtt]
url = "{broker.url}"
[[rooms]]
open_id = "omm_a"
name = "3F"
""", tmp_path / "config.toml")
    recorder = Recorder(broker.port, "room-display/v1/rooms/+/checkin")
    try:
        with App(agent_config, FakeClock(T0)) as agent:
            agent.start_mqtt()  # connecting in the background: not connected yet
            result = agent.press("3F", Action.END, "button").result(5)
            assert result.ok and "sent when it is back" in result.message
            assert not agent.press("omm_x", Action.IN, "button").result(5).ok
            wait_for(lambda: recorder.get("room-display/v1/rooms/omm_a/checkin"), 30,
                     what="the kept press")
            assert recorder.get("room-display/v1/rooms/omm_a/checkin") == (b"end", False)
    finally:
        recorder.close()
