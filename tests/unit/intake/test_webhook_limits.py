"""The webhook's limits before authentication, on the real asyncio front end in this process
(short timeouts, a small connection cap): slow heads closed, the idle longest closed for a new
connection, oversized request lines and headers refused."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from display.clock import SystemClock
from display.config import FeishuConfig, FeishuMode, Secret
from display.intake.feishu import webhook
from display.intake.sink import EventSink
from display.ratelimit import RateLimitedLog
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.feishu_standin import encrypted_body, signed_headers
from display.testing.intake_support import HttpClient
from display.testing.waiting import wait_for

KEY = "limits-key"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)


class Server:
    """The webhook front end on a loop in a thread."""

    def __init__(self, store: ScheduleStore) -> None:
        self.loop = asyncio.new_event_loop()
        feishu = FeishuConfig(mode=FeishuMode.WEBHOOK, listen="127.0.0.1:0",
                              verification_token=Secret("vtoken"), encrypt_key=Secret(KEY),
                              resync=False)
        self.app = webhook.WebhookApp(feishu, EventSink(store, SystemClock()), self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(
            lambda: webhook.WebhookProtocol(self.app), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def deliver(self, uid: str) -> int:
        body = encrypted_body(envelope(uid=uid, start=START, end=START + timedelta(hours=1)),
                              KEY)
        client = HttpClient(f"127.0.0.1:{self.port}")
        try:
            return client.request("POST", "/webhook/event", body, signed_headers(body, KEY))[0]
        finally:
            client.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(webhook, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(webhook, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(webhook, "noisy", RateLimitedLog(webhook.log, 60.0))  # fresh counts
    with ScheduleStore(tmp_path / "schedule.db") as store:
        srv = Server(store)
        yield srv
        srv.close()


def test_a_head_that_does_not_come_whole_in_time_is_closed(server: Server) -> None:
    with server.connect() as slow:
        slow.sendall(b"POST /webhook/event HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert slow.recv(4096) == b""  # closed, unanswered
    with server.connect() as silent:  # a connection that never sends a byte
        assert silent.recv(4096) == b""
    assert server.deliver("after-slow") == 200


def test_the_connections_idle_longest_are_closed_for_new_ones(
        server: Server, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "HEAD_TIMEOUT", 30.0)  # only the cap closes anything here
    caplog.set_level(logging.WARNING)
    idle = [server.connect() for _ in range(4)]
    try:
        wait_for(lambda: len(server.app.connections) == 4, 5, "four connections in")
        client = HttpClient(f"127.0.0.1:{server.port}")  # the fifth, kept open
        body = encrypted_body(envelope(uid="through", start=START,
                                       end=START + timedelta(hours=1)), KEY)
        try:
            assert client.request("POST", "/webhook/event", body,
                                  signed_headers(body, KEY))[0] == 200
            assert idle[0].recv(4096) == b""  # the one idle longest made room
            wait_for(lambda: len(server.app.connections) == 4, 5, "the cap kept")
            assert idle[1].getpeername()  # the others stay
        finally:
            client.close()
        assert [server.deliver(f"more-{i}") for i in range(8)] == [200] * 8
    finally:
        for sock in idle:
            sock.close()
    evictions = [r for r in caplog.records if "idle longest" in r.getMessage()]
    assert len(evictions) == 1  # one line per cause and minute, not one per connection


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /webhook/event?" + b"q" * 9000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"POST /webhook/event HTTP/1.1\r\n" + b"X-A: b\r\n" * 65 + b"\r\n", b"431"),
    (b"POST /webhook/event HTTP/1.1\r\nX-Big: " + b"x" * 17_000 + b"\r\n\r\n", b"431"),
    (b"POST /webhook/event HTTP/1.1\r\nX-Endless: " + b"x" * 17_000, b"431"),  # one read
])
def test_oversized_request_lines_and_headers_are_refused_before_anything_else(
        server: Server, head: bytes, status: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
        assert b"Connection: close" in answer
    assert server.deliver(f"after-{status.decode()}") == 200


def test_asyncio_reports_are_one_line_per_kind_without_traceback(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "noisy", RateLimitedLog(webhook.log, 60.0))
    caplog.set_level(logging.DEBUG)
    loop = asyncio.new_event_loop()
    try:
        for _ in range(100):
            webhook._loop_exception(loop, {"message": "socket.accept() out of system resource",
                                           "exception": OSError(24, "Too many open files")})
    finally:
        loop.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "webhook: socket.accept() out of system resource: OSError: [Errno 24] Too many open "
        "files"]
    assert errors[0].exc_info is None
