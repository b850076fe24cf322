"""The two places the intake leans on lark-oapi internals; an SDK upgrade must fail here."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lark_oapi as lark

from display.clock import SystemClock
from display.intake.feishu.long_connection import PayloadHandler, WatchedClient
from display.intake.sink import EventSink
from display.store import ScheduleStore
from display.testing.envelopes import envelope

START = datetime.now(UTC) + timedelta(hours=1)


def test_the_ws_client_hands_event_frames_to_do_without_validation() -> None:
    # PayloadHandler stands in for the SDK's EventDispatcherHandler: only this method is called.
    source = inspect.getsource(lark.ws.client.Client)
    assert "self._event_handler._do_without_validation(pl)" in source


def test_payload_handler_commits_ignores_and_acknowledges(tmp_path: Path) -> None:
    with ScheduleStore(tmp_path / "s.db") as store:
        handler = PayloadHandler(EventSink(store, SystemClock()))
        env = envelope(start=START, end=START + timedelta(hours=1))
        handler._do_without_validation(json.dumps(env).encode())
        assert store.seen(env["uuid"])
        unknown = envelope(uuid="u2", start=START, end=START + timedelta(hours=1))
        unknown["event"]["type"] = "some_future_event"
        handler._do_without_validation(json.dumps(unknown).encode())  # acknowledged, ignored
        broken = envelope(uuid="u3", start=START, end=START + timedelta(hours=1))
        del broken["event"]["uid"]
        handler._do_without_validation(json.dumps(broken).encode())  # logged, acknowledged
        handler._do_without_validation(b"[" * 5000 + b"]" * 5000)
        assert not store.seen("u2") and not store.seen("u3")


def test_watched_client_sees_the_ping_interval_the_endpoint_sets() -> None:
    client = WatchedClient("cli", "secret", domain="http://127.0.0.1:9",
                           on_connected=lambda: None)
    assert client.ping_interval > 0
    conf = lark.ws.model.ClientConfig({"ReconnectCount": -1, "ReconnectInterval": 1,
                                       "ReconnectNonce": 0, "PingInterval": 7})
    client._configure(conf)
    assert client.ping_interval == 7
