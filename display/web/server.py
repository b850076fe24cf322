"""The read-only web page's HTTP server: the standard library's ``ThreadingHTTPServer``.

Why the stdlib: the node is already threads (loop, device workers, MQTT), the page has a handful
of clients (a few browsers, a lobby TV, Prometheus), and a thread per open page costs less memory
than importing an asyncio web framework (see ``bench/bench_web.py`` for RSS on versus off).

Routes (all ``GET``; anything else is 405):

- ``/``, ``/board``, ``/rooms/ROOM``: the pages (static shells; ``static/app.js`` fills them from
  ``/events``);
- ``/events``: Server-Sent Events: ``snapshot`` (whole document), ``room``, ``node``;
- ``/api/status``: the ``status --json`` document (``?rooms=ID,ID``, ``?floor=3F,4F``: only
  those rooms); ``/api/rooms/ROOM``: one room and its day;
- ``/rooms/ROOM/sign.png``: the e-ink sign as ``preview`` draws it;
- ``/metrics``: Prometheus text;
- ``/static/NAME``: the package's CSS and JavaScript (no token needed: they hold no data).

Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from
another origin). With ``[web] token`` set, every route but ``/static/`` needs it as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (for kiosks, whose browsers cannot set
headers).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import selectors
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from display.config import WebConfig
from display.node import Node
from display.web.document import metrics_text, page_meta, room_detail, status_document
from display.web.hub import HEARTBEAT_SECONDS, Hub

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
PAGES = {"/": "index.html", "/board": "board.html"}

Counters = Callable[[], dict[str, dict[str, int]]]


def _static(name: str) -> bytes | None:
    """A file of ``display/web/static`` (package data), or None."""
    if "/" in name or name.startswith("."):
        return None
    path = resources.files("display.web").joinpath("static", name)
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class WebServer:
    """Serves ``node``'s page on ``config.listen`` from its own threads; :meth:`close` stops it."""

    def __init__(self, config: WebConfig, node: Node,
                 counters: Counters = lambda: {}) -> None:
        self.config = config
        self.node = node
        self.counters = counters
        self.hub = Hub(node, lambda: page_meta(node))
        self.bytes_sent = 0  # for the benchmark: what the pages cost on the wire
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def stopping(self) -> bool:
        """True once :meth:`close` began: open event streams end."""
        return self._stopping.is_set()

    @property
    def address(self) -> str:
        """``HOST:PORT`` actually listened on (the real port when the config says ``:0``)."""
        if self._httpd is None:
            return self.config.listen
        host, port = self._httpd.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> bool:
        """Listen and serve in a thread; False (one log line) when the address is taken."""
        handler = _handler_class(self)
        try:
            httpd = ThreadingHTTPServer((self.config.host, self.config.port), handler)
        except OSError as exc:
            log.error("web page not served: cannot listen on %s: %s", self.config.listen,
                      exc.strerror or exc)
            return False
        httpd.daemon_threads = True
        self._httpd = httpd
        self.hub.attach()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, args=(httpd, self._wake_r),
                                        name="web", daemon=True)
        self._thread.start()
        log.info("web page on http://%s/", self.address)
        return True

    @staticmethod
    def _serve(httpd: ThreadingHTTPServer, wake: int) -> None:
        """Serve until ``wake`` is readable. ``serve_forever`` would poll twice a second to
        notice a shutdown; this sleeps in one select on the socket and the wake pipe."""
        with selectors.DefaultSelector() as selector:
            selector.register(httpd, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _events in selector.select():
                    if key.fileobj == wake:
                        return
                    httpd.handle_request()  # ready: accepts and hands it to a thread

    def close(self) -> None:
        self._stopping.set()
        self.hub.close()
        if self._httpd is not None:
            os.write(self._wake_w, b"x")
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd.server_close()
            self._httpd = None
            os.close(self._wake_r)
            os.close(self._wake_w)

    def authorized(self, headers: Any, query: dict[str, list[str]]) -> bool:
        token = self.config.token.reveal()
        if not token:
            return True
        given = ""
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), token.encode())


