"""The two places the intake leans on lark-oapi internals; an SDK upgrade must fail here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lark_oapi as lark
import pytest
from conftest import envelope

from display.clock import SystemClock
from display.config import FeishuConfig, Secret
from display.intake.feishu.dispatch import Intake, build_handler, route_unregistered_types
from display.intake.feishu.long_connection import WatchedClient
from display.intake.sink import EventSink, Verdict
from display.store import ScheduleStore

START = datetime.now(UTC) + timedelta(hours=1)


def test_unregistered_types_reach_our_handler(tmp_path: Path) -> None:
    with ScheduleStore(tmp_path / "s.db") as store:
        intake = Intake(EventSink(store, SystemClock()), long_connection=True)
        cfg = FeishuConfig(app_id="cli", app_secret=Secret("s"))
        handler = build_handler(intake, cfg)
        env = envelope(start=START, end=START + timedelta(hours=1))
        env["event"]["type"] = "some_future_event"
        # The long connection's entry point: raises "processor not found" without our map.
        handler._do_without_validation(json.dumps(env).encode())
        assert intake.state.accepted is not None
        assert intake.state.accepted.verdict is Verdict.IGNORED


def test_route_unregistered_types_refuses_an_unknown_sdk_shape() -> None:
    with pytest.raises(RuntimeError, match="_processorMap"):
        route_unregistered_types(object(), lambda event: None)


def test_watched_client_sees_the_ping_interval_the_endpoint_sets() -> None:
    client = WatchedClient("cli", "secret", domain="http://127.0.0.1:9",
                           on_connected=lambda: None)
    assert client.ping_interval > 0
    conf = lark.ws.model.ClientConfig({"ReconnectCount": -1, "ReconnectInterval": 1,
                                       "ReconnectNonce": 0, "PingInterval": 7})
    client._configure(conf)
    assert client.ping_interval == 7
