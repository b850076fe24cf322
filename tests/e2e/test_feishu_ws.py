"""The long connection: the real ``lark.ws.Client`` in the intake child, against the stand-in.

Each delivered event must be acknowledged with code 200 only once it is in the store; the stand-in
checks the store the moment each ack arrives.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.intake.supervisor import IntakeSupervisor
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.feishu_standin import Ack, FeishuStandIn
from display.testing.intake_support import Recorder, write_config
from display.testing.waiting import wait_for

START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
END = START + timedelta(hours=1)


class Bridge:
    """A supervised long-connection child, its store, and what the stand-in saw at each ack."""

    def __init__(self, standin: FeishuStandIn, tmp: Path, *, secret: str | None = None) -> None:
        self.standin = standin
        self.recorder = Recorder()
        self.db = tmp / "state" / "schedule.db"
        config = write_config(tmp / "config.toml", state_dir=tmp / "state", feishu={
            "app_id": standin.app_id, "app_secret": secret or standin.app_secret,
            "domain": standin.domain})
        self.sup = IntakeSupervisor(config, self.recorder,
                                    silence=20, backoff_initial=0.2)

    def __enter__(self) -> Bridge:
        self.sup.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sup.close()

    def store(self) -> ScheduleStore:
        return ScheduleStore(self.db)


class AckWatch:
    """Checks, the moment each ack arrives, whether its event is already in a store."""

    def __init__(self, standin: FeishuStandIn) -> None:
        self.standin = standin
        self.uuids: dict[str, str] = {}  # message id -> envelope uuid
        self.stored_at_ack: dict[str, bool] = {}
        self.stores: list[ScheduleStore] = []
        self._lock = threading.Lock()
        standin.on_ack = self._on_ack

    def watch(self, db: Path) -> None:
        wait_for(db.exists, 60, what=f"{db} created")
        self.stores.append(ScheduleStore(db))

    def _on_ack(self, ack: Ack) -> None:
        with self._lock:
            event_uuid = self.uuids.get(ack.message_id)
            if event_uuid is not None:
                self.stored_at_ack[ack.message_id] = any(s.seen(event_uuid)
                                                         for s in self.stores)

    def deliver(self, env: dict[str, Any], **kw: Any) -> str:
        message_id = f"msg_{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.uuids[message_id] = env["uuid"]
        return self.standin.deliver(env, message_id=message_id, **kw)

    def ack(self, message_id: str, timeout: float = 15) -> Ack:
        acks = wait_for(lambda: self.standin.acks_for(message_id), timeout,
                          what=f"ack of {message_id}")
        assert len(acks) == 1, acks
        return acks[0]

    def close(self) -> None:
        self.standin.on_ack = None
        for s in self.stores:
            s.close()


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn(ping_interval=1, reconnect_interval=1) as s:
        yield s


@pytest.fixture(scope="module")
def bridge(standin: FeishuStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    with Bridge(standin, tmp_path_factory.mktemp("ws")) as b:
        yield b


@pytest.fixture
def watch(standin: FeishuStandIn, bridge: Bridge) -> Iterator[AckWatch]:
    w = AckWatch(standin)
    wait_for(standin.connections, 60, what="the client connected")
    w.watch(bridge.db)
    yield w
    w.close()


def event(kind: str = "created", **kw: Any) -> dict[str, Any]:
    kw.setdefault("start", START)
    kw.setdefault("end", END)
    return envelope(kind, **kw)


def test_ready_and_link_up(bridge: Bridge, standin: FeishuStandIn) -> None:
    wait_for(lambda: bridge.sup.ready_pid, 60, what="ready line")
    assert bridge.sup.ready_listen is None  # nothing listens in long-connection mode
    wait_for(lambda: (True, None) in bridge.recorder.link_events(), what="link up")
    assert any(r.path == "/callback/ws/endpoint" for r in standin.requests)


def test_created_updated_deleted_acked_after_commit(bridge: Bridge, watch: AckWatch) -> None:
    later = END + timedelta(minutes=15)
    for env in (event("created", uid="w1", event_time=1),
                event("updated", uid="w1", end=later, event_time=2)):
        ack = watch.ack(watch.deliver(env))
        assert ack.code == 200
        assert watch.stored_at_ack[ack.message_id], "acknowledged before it was committed"
    with bridge.store() as store:
        assert [(b.uid, b.end) for b in store.bookings("omm_a") if b.uid == "w1"] == [("w1", later)]
    ack = watch.ack(watch.deliver(event("deleted", uid="w1", event_time=3)))
    assert ack.code == 200 and watch.stored_at_ack[ack.message_id]
    with bridge.store() as store:
        assert not [b for b in store.bookings("omm_a") if b.uid == "w1"]
    wait_for(lambda: "omm_a" in bridge.recorder.rooms_changed(), what="changed callback")


def test_event_split_over_several_frames(bridge: Bridge, watch: AckWatch) -> None:
    env = event(uid="split", rooms=("omm_a", "omm_b"))
    ack = watch.ack(watch.deliver(env, split=3))
    assert ack.code == 200 and watch.stored_at_ack[ack.message_id]
    with bridge.store() as store:
        assert "split" in {b.uid for b in store.bookings("omm_b")}


def test_malformed_event_is_acked_and_not_stored(bridge: Bridge, watch: AckWatch) -> None:
    env = event(uid="bad")
    env["event"]["start"] = {"time_stamp": "not a time"}
    ack = watch.ack(watch.deliver(env))
    assert ack.code == 200  # retries cannot fix it
    assert not watch.stored_at_ack[ack.message_id]
    with bridge.store() as store:
        assert not store.seen(env["uuid"])


def test_unknown_type_is_acknowledged(bridge: Bridge, watch: AckWatch) -> None:
    # Also guards route_unregistered_types: an SDK upgrade that breaks it acks 500 here.
    env = event(uid="unknown")
    env["event"]["type"] = "third_party_meeting_room_event_moved"
    assert watch.ack(watch.deliver(env)).code == 200
    with bridge.store() as store:
        assert not store.seen(env["uuid"])


def test_duplicate_delivery_acked_once_stored_once(bridge: Bridge, watch: AckWatch) -> None:
    env = event(uid="twice")
    assert watch.ack(watch.deliver(env)).code == 200
    assert watch.ack(watch.deliver(env)).code == 200
    with bridge.store() as store:
        assert [b.uid for b in store.bookings("omm_a")].count("twice") == 1


def test_reconnects_after_dropped_connection(bridge: Bridge, standin: FeishuStandIn,
                                             watch: AckWatch) -> None:
    before = standin.connections()
    links_before = len(bridge.recorder.link_events())
    standin.drop_connections()
    wait_for(lambda: standin.connections() and standin.connections() != before, 20,
               what="a new connection")
    wait_for(lambda: (False, "connection lost; reconnecting")
               in bridge.recorder.link_events()[links_before:], what="link down")
    wait_for(lambda: bridge.recorder.link_events()[-1] == (True, None), what="link up again")
    ack = watch.ack(watch.deliver(event(uid="after-drop")))
    assert ack.code == 200 and watch.stored_at_ack[ack.message_id]
    assert bridge.sup.starts == 1  # the SDK reconnected by itself


@pytest.mark.slow
def test_silent_server_gets_the_child_restarted(bridge: Bridge, standin: FeishuStandIn) -> None:
    first = bridge.sup.ready_pid
    before = standin.connections()
    standin.silence_connections()
    # Watchdog: 3 ping intervals (1 s each) without a frame, then the supervisor restarts it.
    wait_for(lambda: bridge.sup.ready_pid not in (None, first), 60, what="a restarted child")
    assert bridge.sup.last_exit == 1
    wait_for(lambda: set(standin.connections()) - set(before), 20, what="new connection")
    w = AckWatch(standin)
    try:
        w.watch(bridge.db)
        ack = w.ack(w.deliver(event(uid="after-silence")))
        assert ack.code == 200 and w.stored_at_ack[ack.message_id]
    finally:
        w.close()


@pytest.mark.slow
def test_two_clients_on_one_app_each_get_a_share(bridge: Bridge, standin: FeishuStandIn,
                                                 tmp_path: Path) -> None:
    wait_for(lambda: len(standin.connections()) == 1, 20, what="the first client")
    with Bridge(standin, tmp_path) as second:
        wait_for(lambda: len(standin.connections()) == 2, 60, what="the second client")
        w = AckWatch(standin)
        try:
            w.watch(bridge.db)
            w.watch(second.db)
            envs = [event(uid=f"share{i}") for i in range(10)]
            acks = [w.ack(w.deliver(env)) for env in envs]
        finally:
            w.close()
        assert all(a.code == 200 for a in acks)
        assert len({a.connection for a in acks}) == 2  # both got a share
        with bridge.store() as one, second.store() as two:
            for env in envs:  # each event went to exactly one client
                assert one.seen(env["uuid"]) != two.seen(env["uuid"])


@pytest.mark.slow
def test_rejected_credentials_exit_2(standin: FeishuStandIn, tmp_path: Path) -> None:
    with Bridge(standin, tmp_path, secret="wrong-secret") as bad:
        wait_for(lambda: bad.sup.last_exit is not None, 60, what="the child to give up")
        assert bad.sup.last_exit == 2
        assert bad.sup.ready_pid is None
