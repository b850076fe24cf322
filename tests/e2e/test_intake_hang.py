"""A hung Feishu intake is noticed within 10 s, shown as the link's state, and restarted.

The child proves it is alive from its event loop: a stopped process (SIGSTOP) and a loop that
hangs while the rest of the process runs (lark-oapi's endpoint POST, made on its loop without a
timeout, against a stand-in that never answers) both fall silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.intake.supervisor import SILENCE, IntakeSupervisor
from display.testing.envelopes import envelope
from display.testing.feishu_standin import FeishuStandIn, Request
from display.testing.intake_support import HttpClient, Recorder, write_config
from display.testing.waiting import wait_for

START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
PATH = "/webhook/event"
NOT_RESPONDING = "intake not responding"


def _down_since(recorder: Recorder, since: int) -> str | None:
    """The error of a 'not responding' link-down reported after the first ``since`` events."""
    for up, error in recorder.link_events()[since:]:
        if not up and error and error.startswith(NOT_RESPONDING):
            return error
    return None


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[IntakeSupervisor, Recorder]]:
    config = write_config(tmp_path / "config.toml", state_dir=tmp_path / "state", feishu={
        "mode": "webhook", "listen": "127.0.0.1:0", "path": PATH,
        "verification_token": "vtoken"})
    recorder = Recorder()
    sup = IntakeSupervisor(config, recorder, backoff_initial=0.2)  # the default silence
    sup.start()
    try:
        yield sup, recorder
    finally:
        pid = sup.ready_pid
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        sup.close()


def test_a_stopped_webhook_child_is_shown_down_and_restarted_within_10_s(
        webhook: tuple[IntakeSupervisor, Recorder]) -> None:
    sup, recorder = webhook
    first = wait_for(lambda: sup.ready_pid, 60, what="webhook ready")
    wait_for(lambda: recorder.link_events()[-1:] == [(True, None)], what="link up")
    seen = len(recorder.link_events())
    stopped = time.monotonic()
    os.kill(first, signal.SIGSTOP)
    wait_for(lambda: _down_since(recorder, seen), 10, what="the link shown down")
    detected = time.monotonic() - stopped
    assert detected <= 10, detected
    assert SILENCE < 10
    listen = wait_for(lambda: sup.ready_pid not in (None, first) and sup.ready_listen, 20,
                      what="a restarted child")
    assert sup.last_exit == -signal.SIGKILL
    client = HttpClient(listen)
    try:
        env = envelope(uid="after-hang", start=START, end=START + timedelta(hours=1))
        assert client.request("POST", PATH, json.dumps(env).encode())[0] == 200
    finally:
        client.close()
    assert recorder.link_events()[-1] == (True, None)


@pytest.mark.slow
def test_a_hung_sdk_loop_is_noticed_although_the_process_runs(tmp_path: Path) -> None:
    # Feishu's own ping interval (120 s): the frame watchdog alone would take 6 minutes.
    with FeishuStandIn(ping_interval=120, reconnect_interval=1) as standin:
        gate = threading.Event()
        endpoint = standin.routes[("POST", "/callback/ws/endpoint")]

        def held(req: Request) -> Any:
            gate.wait(60)  # the SDK's POST has no timeout: its loop waits with it
            return endpoint(req)

        config = write_config(tmp_path / "config.toml", state_dir=tmp_path / "state", feishu={
            "app_id": standin.app_id, "app_secret": standin.app_secret,
            "domain": standin.domain, "resync": False})
        recorder = Recorder()
        sup = IntakeSupervisor(config, recorder, backoff_initial=0.2)
        sup.start()
        try:
            first = wait_for(lambda: sup.ready_pid, 60, what="connected")
            wait_for(standin.connections, 20, what="the connection")
            seen = len(recorder.link_events())
            standin.add_route("POST", "/callback/ws/endpoint", held)
            standin.drop_connections()
            dropped = time.monotonic()
            wait_for(lambda: _down_since(recorder, seen), 15, what="the hang noticed")
            assert time.monotonic() - dropped <= 10 + 1  # + the SDK's reconnect interval
            standin.add_route("POST", "/callback/ws/endpoint", endpoint)
            gate.set()
            wait_for(lambda: sup.ready_pid not in (None, first), 60, what="a restarted child")
            assert sup.last_exit == -signal.SIGKILL
            wait_for(lambda: recorder.link_events()[-1] == (True, None), 20, what="link up")
        finally:
            gate.set()
            sup.close()
