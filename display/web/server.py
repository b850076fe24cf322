"""The read-only web page's HTTP server: one asyncio loop on its own thread, a few workers.

Why this shape: the page has a handful of clients (a few browsers, a lobby TV, Prometheus), but
the port may face anyone on the network before the token is checked. A connection therefore
costs no thread while it is idle or sending its request: the loop reads each request head
(bounded in size and time), a small pool of worker threads answers it (status documents, the
sign's PNG), and the whole answer goes out in one write (no delayed-ACK wait on a kept-alive
connection). Only an open event stream holds a thread of its own, and their number is capped.

Limits (module constants): at most :data:`MAX_CONNECTIONS` open; when full, the connection that
has waited longest without sending a complete request is closed for the new one (a flood of slow
connections cannot lock real clients out); a request head of at most :data:`MAX_HEAD_BYTES` and
:data:`MAX_HEADERS` lines, complete within :data:`HEAD_SECONDS` (431/400/close otherwise); an
idle kept-alive connection closes after :data:`IDLE_SECONDS`; an answer not taken within
:data:`WRITE_SECONDS` closes it. What a flood provokes is one log line per cause and minute.

Routes (all ``GET``/``HEAD``; anything else is 405):

- ``/``, ``/board``, ``/rooms/ROOM``: the pages (static shells; ``static/app.js`` fills them from
  ``/events``);
- ``/events``: Server-Sent Events: ``snapshot`` (whole document), ``room``, ``node``;
- ``/api/status``: the ``status --json`` document; ``/api/rooms/ROOM``: one room and its day;
- ``/rooms/ROOM/sign.png``: the e-ink sign as ``preview`` draws it;
- ``/metrics``: Prometheus text;
- ``/static/NAME``: the package's CSS and JavaScript (no token needed: they hold no data).

Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from
another origin). With ``[web] token`` set, every route but ``/static/`` needs it as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (for kiosks, whose browsers cannot set
headers).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import hmac
import io
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from display import memory
from display.checkin.service import END_WAIT, Action, Result
from display.config import WebConfig
from display.node import Node
from display.ratelimit import RateLimitedLog
from display.web.document import (
    join_status,
    metrics_text,
    page_meta,
    room_detail,
    status_document,
    status_parts,
)
from display.web.hub import HEARTBEAT_SECONDS, Hub

log = logging.getLogger(__name__)

#: An answer this long (about 2,000 rooms of ``/api/status``) is followed by handing the memory
#: that making it took back to the system.
LARGE_ANSWER = 1_000_000
#: What a flood makes the server say: one line per cause and minute.
noisy = RateLimitedLog(log, 60.0)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
PAGES = {"/": "index.html", "/board": "board.html"}
STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")

MAX_CONNECTIONS = 128  # open at once (each an fd): far under the default file limit
#: listen() queue, and what asyncio accepts at once: below MAX_CONNECTIONS, so a connection
#: accepted amid a burst is read before the burst can make it the longest waiting.
BACKLOG = 64
MAX_STREAMS = 32  # open event streams (a thread each while open)
WORKERS = 4  # threads answering requests
MAX_HEAD_BYTES = 16 * 1024  # request line and headers
MAX_HEADERS = 64  # header lines
HEAD_SECONDS = 10.0  # a request head must be complete this soon after the connection opens
IDLE_SECONDS = 30.0  # a kept-alive connection waits this long for its next request
WRITE_SECONDS = 30.0  # an answer (or an event) not taken by then closes the connection

Counters = Callable[[], dict[str, dict[str, int]]]
#: ``press(room, action, source)``: a check-in or early end (the node's ``App.press``).
Press = Callable[[str, Action, str], "Future[Result]"]
MAX_POST = 1024  # the one body taken: a check-in's {"action": ...}
CHECKIN = re.compile(r"/api/rooms/(?P<room>[^/]+)/checkin")


class BadRequest(Exception):  # a verdict on what a client sent, not a failure of ours
    """A request head we refuse: the status to answer and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Request:
    """A parsed request head."""

    method: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    keep_alive: bool
    length: int = 0  # Content-Length of a POST's body (no other request has one)
    body: bytes = b""


