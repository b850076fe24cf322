"""Webhook mode: an asyncio HTTP/1.1 front end doing Feishu's documented checks itself.

The event loop (one thread) reads requests with ``httptools`` (llhttp, the parser of Node.js)
and runs the checks of :mod:`.checks` (signature over the raw bytes before any JSON is parsed);
a valid event goes to :class:`Committer`, one thread that hands every event waiting for it to
:meth:`~display.intake.sink.EventSink.accept_many`: one transaction, one fsync per batch. A
request is answered only after its event is committed, so nothing acknowledged is lost.
:class:`WebhookProtocol` lists the status of every answer. Nothing here imports ``lark_oapi``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httptools

from display.config import FeishuConfig
from display.errors import EventError, StoreError
from display.intake.feishu.channel import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ParentChannel
from display.intake.feishu.checks import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Kind,
    Rejected,
    open_delivery,
    short_window,
)
from display.intake.sink import Accepted, EventSink, Verdict
from display.model import RoomEvent
from display.ratelimit import RateLimitedLog

if TYPE_CHECKING:  # resync imports lark-oapi; a webhook without re-sync never does
    from display.intake.feishu.resync import Resync

log = logging.getLogger(__name__)
#: What a flood makes the webhook say: one line per cause and minute.
noisy = RateLimitedLog(log, 60.0)

#: Idle keep-alive connections are closed after this; it also bounds how long a client may take
#: to send one request.
HTTP_TIMEOUT = 30.0
#: listen() backlog: Feishu retries a burst of deliveries at once; a short queue would drop
#: their SYNs (a retry a second later) or, with tcp_abort_on_overflow, reset them.
BACKLOG = 256
#: Most events committed in one transaction (a burst beyond it takes several).
MAX_BATCH = 256
#: Longest the committer waits for a recently busy connection's next event (seconds): about
#: what one commit with its fsync takes, so a lingered batch costs at most one commit's time.
LINGER = 0.0005
#: A connection counts as busy while its latest event is at most this old (seconds): a few
#: round trips of a client that sends its next request as soon as it has its answer.
RECENT = 0.005
#: A client pipelining more unanswered requests than this is not read until answers catch up.
MAX_PENDING = 32
#: Limits checked before any authentication, so that nobody without the keys can make the intake
#: hold memory or file descriptors: a URL over MAX_URL_BYTES is 414, a request line and headers
#: over MAX_HEAD_BYTES or more than MAX_HEADERS header lines are 431 (and the connection closes).
MAX_URL_BYTES = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 64
#: A request's line and headers must be complete this soon after their first byte (and a new
#: connection's first request this soon after it opens): slow-header clients are closed.
HEAD_TIMEOUT = 10.0
#: Connections kept open. Beyond, the ones idle longest (no request of theirs being answered)
#: are closed TRIM_DELAY later, once what the new ones sent has been read: a delivery accepted
#: amid a burst has its request in hand by then and is not idle. So a flood of idle or slow
#: connections cannot lock Feishu out. Beyond HARD_CONNECTIONS the one idle longest is closed
#: at once for each new one: with a whole accept queue taken at once (BACKLOG) and the closed
#: ones' descriptors freed a moment later, the process stays under 1,024 (about 850 at worst
#: measured). A delivery that arrives amid a burst of more than 64 new connections and is not
#: read within TRIM_DELAY may still be closed unanswered: Feishu retries it.
MAX_CONNECTIONS = 64
HARD_CONNECTIONS = 192
TRIM_DELAY = 0.01

_CANONICAL = {h.lower(): h for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}

#: What the committer answers for one event.
Outcome = Accepted | StoreError | Exception


class Committer:
    """One thread committing the events the event loop hands it, every waiting one at once.

    ``done(outcome)`` is called on the loop's thread after the commit (or its failure).

    Two clients that each wait for their answer would otherwise alternate: one event is
    committed (and fsynced) alone while the other's request is still being read. So when a batch
    lacks an event from a connection that submitted one within the last :data:`RECENT` seconds,
    the committer waits up to :data:`LINGER` for it; the clients fall into step and share one
    fsync. A lone connection never waits, and nothing waits while no event is in hand (an idle
    webhook has no timer).
    """

    def __init__(self, sink: EventSink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink
        self._loop = loop
        self._queue: queue.SimpleQueue[_Submitted] = queue.SimpleQueue()
        # Connection -> monotonic time of its latest event; the committer's thread only.
        self._recent: dict[WebhookProtocol, float] = {}
        self._held: list[_Submitted] = []  # the loop's thread only
        threading.Thread(target=self._run, name="committer", daemon=True).start()

    def submit(self, event: RoomEvent, done: Callable[[Outcome], None],
               connection: WebhookProtocol) -> None:
        """Queue one validated event (called on the loop's thread); ``connection`` is its
        client's, whose next event the committer may wait for."""
        # Held until the loop has handled everything this wake-up brought: requests that
        # arrived together reach the committer together, in one wake-up of its thread.
        if not self._held:
            self._loop.call_soon(self._release)
        self._held.append((event, done, connection))

    def _release(self) -> None:
        held, self._held = self._held, []
        for item in held:
            self._queue.put(item)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]  # blocks: no wake-ups while nothing comes
            self._gather(batch)
            outcomes: list[Outcome]
            try:
                outcomes = list(self._sink.commit_many([event for event, _, _ in batch]))
            except StoreError as exc:
                outcomes = [exc] * len(batch)
            except Exception as exc:  # a bug must answer 500, not leave requests hanging
                log.exception("committing %d event(s) failed", len(batch))
                outcomes = [exc] * len(batch)
            # One wake-up of the loop per batch, not per event.
            self._loop.call_soon_threadsafe(_resolve, batch, outcomes)

    def _gather(self, batch: list[_Submitted]) -> None:
        """Add every event waiting, then linger for recently busy connections' next events."""
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        now = time.monotonic()
        recent = self._recent
        for stale in [conn for conn, at in recent.items()
                      if now - at > RECENT or conn.closed]:
            del recent[stale]  # a closed connection sends nothing more: no wait for it
        waiting = set(recent) - {conn for _, _, conn in batch}
        deadline = now + LINGER
        while waiting and len(batch) < MAX_BATCH:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            batch.append(item)
            waiting.discard(item[2])
        now = time.monotonic()
        for _, _, conn in batch:
            recent[conn] = now


