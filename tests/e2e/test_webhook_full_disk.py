"""A full disk at start: the webhook still listens and answers 503 (Feishu retries), and takes
deliveries again within 5 s of space returning."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from display.intake.supervisor import IntakeSupervisor
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.intake_support import HttpClient, Recorder, write_config
from display.testing.waiting import wait_for
from tests.e2e.test_hardening import _fill, full_disk  # noqa: F401 - fixture

PATH = "/webhook/event"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


def _post(listen: str, env: dict[str, object]) -> int:
    client = HttpClient(listen, timeout=5)
    try:
        status: int = client.request("POST", PATH, json.dumps(env).encode())[0]
        return status
    finally:
        client.close()


def test_a_full_disk_at_start_answers_503_and_recovers_within_5_s(
        full_disk: Path, tmp_path: Path) -> None:  # noqa: F811
    state = full_disk / "state"
    ScheduleStore(state / "schedule.db").close()
    (state / "schedule.db-shm").unlink(missing_ok=True)  # as after a clean shutdown
    (state / "schedule.db-wal").unlink(missing_ok=True)
    filler = _fill(full_disk)
    config = write_config(tmp_path / "config.toml", state_dir=state, feishu={
        "mode": "webhook", "listen": "127.0.0.1:0", "path": PATH,
        "verification_token": "vtoken"})
    with IntakeSupervisor(config, Recorder(), backoff_initial=0.2) as sup:
        listen = wait_for(lambda: sup.ready_listen, 60, what="the webhook listening")
        env = envelope(uid="held", start=START, end=START + timedelta(hours=1))
        assert _post(listen, env) == 503
        assert _post(listen, env) == 503  # still serving, still refusing to acknowledge
        assert sup.starts == 1
        filler.unlink()
        freed = time.monotonic()
        wait_for(lambda: _post(listen, env) == 200, 10, what="a delivery taken",
                 interval=0.1)
        assert time.monotonic() - freed <= 5
        assert sup.starts == 1
    with ScheduleStore(state / "schedule.db") as store:
        assert store.seen(env["uuid"]) and [b.uid for b in store.bookings("omm_a")] == ["held"]