def parse_head(head: bytes) -> Request:
    """A request head (through its blank line) as a :class:`Request`; :class:`BadRequest`."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].startswith("/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
        headers[name.lower()] = value.strip()
    method, target, version = parts
    length = 0
    if headers.get("transfer-encoding"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "a chunked request body is not accepted")
    if headers.get("content-length", "0") != "0":
        raw = headers["content-length"]
        if method != "POST" or not raw.isdigit():
            raise BadRequest(HTTPStatus.BAD_REQUEST, "a request body is not accepted here")
        length = int(raw)
        if length > MAX_POST:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
    url = urlsplit(target)
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return Request(method, unquote(url.path, errors="replace"), parse_qs(url.query), headers,
                   keep, length)


def _static(name: str) -> bytes | None:
    """A file of ``display/web/static`` (package data), or None."""
    if not STATIC_NAME.fullmatch(name):  # no "..", "/", NUL or other surprises
        return None
    path = resources.files("display.web").joinpath("static", name)
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer, head and body, ready for one write."""

    data: bytes
    close: bool


def answer(status: HTTPStatus, body: bytes, content_type: str, *, cache: str = "no-store",
           head_only: bool = False, close: bool = False,
           extra: Mapping[str, str] | None = None) -> Answer:
    """An answer with the headers every one carries (CSP and friends)."""
    lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Server: room-display",
             f"Date: {email.utils.formatdate(usegmt=True)}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             f"Content-Security-Policy: {CSP}", "X-Content-Type-Options: nosniff",
             "Referrer-Policy: no-referrer",  # a ?token= must not leak onwards
             "X-Frame-Options: DENY", f"Cache-Control: {cache}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Answer(head if head_only else head + body, close)


def error(status: HTTPStatus, message: str, *, close: bool = False) -> Answer:
    return answer(status, (message + "\n").encode(), "text/plain; charset=utf-8", close=close)