#: What the committer's queue holds: the event, its answer callback, its connection.
_Submitted = tuple[RoomEvent, Callable[[Outcome], None], "WebhookProtocol"]


def _resolve(batch: list[_Submitted], outcomes: list[Outcome]) -> None:
    for (_, done, _), outcome in zip(batch, outcomes, strict=True):
        done(outcome)


class WebhookApp:
    """What every connection shares: config, sink, committer and the v2 types logged."""

    def __init__(self, feishu: FeishuConfig, sink: EventSink,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.feishu = feishu
        self.path = feishu.path.encode()
        self.sink = sink
        self.loop = loop
        self.committer = Committer(sink, loop)
        self.encrypt_key = feishu.encrypt_key.reveal()
        self.verification_token = feishu.verification_token.reveal()
        self._ignored_v2: set[str] = set()
        self._date = (0, "")
        self.connections: set[WebhookProtocol] = set()
        self._trim_due = False

    def admit(self, connection: WebhookProtocol) -> bool:
        """Count a new connection in (beyond :data:`MAX_CONNECTIONS`, the ones idle longest
        are closed soon, beyond the hard bound at once); False (the new one is to be closed)
        when every one is answering."""
        if len(self.connections) >= HARD_CONNECTIONS:
            idle = [c for c in self.connections if c.idle]
            if not idle:
                noisy.warning("full", "webhook: %d connections open, all answering: refusing "
                              "new ones", len(self.connections))
                return False
            min(idle, key=lambda c: c.idle_since).abort()
        self.connections.add(connection)
        if len(self.connections) > MAX_CONNECTIONS and not self._trim_due:
            self._trim_due = True
            self.loop.call_later(TRIM_DELAY, self._trim)
        return True

    def _trim(self) -> None:
        """Close the connections idle longest until :data:`MAX_CONNECTIONS` are left."""
        self._trim_due = False
        excess = len(self.connections) - MAX_CONNECTIONS
        if excess <= 0:
            return
        idle = sorted((c for c in self.connections if c.idle), key=lambda c: c.idle_since)
        noisy.warning("evict", "webhook: %d connections open: closing those idle longest",
                      len(self.connections))
        for connection in idle[:excess]:
            connection.abort()

    def first_v2(self, kind: str) -> bool:
        """Whether this v2 event type is seen for the first time (logged once)."""
        first = kind not in self._ignored_v2
        self._ignored_v2.add(kind)
        return first

    def date(self) -> str:
        """The ``Date`` header's value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]


class _Answer:
    """One request's place in its connection's answer order."""

    __slots__ = ("close", "data")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.close = False


class WebhookProtocol(asyncio.Protocol):
    """One connection: HTTP checks, then Feishu's (:mod:`.checks`), then the committer.

    404 other path, 405 not POST, 411 no Content-Length, 413 body too large (not read; the
    connection closes), 400 malformed HTTP or JSON / too deeply nested / undecryptable / invalid
    event (``{"msg": "<field>: <reason>"}``), 401 signature missing or wrong, timestamp not
    digits or outside the replay window, verification token wrong, 503 store failure (Feishu
    retries), 200 ``{"msg": "success", "verdict": ...}`` or the url_verification challenge;
    ``GET /healthz`` is 200 ``{"ok": true}``. Answers leave in request order (pipelining).
    """

    def __init__(self, app: WebhookApp) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._answers: deque[_Answer] = deque()
        self._closing = False
        self._paused = False
        self._active = 0.0  # loop time of the last request begun or answer sent
        self._timer: asyncio.TimerHandle | None = None
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._done_reading = False  # a request was refused: nothing after it is read
        self._keep_body = False  # only a POST to the webhook's path has its body kept
        self._eof = False  # the client sent all it will: close once everything is answered
        # Bounds on the request head, checked before anything is authenticated.
        self._in_head = True  # between requests or reading a request line and headers
        self._head_bytes = 0  # received since this head began (at least)
        self._head_started: float | None = None  # when its first byte came (None: idle)
        self._header_count = 0
        self._header_bytes = 0  # the names and values of this head's headers

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or closing (read by the committer's thread)."""
        return self._closing

    @property
    def idle(self) -> bool:
        """No request of this connection is being answered (it may be sending one)."""
        return not self._answers and not self._closing

    @property
    def idle_since(self) -> float:
        """Loop time of its latest request begun or answer sent (or of its opening)."""
        return self._active

    def abort(self) -> None:
        """Close now, unanswered (a connection closed to make room)."""
        self._closing = True
        self.app.connections.discard(self)
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # create_server gives stream transports
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        self._active = self._head_started = self.app.loop.time()
        if not self.app.admit(self):
            self.abort()
            return
        self._timer = self.app.loop.call_later(HEAD_TIMEOUT, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.app.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def eof_received(self) -> bool:
        # A client may half-close after its last request: answer it, then close.
        self._eof = True
        if not self._answers and self.transport is not None:
            self._closing = True
            self.transport.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._closing or self._done_reading:
            return
        if self._in_head:
            if self._head_started is None:
                self._head_started = self.app.loop.time()
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(HTTPStatus.BAD_REQUEST, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(HTTPStatus.BAD_REQUEST, f"malformed HTTP request: {exc}")
        # httptools keeps a header's text until it ends: an endless one is cut off here.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._done_reading:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request line and headers over {MAX_HEAD_BYTES} bytes")

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url.clear()
        self._headers = {}
        self._body.clear()
        self._keep_body = False
        self._active = self.app.loop.time()
        # _head_bytes is not reset here: it already counts the read this begins in.
        self._in_head, self._header_count, self._header_bytes = True, 0, 0
        if self._head_started is None:
            self._head_started = self._active

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL_BYTES and not self._done_reading:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, f"URL over {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._done_reading:
            pass
        elif self._header_count > MAX_HEADERS:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"more than {MAX_HEADERS} header lines")
        elif self._header_bytes + len(self._url) > MAX_HEAD_BYTES:  # all in one read
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request line and headers over {MAX_HEAD_BYTES} bytes")
        # The first of repeated headers counts, as with http.server's Message.get.
        self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._closing or self._done_reading:
            return
        if self.parser.get_method() != b"POST" or self._path() != self.app.path:
            return  # answered when complete (404 / 405 / healthz); its body is read, not kept
        length_text = self._headers.get("content-length")
        if length_text is None:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        elif int(length_text) > self.app.feishu.max_body_bytes:  # llhttp checked the digits
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"body of {int(length_text)} bytes exceeds "
                         f"{self.app.feishu.max_body_bytes}")
        elif (self._headers.get("expect", "").lower() == "100-continue" and not self._answers
              and self.transport is not None):
            # curl asks before sending a body over 1 KB and would otherwise wait a second.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._keep_body = not self._done_reading  # at most max_body_bytes, checked above

    def on_body(self, body: bytes) -> None:
        if self._keep_body:
            self._body += body

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._head_started = True, 0, None  # the next one
        if self._closing or self._done_reading:
            return
        answer = _Answer()
        answer.close = not self.parser.should_keep_alive()
        self._answers.append(answer)
        if len(self._answers) > MAX_PENDING and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._handle(answer, self.parser.get_method().decode("latin-1"), self._path(),
                     bytes(self._body))

    # -- the request ------------------------------------------------------------------------

    def _path(self) -> bytes:
        return bytes(self._url).split(b"?", 1)[0]

    def _handle(self, answer: _Answer, method: str, path: bytes, body: bytes) -> None:
        app = self.app
        if path != app.path:
            if path == b"/healthz" and method == "GET":
                return self._reply(answer, HTTPStatus.OK, {"ok": True}, method)
            shown = path.decode("latin-1")[:80]
            return self._reject(answer, HTTPStatus.NOT_FOUND, f"no such path {shown!r}", method)
        if method != "POST":
            return self._reject(answer, HTTPStatus.METHOD_NOT_ALLOWED,
                                f"{method} not allowed; use POST", method, Allow="POST")
        headers = {_CANONICAL.get(k, k): v for k, v in self._headers.items()}
        try:
            delivery = open_delivery(headers, body, encrypt_key=app.encrypt_key,
                                     verification_token=app.verification_token,
                                     window=app.feishu.replay_window_seconds, now=time.time())
        except Rejected as exc:
            app.sink.count_refused()  # /metrics: a wrong token shows as refusals
            return self._reject(answer, exc.status, exc.reason, method)
        if delivery.kind is Kind.CHALLENGE:
            log.info("answered url_verification")
            return self._reply(answer, HTTPStatus.OK, {"challenge": delivery.data["challenge"]},
                               method)
        if delivery.kind is Kind.EVENT_V2:
            kind = str(delivery.data["header"].get("event_type", "?"))[:80]
            if app.first_v2(kind):
                log.info("ignoring v2 event type %r (acknowledged; logged once)", kind)
            return self._accepted(answer, Accepted(Verdict.IGNORED))
        try:  # validated here: the committer's thread only commits
            event = app.sink.prepare(delivery.data)
        except EventError as exc:
            return self._reject(answer, HTTPStatus.BAD_REQUEST, str(exc), method)
        if isinstance(event, Accepted):
            return self._accepted(answer, event)

        def committed(outcome: Outcome) -> None:
            if isinstance(outcome, Accepted):
                self._accepted(answer, outcome)
            elif isinstance(outcome, StoreError):
                log.error("cannot commit event uuid=%.64r: %s (answered 503; Feishu retries)",
                          event.uuid, outcome)
                self._reply(answer, HTTPStatus.SERVICE_UNAVAILABLE,
                            {"msg": "schedule store unavailable; retry later"}, method)
            elif isinstance(outcome, EventError):  # this event alone could not be stored
                self._reject(answer, HTTPStatus.BAD_REQUEST, str(outcome), method)
            else:
                self._reply(answer, HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"msg": "internal error; retry later"}, method)

        app.committer.submit(event, committed, self)

    def _accepted(self, answer: _Answer, accepted: Accepted) -> None:
        self._reply(answer, HTTPStatus.OK, {"msg": "success", "verdict": accepted.verdict.value},
                    "POST")

    # -- answering --------------------------------------------------------------------------

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer at once and close: where this request's body ends is unknown (or it is not
        to be read), so nothing after it on the connection can be a request."""
        self._done_reading = True
        if self.transport is not None:
            self.transport.pause_reading()
        answer = _Answer()
        answer.close = True
        self._answers.append(answer)
        self._reject(answer, status, reason, "POST")

    def _reject(self, answer: _Answer, status: HTTPStatus, reason: str, method: str,
                **headers: str) -> None:
        # One line per cause and minute: a flood of bad requests must not fill the disk.
        noisy.warning((status.value, _cause(reason)), "webhook %d %s from %s: %s", status.value,
                      status.phrase, self.peer, reason)
        self._reply(answer, status, {"msg": reason}, method, **headers)

    def _reply(self, answer: _Answer, status: HTTPStatus, payload: dict[str, Any], method: str,
               **headers: str) -> None:
        content = json.dumps(payload, ensure_ascii=False).encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}", "Server: room-display",
                f"Date: {self.app.date()}", "Content-Type: application/json; charset=utf-8",
                f"Content-Length: {len(content)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        if answer.close:
            head.append("Connection: close")
        # Headers and body in one send: two small sends cost a syscall and a loopback wake-up
        # each, and with Nagle on the client's delayed ACK would add ~40 ms.
        answer.data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (
            b"" if method == "HEAD" else content)
        self._flush()

    def _flush(self) -> None:
        """Send the answers that are ready, in request order."""
        transport = self.transport
        while self._answers and self._answers[0].data is not None:
            answer = self._answers.popleft()
            if self._closing or transport is None:
                continue
            assert answer.data is not None
            transport.write(answer.data)
            self._active = self.app.loop.time()
            if answer.close:
                self._closing = True
                transport.close()  # after the buffered answer is sent
        if self._eof and not self._answers and not self._closing and transport is not None:
            self._closing = True
            transport.close()
        if self._paused and len(self._answers) <= MAX_PENDING // 4 and transport is not None:
            self._paused = False
            transport.resume_reading()

    def _check_idle(self) -> None:
        if self._closing or self.transport is None:
            return
        now = self.app.loop.time()
        if self._in_head and self._head_started is not None:
            left = self._head_started + HEAD_TIMEOUT - now
            why = f"no complete request head within {HEAD_TIMEOUT:.0f} s"
        else:
            left = self._active + HTTP_TIMEOUT - now
            why = f"idle for {HTTP_TIMEOUT:.0f} s"
        if left <= 0 and not self._answers:  # an answer still being committed is not idle
            log.debug("closing the connection from %s: %s", self.peer, why)
            self._closing = True
            self.transport.abort()  # nothing to flush: the fd is freed at once
            return
        self._timer = self.app.loop.call_later(min(max(left, 1.0), HEAD_TIMEOUT),
                                               self._check_idle)


def _cause(reason: str) -> str:
    """A rejection's reason without what the client chose (numbers, quoted text)."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "", reason)[:60]


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's reports (an accept failing at the file limit, a callback's error): one line
    per kind and minute instead of a traceback each."""
    exc = context.get("exception")
    message = str(context.get("message", "error"))
    noisy.log(logging.ERROR, ("loop", message, type(exc).__name__), "webhook: %s: %s", message,
              f"{type(exc).__name__}: {exc}" if exc else "")
    if exc is not None:
        log.debug("webhook: %s", message, exc_info=exc)


def run_webhook(feishu: FeishuConfig, config_path: Path, sink: EventSink,
                channel: ParentChannel, alive_interval: float, resync: Resync | None) -> int:
    """Serve webhooks until stdin closes (the process then exits from the watcher thread)."""
    if not feishu.verification_token:
        log.error("%s: feishu.verification_token: is required in webhook mode (every event "
                  "carries it; copy it from the developer console)", config_path)
        return EXIT_CONFIG
    return asyncio.run(_serve(feishu, sink, channel, alive_interval, resync))


async def _serve(feishu: FeishuConfig, sink: EventSink, channel: ParentChannel,
                 alive_interval: float, resync: Resync | None) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception)
    app = WebhookApp(feishu, sink, loop)
    try:
        server = await loop.create_server(lambda: WebhookProtocol(app), feishu.listen_host,
                                          feishu.listen_port, backlog=BACKLOG,
                                          reuse_address=True)
    except OSError as exc:
        log.error("cannot listen on %s: %s (feishu.listen)", feishu.listen, exc)
        # asyncio wraps the cause in a long message; its errno says it in a few words.
        cause = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        channel.fatal(f"cannot listen on {feishu.listen}: {cause} (feishu.listen)")
        return EXIT_FAILURE
    host, port = server.sockets[0].getsockname()[:2]
    listen = f"{host}:{port}"
    log.info("webhook intake listening on http://%s%s", listen, feishu.path)
    if feishu.encrypt_key and (note := short_window(feishu.replay_window_seconds)):
        log.warning("%s", note)  # the window applies to signed deliveries only
    channel.send(ready=True, mode="webhook", listen=listen)
    channel.send(link="up")
    if resync is not None:
        resync.start()

    def heartbeat() -> None:
        # On the event loop itself: a loop that hangs stops proving it is alive, and the
        # supervisor restarts the child (a side thread would go on beating).
        channel.send(alive=round(time.time(), 3), last_frame_age=None)
        sink.log_summary()
        loop.call_later(alive_interval, heartbeat)

    heartbeat()
    # The loop sleeps in epoll until a connection or a committed batch arrives; the process
    # ends from the stdin watcher.
    await server.serve_forever()
    return EXIT_OK
