"""The webhook's committer: closed-loop clients share commits (one fsync), a lone one never waits.

The real asyncio front end and a real durable store run in this process so every transaction
the committer opens can be counted; clients post real signed, encrypted requests over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.clock import SystemClock
from display.config import FeishuConfig, FeishuMode, Secret
from display.intake.feishu import webhook
from display.intake.sink import EventSink
from display.model import RoomEvent
from display.store import ApplyResult, ScheduleStore
from display.testing.envelopes import envelope
from display.testing.feishu_standin import encrypted_body, signed_headers
from display.testing.intake_support import HttpClient

KEY = "committer-key"
TOKEN = "vtoken"  # the envelopes' default token
START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)


class CountingStore(ScheduleStore):
    """A real store that records how many events each transaction of the committer held."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def apply_many(self, events: Sequence[RoomEvent], received: datetime) -> list[ApplyResult]:
        self.batches.append(len(events))
        return super().apply_many(events, received)


class Server:
    """The webhook front end on a loop in a thread, over a :class:`CountingStore`."""

    def __init__(self, store: CountingStore) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop()
        feishu = FeishuConfig(mode=FeishuMode.WEBHOOK, listen="127.0.0.1:0",
                              verification_token=Secret(TOKEN), encrypt_key=Secret(KEY),
                              resync=False)
        app = webhook.WebhookApp(feishu, EventSink(store, SystemClock()), self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(
            lambda: webhook.WebhookProtocol(app), "127.0.0.1", 0))
        self.listen = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = CountingStore(tmp_path / "schedule.db")
    with store:
        srv = Server(store)
        yield srv
        srv.close()


def post_events(listen: str, tag: str, count: int, errors: list[str]) -> None:
    """``count`` fresh events, each sent once the previous one is answered (closed loop)."""
    client = HttpClient(listen)
    try:
        for i in range(count):
            start = START + timedelta(minutes=30 * i)
            body = encrypted_body(envelope(uid=f"{tag}-{i}", start=start,
                                           end=start + timedelta(minutes=30),
                                           rooms=(f"omm_{tag}",)), KEY)
            status, reply = client.request("POST", "/webhook/event", body,
                                           signed_headers(body, KEY))
            if status != 200 or reply.get("verdict") != "applied":
                errors.append(f"{tag}-{i}: {status} {reply!r}")
    finally:
        client.close()


def test_two_closed_loop_clients_share_commits(server: Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the linger they alternate, nearly every commit holding one event (and one fsync).
    # Its bounds are sized for a loop that checks a request in well under LINGER; widened here
    # so that a slow run (coverage traces every line) still shows the clients falling in step.
    monkeypatch.setattr(webhook, "LINGER", 1.0)
    monkeypatch.setattr(webhook, "RECENT", 60.0)
    errors: list[str] = []
    clients = [threading.Thread(target=post_events, args=(server.listen, tag, 150, errors))
               for tag in ("a", "b")]
    for client in clients:
        client.start()
    for client in clients:
        client.join(60)
    assert not errors
    batches = server.store.batches
    assert sum(batches) == 300
    shared = sum(n for n in batches if n > 1)
    assert shared >= 150, f"only {shared} of 300 events shared a commit: {batches}"
    assert {b.uid for b in server.store.bookings("omm_a")} == {f"a-{i}" for i in range(150)}


def test_a_lone_client_never_waits_for_another(server: Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A linger of a minute would exceed the client's 10 s timeout were a lone client kept
    # waiting for a second connection that is not there.
    monkeypatch.setattr(webhook, "LINGER", 60.0)
    errors: list[str] = []
    post_events(server.listen, "solo", 20, errors)
    assert not errors
    assert server.store.batches == [1] * 20


def test_a_connection_per_event_never_waits_for_the_closed_ones(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Feishu may open a connection per delivery: the previous, closed one sends nothing more.
    monkeypatch.setattr(webhook, "LINGER", 60.0)
    errors: list[str] = []
    for i in range(10):
        post_events(server.listen, f"conn{i}", 1, errors)
    assert not errors
    assert server.store.batches == [1] * 10
