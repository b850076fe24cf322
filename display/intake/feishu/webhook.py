"""Webhook mode: a stdlib HTTP/1.1 server doing Feishu's documented checks itself.

:class:`WebhookHandler` lists the status of every answer; :mod:`.checks` holds the checks
(signature over the raw bytes before any JSON is parsed). Events go to the same
:class:`~display.intake.sink.EventSink` as the long connection's; nothing here imports
``lark_oapi``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
)
from display.intake.sink import Accepted, EventSink, Verdict

if TYPE_CHECKING:  # resync imports lark-oapi; a webhook without re-sync never does
    from display.intake.feishu.resync import Resync

log = logging.getLogger(__name__)

#: Idle keep-alive connections are closed after this; it also bounds a slow client's request.
HTTP_TIMEOUT = 30.0
#: serve_forever's select() timeout; only shutdown() would need it shorter, and we never call it.
IDLE_POLL = 3600.0
#: listen() backlog: Feishu retries a burst of deliveries at once; a short queue would drop
#: their SYNs (a retry a second later) or, with tcp_abort_on_overflow, reset them.
BACKLOG = 256

_CANONICAL = {h.lower(): h for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}


class WebhookServer(ThreadingHTTPServer):
    """HTTP server carrying the sink and config its request handlers need."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, feishu: FeishuConfig, sink: EventSink) -> None:
        self.feishu = feishu
        self.sink = sink
        self._ignored_v2: set[str] = set()
        self._ignored_lock = threading.Lock()
        super().__init__((feishu.listen_host, feishu.listen_port), WebhookHandler)

    @property
    def listen(self) -> str:
        host, port = self.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def first_v2(self, kind: str) -> bool:
        """Whether this v2 event type is seen for the first time (logged once)."""
        with self._ignored_lock:
            first = kind not in self._ignored_v2
            self._ignored_v2.add(kind)
        return first

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr for any client; one line instead.
        log.error("webhook request from %s failed", client_address[0], exc_info=log.isEnabledFor(
            logging.DEBUG))


class WebhookHandler(BaseHTTPRequestHandler):
    """One webhook request: HTTP checks, then Feishu's (:mod:`.checks`), then the sink.

    404 other path, 405 not POST, 411 no Content-Length, 413 body too large (not read),
    400 malformed JSON / too deeply nested / undecryptable / invalid event
    (``{"msg": "<field>: <reason>"}``), 401 signature missing or wrong, timestamp not digits or
    outside the replay window, verification token wrong, 503 store failure (Feishu retries),
    200 ``{"msg": "success", "verdict": ...}`` or the url_verification challenge.
    """

    protocol_version = "HTTP/1.1"  # keep-alive: Feishu and benchmarks reuse connections
    timeout = HTTP_TIMEOUT
    # Buffer the answer so headers and body leave in one send (handle_one_request flushes it):
    # two small sends cost a syscall and a loopback wake-up each, and with Nagle on the
    # client's delayed ACK would add ~40 ms to every answer on a kept-alive connection.
    wbufsize = 16 * 1024
    disable_nagle_algorithm = True
    server: WebhookServer

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            self._reply(HTTPStatus.OK, {"ok": True})
        else:
            self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- the request --------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        feishu = self.server.feishu
        if urlsplit(self.path).path != feishu.path:
            return self._reject(HTTPStatus.NOT_FOUND, f"no such path {self.path[:80]!r}")
        if method != "POST":
            return self._reject(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed; use POST",
                                Allow="POST")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return self._reject(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        length_text = length_text.strip()
        if not (length_text.isascii() and length_text.isdigit()):
            self.close_connection = True  # where the body ends is unknown
            return self._reject(HTTPStatus.BAD_REQUEST,
                                f"Content-Length {length_text[:20]!r} is not a number")
        length = int(length_text)
        if length > feishu.max_body_bytes:
            return self._reject(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                f"body of {length} bytes exceeds {feishu.max_body_bytes}")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return  # the client went away mid-body: nobody to answer
        headers = {_CANONICAL.get(k.lower(), k): v for k, v in self.headers.items()}
        try:
            delivery = open_delivery(headers, body, encrypt_key=feishu.encrypt_key.reveal(),
                                     verification_token=feishu.verification_token.reveal(),
                                     window=feishu.replay_window_seconds, now=time.time())
        except Rejected as exc:
            self.server.sink.count_refused()  # /metrics: a wrong token shows as refusals
            return self._reject(exc.status, exc.reason)
        if delivery.kind is Kind.CHALLENGE:
            log.info("answered url_verification")
            return self._reply(HTTPStatus.OK, {"challenge": delivery.data["challenge"]})
        if delivery.kind is Kind.EVENT_V2:
            kind = str(delivery.data["header"].get("event_type", "?"))[:80]
            if self.server.first_v2(kind):
                log.info("ignoring v2 event type %r (acknowledged; logged once)", kind)
            return self._accepted(Accepted(Verdict.IGNORED))
        try:
            accepted = self.server.sink.accept(delivery.data)
        except EventError as exc:
            return self._reject(HTTPStatus.BAD_REQUEST, str(exc))
        except StoreError as exc:
            log.error("cannot commit event uuid=%.64r: %s (answered 503; Feishu retries)",
                      delivery.data.get("uuid"), exc)
            return self._reply(HTTPStatus.SERVICE_UNAVAILABLE,
                               {"msg": "schedule store unavailable; retry later"})
        self._accepted(accepted)

    def _accepted(self, accepted: Accepted) -> None:
        self._reply(HTTPStatus.OK, {"msg": "success", "verdict": accepted.verdict.value})

    # -- answering ------------------------------------------------------------------------------

    def _reject(self, status: HTTPStatus, reason: str, **headers: str) -> None:
        log.warning("webhook %d %s from %s: %s", status.value, status.phrase,
                    self.client_address[0], reason)
        self._reply(status, {"msg": reason}, **headers)

    def _reply(self, status: HTTPStatus, payload: dict[str, Any], **headers: str) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), **headers)

    def _send(self, status: HTTPStatus, content: bytes, **headers: str) -> None:
        if status in (HTTPStatus.LENGTH_REQUIRED, HTTPStatus.REQUEST_ENTITY_TOO_LARGE):
            self.close_connection = True  # the unread body would be taken for the next request
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)


def run_webhook(feishu: FeishuConfig, config_path: Path, sink: EventSink,
                channel: ParentChannel, alive_interval: float, resync: Resync | None) -> int:
    """Serve webhooks until stdin closes (the process then exits from the watcher thread)."""
    if not feishu.verification_token:
        log.error("%s: feishu.verification_token: is required in webhook mode (every event "
                  "carries it; copy it from the developer console)", config_path)
        return EXIT_CONFIG
    try:
        server = WebhookServer(feishu, sink)
    except OSError as exc:
        log.error("cannot listen on %s: %s (feishu.listen)", feishu.listen, exc)
        return EXIT_FAILURE
    log.info("webhook intake listening on http://%s%s", server.listen, feishu.path)
    channel.send(ready=True, mode="webhook", listen=server.listen)
    channel.send(link="up")
    if resync is not None:
        resync.start()

    def heartbeat() -> None:
        while True:
            channel.send(alive=round(time.time(), 3), last_frame_age=None)
            sink.log_summary()
            time.sleep(alive_interval)

    threading.Thread(target=heartbeat, name="alive", daemon=True).start()
    # The selector blocks until a connection arrives (no 0.5 s poll): nobody calls shutdown(),
    # the process ends from the stdin watcher.
    server.serve_forever(poll_interval=IDLE_POLL)
    return EXIT_OK
