"""The node asks its Feishu intake child for a full re-sync (a bridge that took over publishing
from another one does): real child under the supervisor, real SDK, the stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.app import App
from display.config import load_config
from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi, slot
from display.testing.intake_support import write_config
from display.testing.waiting import wait_for

START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)


@pytest.mark.slow
def test_a_requested_resync_runs_a_pass_and_fills_what_events_never_brought(
        tmp_path: Path) -> None:
    with FeishuStandIn(ping_interval=1, reconnect_interval=1) as standin:
        api = FreeBusyApi(standin)
        api.slots = {"omm_a": [slot("first", START, START + timedelta(hours=1))]}
        path = write_config(tmp_path / "config.toml", state_dir=tmp_path / "state",
                            rooms=("omm_a",),
                            feishu={"app_id": standin.app_id, "app_secret": standin.app_secret,
                                    "domain": standin.domain, "resync_minutes": 1440})
        with App(load_config(path)) as app:
            assert app.intake is None and app.mqtt is None
            app.start_intake()
            intake = app.intake
            assert intake is not None
            wait_for(lambda: {b.uid for b in app.store.bookings("omm_a")} == {"first"},
                     timeout=30, what="the pass at start")
            # Its report line reaches the node just after its commit reaches the store.
            wait_for(lambda: app.resync_passes["ok"] >= 1, timeout=10, what="the start's report")
            passes = app.resync_passes["ok"]
            # Booked while no event reached this bridge (another one got it, then died).
            api.slots = {"omm_a": [slot("first", START, START + timedelta(hours=1)),
                                   slot("missed", START + timedelta(hours=2),
                                        START + timedelta(hours=3))]}
            assert intake.request_resync("took over publishing")
            wait_for(lambda: {b.uid for b in app.store.bookings("omm_a")} == {"first", "missed"},
                     timeout=20, what="the requested pass")
            wait_for(lambda: app.resync_passes["ok"] == passes + 1, timeout=10,
                     what="the requested pass's report")
            assert app.node.status()["node"]["resync"]["ok"] is True