class WebServer:
    """Serves ``node``'s page on ``config.listen`` from its own threads; :meth:`close` stops it."""

    def __init__(self, config: WebConfig, node: Node,
                 counters: Counters = lambda: {}) -> None:
        self.config = config
        self.node = node
        self.counters = counters
        self.press: Press | None = None  # set where check-in is possible (App.press)
        self.hub = Hub(node, lambda: page_meta(node))
        self.bytes_sent = 0  # for the benchmark: what the pages cost on the wire
        self.connections = 0  # open now (read on the loop's thread)
        self.streams = 0  # open event streams
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._workers = ThreadPoolExecutor(WORKERS, "web")
        self._stream_threads = ThreadPoolExecutor(MAX_STREAMS, "web-events")
        # Connections still waiting for a request head, oldest first: the ones a full server
        # closes to make room.
        self._waiting: collections.OrderedDict[object, tuple[asyncio.StreamWriter, float]] = (
            collections.OrderedDict())  # -> (its writer, loop time it began waiting)

    @property
    def stopping(self) -> bool:
        """True once :meth:`close` began: open event streams end."""
        return self._stopping.is_set()

    @property
    def address(self) -> str:
        """``HOST:PORT`` actually listened on (the real port when the config says ``:0``)."""
        if self._sock is None:
            return self.config.listen
        host, port = self._sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> bool:
        """Listen and serve in a thread; False (one log line) when the address is taken."""
        try:
            family = socket.getaddrinfo(self.config.host, self.config.port,
                                        type=socket.SOCK_STREAM)[0][0]
            sock = socket.create_server((self.config.host, self.config.port), family=family,
                                        backlog=BACKLOG)
        except OSError as exc:
            log.error("web page not served: cannot listen on %s: %s", self.config.listen,
                      exc.strerror or exc)
            return False
        self._sock = sock
        self.hub.attach()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, started), name="web",
                                        daemon=True)
        self._thread.start()
        started.wait(10)
        log.info("web page on http://%s/", self.address)
        return True

    def _run(self, sock: socket.socket, started: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock, started))
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _serve(self, sock: socket.socket, started: threading.Event) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=sock, limit=MAX_HEAD_BYTES,
                                            backlog=BACKLOG)
        started.set()
        async with server:
            await self._stop.wait()

    def close(self) -> None:
        self._stopping.set()
        self.hub.close()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
            self._thread.join(timeout=5)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._stream_threads.shutdown(wait=False, cancel_futures=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def authorized(self, headers: Mapping[str, str], query: dict[str, list[str]]) -> bool:
        token = self.config.token.reveal()
        if not token:
            return True
        given = ""
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), token.encode())

    # -- connections (the loop's thread) -----------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS and not self._make_room():
            noisy.warning("full", "web: %d connections open, all busy or just opened: "
                          "refusing new ones", self.connections)
            writer.transport.abort()
            return
        self.connections += 1
        key = object()
        try:
            await self._requests(key, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # gone, or too slow: nothing to say
        except asyncio.CancelledError:
            pass  # the server stops: asyncio would log a cancelled connection as an error
        finally:
            self._waiting.pop(key, None)
            self.connections -= 1
            writer.transport.abort()  # no lingering close: the fd is freed now

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head; False if none."""
        if not self._waiting:
            return False
        _key, (oldest, _since) = self._waiting.popitem(last=False)
        noisy.warning("evict", "web: %d connections open: closing the ones that wait longest "
                      "without a request", self.connections)
        oldest.transport.abort()
        return True

    async def _requests(self, key: object, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        wait = HEAD_SECONDS
        while not self.stopping:
            self._waiting[key] = (writer, loop.time())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
                request = parse_head(head)
                if request.length:  # a check-in's small body, within the head's time bound
                    body = await asyncio.wait_for(reader.readexactly(request.length),
                                                  HEAD_SECONDS)
                    request = replace(request, body=body)
            except asyncio.LimitOverrunError:
                noisy.warning("head", "web: a request head over %d bytes refused", MAX_HEAD_BYTES)
                await self._write(writer, error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                                "request head too large", close=True))
                return
            except BadRequest as exc:
                noisy.warning(("bad", str(exc)), "web: request refused: %s", exc)
                await self._write(writer, error(exc.status, str(exc), close=True))
                return
            finally:
                self._waiting.pop(key, None)
            if (request.path == "/events" and request.method == "GET"
                    and self.authorized(request.headers, request.query)):
                await self._events(writer)
                return
            reply = await loop.run_in_executor(self._workers, self._answer, request)
            await self._write(writer, reply)
            if reply.close:
                return
            wait = IDLE_SECONDS

    async def _write(self, writer: asyncio.StreamWriter, reply: Answer | bytes) -> None:
        data = reply.data if isinstance(reply, Answer) else reply
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_SECONDS)

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        """Stream Server-Sent Events until the page goes away or the server stops."""
        if self.streams >= MAX_STREAMS:
            noisy.warning("streams", "web: %d event streams open: refusing more", MAX_STREAMS)
            await self._write(writer, error(HTTPStatus.SERVICE_UNAVAILABLE,
                                            "too many open pages", close=True))
            return
        loop = asyncio.get_running_loop()
        self.streams += 1
        try:
            client, first = await loop.run_in_executor(self._workers, self.hub.subscribe)
        except BaseException:
            self.streams -= 1
            raise
        try:
            head = _stream_head()
            # retry: how soon the browser reconnects after losing the node (default ~3 s).
            await self._send_event(writer, head, b"retry: 1000\n\n", first)
            del first  # the whole document (10 MB at 20,000 rooms): not held while a page is open
            memory.trim()  # and what making it took, given back
            while not client.closed and not self.stopping:
                messages = await loop.run_in_executor(self._stream_threads, client.take,
                                                      HEARTBEAT_SECONDS)
                await self._send_event(writer, b"", b"".join(messages) if messages
                                       else b"event: ping\ndata: {}\n\n")
        finally:
            self.streams -= 1
            self.hub.unsubscribe(client)

    async def _send_event(self, writer: asyncio.StreamWriter, head: bytes, *data: bytes) -> None:
        for part in (head, *data):  # written one by one: no copy of a large snapshot joined
            writer.write(part)
        await asyncio.wait_for(writer.drain(), WRITE_SECONDS)
        self.bytes_sent += sum(len(part) for part in data)

    # -- answers (a worker thread) -----------------------------------------------------------------

    def _answer(self, request: Request) -> Answer:
        try:
            reply = self._route(request)
        except Exception as exc:  # a bug of ours: one line and a 500, the server goes on
            noisy.log(logging.ERROR, ("answer", type(exc).__name__),
                      "web: GET %.200s failed: %s: %s", request.path, type(exc).__name__, exc)
            log.debug("web: GET %.200s failed", request.path, exc_info=True)
            return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", close=True)
        return reply

    def _route(self, request: Request) -> Answer:
        checkin = CHECKIN.fullmatch(request.path)
        if request.method == "POST" and checkin is not None:
            return self._checkin(request, checkin["room"])
        if request.method not in ("GET", "HEAD"):
            return answer(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain; charset=utf-8",
                          close=True, extra={"Allow": "GET, HEAD"})
        head_only = request.method == "HEAD"
        path = request.path

        def send(status: HTTPStatus, body: bytes, content_type: str,
                 cache: str = "no-store") -> Answer:
            if not head_only:
                self.bytes_sent += len(body)
            return answer(status, body, content_type, cache=cache, head_only=head_only,
                          close=not request.keep_alive)

        def text(status: HTTPStatus, message: str) -> Answer:
            return send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

        def as_json(doc: Any) -> Answer:
            # No indentation: at 20,000 rooms it is a fifth of the document.
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            return send(HTTPStatus.OK, body, "application/json; charset=utf-8")

        def page(name: str) -> Answer:
            body = _static(name)
            if body is None:
                return text(HTTPStatus.INTERNAL_SERVER_ERROR, "page missing from the package")
            return send(HTTPStatus.OK, body, STATIC_TYPES[".html"], cache="no-cache")

        if path.startswith("/static/"):
            name = path[len("/static/"):]
            body = _static(name)
            suffix = name[name.rfind("."):] if "." in name else ""
            if body is None or suffix not in STATIC_TYPES or suffix == ".html":
                return text(HTTPStatus.NOT_FOUND, "not found")
            return send(HTTPStatus.OK, body, STATIC_TYPES[suffix], cache="no-cache")
        if not self.authorized(request.headers, request.query):
            return text(HTTPStatus.UNAUTHORIZED, "unauthorized")
        node = self.node
        if path in PAGES:
            return page(PAGES[path])
        if path == "/api/status":
            # Joined from the rooms' JSON: never the whole document as objects.
            body = join_status(*status_parts(node, rooms=_listed(request.query, "rooms"),
                                             floors=_listed(request.query, "floor")))
            if len(body) > LARGE_ANSWER:
                memory.trim()  # what joining thousands of rooms took, given back
            return send(HTTPStatus.OK, body, "application/json; charset=utf-8")
        if path == "/metrics":
            metrics = metrics_text(status_document(node), self.counters())
            return send(HTTPStatus.OK, metrics.encode(), "text/plain; version=0.0.4; charset=utf-8")
        if path.startswith("/api/rooms/"):
            detail = room_detail(node, path[len("/api/rooms/"):])
            return text(HTTPStatus.NOT_FOUND, "no such room") if detail is None else as_json(detail)
        if path.startswith("/rooms/"):
            rest = path[len("/rooms/"):]
            if rest.endswith("/sign.png"):
                return self._sign(rest[:-len("/sign.png")], send, text)
            if node.config.room(rest) is None:
                return text(HTTPStatus.NOT_FOUND, "no such room")
            return page("room.html")
        return text(HTTPStatus.NOT_FOUND, "not found")

    def _checkin(self, request: Request, open_id: str) -> Answer:
        """``POST /api/rooms/ROOM/checkin``: see the module docstring."""

        def reply(ok: bool, message: str, status: HTTPStatus) -> Answer:
            body = json.dumps({"ok": ok, "message": message}, ensure_ascii=False).encode()
            return answer(status, body, "application/json; charset=utf-8",
                          close=not request.keep_alive)

        if not self.config.token:
            return reply(False, "check-in from the web page needs [web] token",
                         HTTPStatus.FORBIDDEN)
        if not self.authorized(request.headers, {}):  # the header only: never ?token=
            return reply(False, "unauthorized", HTTPStatus.UNAUTHORIZED)
        if self.press is None or self.node.config.room(open_id) is None:
            return reply(False, "no such room, or no check-in on this node",
                         HTTPStatus.NOT_FOUND)
        try:
            action = Action(json.loads(request.body)["action"])
        except (ValueError, KeyError, TypeError):
            return reply(False, 'send {"action": "in"} or {"action": "end"}',
                         HTTPStatus.BAD_REQUEST)
        try:
            result = self.press(open_id, action, "web").result(timeout=END_WAIT)
        except FutureTimeout:
            result = Result(False, "no answer from Feishu yet")
        return reply(result.ok, result.message,
                     HTTPStatus.OK if result.ok else HTTPStatus.CONFLICT)

    def _sign(self, open_id: str, send: Callable[[HTTPStatus, bytes, str], Answer],
              text: Callable[[HTTPStatus, str], Answer]) -> Answer:
        from display.render.eink import render_sign, sign_config

        node = self.node
        room = node.config.room(open_id)
        view = node.views().get(open_id)
        if room is None:
            return text(HTTPStatus.NOT_FOUND, "no such room")
        if view is None:
            return text(HTTPStatus.SERVICE_UNAVAILABLE, "the node has not computed this room yet")
        out = io.BytesIO()
        render_sign(view, sign_config(room, None)).to_rgb().save(out, format="PNG")
        return send(HTTPStatus.OK, out.getvalue(), "image/png")


def _stream_head() -> bytes:
    """The head of an event stream: no length, so it ends the connection."""
    reply = answer(HTTPStatus.OK, b"", "text/event-stream; charset=utf-8", head_only=True,
                   close=True)
    return reply.data.replace(b"Content-Length: 0\r\n", b"")


def _listed(query: dict[str, list[str]], name: str) -> set[str] | None:
    """``?name=a,b&name=c`` as {a, b, c}; None when the parameter is absent."""
    if name not in query:
        return None
    return {item.strip() for value in query[name] for item in value.split(",") if item.strip()}