def _handler_class(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        web = server
    return Handler


class _Handler(BaseHTTPRequestHandler):
    web: WebServer
    protocol_version = "HTTP/1.1"
    server_version = "room-display"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: " + format, self.client_address[0], *args)

    # -- answers ----------------------------------------------------------------------------------

    def _headers(self, status: HTTPStatus, content_type: str, length: int | None,
                 cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # a ?token= must not leak onwards
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", cache)
        self.end_headers()

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              cache: str = "no-store") -> None:
        self._headers(status, content_type, len(body), cache)
        if self.command != "HEAD":
            self.wfile.write(body)
            self.web.bytes_sent += len(body)

    def _json(self, doc: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        # No indentation: at 20,000 rooms it is a fifth of the document.
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    # -- routing ----------------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._refuse()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _refuse(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path.startswith("/static/"):
            self._serve_static(path[len("/static/"):])
            return
        query = parse_qs(parts.query)
        if not self.web.authorized(self.headers, query):
            self._error(HTTPStatus.UNAUTHORIZED, "unauthorized")
            return
        self.query = query
        try:
            self._route(path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, path: str) -> None:
        node = self.web.node
        if path in PAGES:
            self._serve_page(PAGES[path])
        elif path == "/events" and self.command == "GET":
            self._events()
        elif path == "/api/status":
            self._json(status_document(node, rooms=_listed(self.query, "rooms"),
                                       floors=_listed(self.query, "floor")))
        elif path == "/metrics":
            text = metrics_text(status_document(node), self.web.counters())
            self._send(HTTPStatus.OK, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path.startswith("/api/rooms/"):
            detail = room_detail(node, path[len("/api/rooms/"):])
            if detail is None:
                self._error(HTTPStatus.NOT_FOUND, "no such room")
            else:
                self._json(detail)
        elif path.startswith("/rooms/"):
            rest = path[len("/rooms/"):]
            if rest.endswith("/sign.png"):
                self._sign(rest[:-len("/sign.png")])
            elif node.config.room(rest) is None:
                self._error(HTTPStatus.NOT_FOUND, "no such room")
            else:
                self._serve_page("room.html")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def _serve_static(self, name: str) -> None:
        body = _static(name)
        suffix = name[name.rfind("."):] if "." in name else ""
        if body is None or suffix not in STATIC_TYPES or suffix == ".html":
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        self._send(HTTPStatus.OK, body, STATIC_TYPES[suffix], cache="no-cache")

    def _serve_page(self, name: str) -> None:
        body = _static(name)
        if body is None:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "page missing from the package")
            return
        self._send(HTTPStatus.OK, body, STATIC_TYPES[".html"], cache="no-cache")

    def _sign(self, open_id: str) -> None:
        from display.render.eink import render_sign, sign_config

        node = self.web.node
        room = node.config.room(open_id)
        view = node.views().get(open_id)
        if room is None:
            self._error(HTTPStatus.NOT_FOUND, "no such room")
            return
        if view is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the node has not computed this room yet")
            return
        out = io.BytesIO()
        render_sign(view, sign_config(room, None)).to_rgb().save(out, format="PNG")
        self._send(HTTPStatus.OK, out.getvalue(), "image/png")

    def _events(self) -> None:
        """Stream Server-Sent Events until the page goes away or the server stops."""
        self._headers(HTTPStatus.OK, "text/event-stream; charset=utf-8", None)
        client, first = self.web.hub.subscribe()
        self.close_connection = True  # the stream has no length: it ends the connection
        try:
            # retry: how soon the browser reconnects after losing the node (default ~3 s).
            self._write(b"retry: 1000\n\n" + first)
            while not client.closed and not self.web.stopping:
                messages = client.take(HEARTBEAT_SECONDS)
                self._write(b"".join(messages) if messages else b"event: ping\ndata: {}\n\n")
        except OSError:
            pass  # the page was closed
        finally:
            self.web.hub.unsubscribe(client)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.web.bytes_sent += len(data)


def _listed(query: dict[str, list[str]], name: str) -> set[str] | None:
    """``?name=a,b&name=c`` as {a, b, c}; None when the parameter is absent."""
    if name not in query:
        return None
    return {item.strip() for value in query[name] for item in value.split(",") if item.strip()}
