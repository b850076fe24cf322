"""One poisoned event (an integer no store column can hold) fails alone, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from display.intake.supervisor import IntakeSupervisor
from display.store import ScheduleStore
from display.testing.feishu_standin import encrypted_body, signed_headers
from display.testing.intake_support import HttpClient, Recorder, write_config
from display.testing.waiting import wait_for
from tests.e2e.test_webhook import END, KEY, PATH, START, TOKEN, event


@pytest.fixture
def listen(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = write_config(tmp_path / "config.toml", state_dir=tmp_path / "state", feishu={
        "mode": "webhook", "listen": "127.0.0.1:0", "path": PATH,
        "verification_token": TOKEN, "encrypt_key": KEY})
    sup = IntakeSupervisor(config, Recorder(), silence=20, backoff_initial=0.2)
    sup.start()
    try:
        yield wait_for(lambda: sup.ready_listen, 60, what="webhook intake ready"), \
            tmp_path / "state" / "schedule.db"
    finally:
        sup.close()


def _post_all(listen: str, envs: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """Post every envelope at the same moment (one connection each): they share a commit."""
    statuses: list[tuple[int, Any]] = [(0, None)] * len(envs)
    go = threading.Barrier(len(envs))

    def one(i: int) -> None:
        body = encrypted_body(envs[i], KEY)
        client = HttpClient(listen)
        try:
            go.wait(10)
            statuses[i] = client.request("POST", PATH, body, signed_headers(body, KEY))
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(envs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@pytest.mark.parametrize("field", ["original_time", "original_time_ms_string"])
def test_a_poisoned_event_is_400_alone_and_the_good_ones_of_its_batch_commit(
        listen: tuple[str, Path], field: str) -> None:
    address, db = listen
    good = [event(uid=f"good{i}", start=START, end=END) for i in range(12)]
    poisoned = event(uid="poison", start=START, end=END)
    poisoned["event"]["original_time"] = (10**30 if field == "original_time"
                                          else "99999999999999999999")
    answers = _post_all(address, [*good[:6], poisoned, *good[6:]])
    assert answers[6][0] == 400 and "event.original_time" in answers[6][1]["msg"]
    assert [status for status, _ in answers[:6] + answers[7:]] == [200] * 12
    with ScheduleStore(db) as store:
        assert all(store.seen(env["uuid"]) for env in good)
        assert not store.seen(poisoned["uuid"])
        assert len(store.bookings("omm_a")) == 12
