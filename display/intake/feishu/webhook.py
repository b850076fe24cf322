"""Webhook mode: a stdlib HTTP/1.1 server whose requests pass our checks, then the SDK's.

:class:`WebhookHandler` lists the status of every answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lark_oapi as lark
from lark_oapi.core.exception import AccessDeniedException, NoAuthorizationException
from lark_oapi.core.utils import AESCipher

from display.config import FeishuConfig
from display.errors import EventError, StoreError
from display.intake.envelope import parse_envelope
from display.intake.feishu.channel import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ParentChannel
from display.intake.feishu.dispatch import Intake, build_handler
from display.intake.resync import Resync

log = logging.getLogger(__name__)

#: Idle keep-alive connections are closed after this; it also bounds a slow client's request.
HTTP_TIMEOUT = 30.0
#: serve_forever's select() timeout; only shutdown() would need it shorter, and we never call it.
IDLE_POLL = 3600.0

# The SDK looks these up case-sensitively in RawRequest.headers; HTTP header names are not.
TIMESTAMP_HEADER = lark.LARK_REQUEST_TIMESTAMP
NONCE_HEADER = lark.LARK_REQUEST_NONCE
SIGNATURE_HEADER = lark.LARK_REQUEST_SIGNATURE
_CANONICAL = {h.lower(): h for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}


class WebhookServer(ThreadingHTTPServer):
    """HTTP server carrying the intake and config its request handlers need."""

    daemon_threads = True

    def __init__(self, feishu: FeishuConfig, intake: Intake, handler: Any) -> None:
        self.feishu = feishu
        self.intake = intake
        self.dispatcher = handler
        super().__init__((feishu.listen_host, feishu.listen_port), WebhookHandler)

    @property
    def listen(self) -> str:
        host, port = self.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"


class WebhookHandler(BaseHTTPRequestHandler):
    """One webhook request: cheap checks first, then the SDK, then a clear status.

    404 other path, 405 not POST, 411 no Content-Length, 413 body too large (not read),
    400 malformed JSON / undecryptable / invalid event (``{"msg": "<field>: <reason>"}``),
    401 signature, stale timestamp or verification token, 503 store failure (Feishu retries),
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
        if not length_text.strip().isdigit():
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
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._reject(HTTPStatus.BAD_REQUEST, f"malformed JSON: {exc}")
        if not isinstance(data, dict):
            return self._reject(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        headers = {_CANONICAL.get(k.lower(), k): v for k, v in self.headers.items()}
        problem = self._check_signature(headers, body)
        if problem:
            return self._reject(HTTPStatus.UNAUTHORIZED, problem)
        # Missing signature headers become empty strings so the SDK rejects an unsigned event
        # with its signature error (not a TypeError); url_verification is never signed-checked.
        for name in _CANONICAL.values():
            headers.setdefault(name, "")
        self._dispatch(headers, body, data)

    def _check_signature(self, headers: dict[str, str], body: bytes) -> str | None:
        """Our checks before the SDK's: replay window, then the signature in constant time."""
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            return None
        feishu = self.server.feishu
        stamp = headers.get(TIMESTAMP_HEADER, "")
        try:
            age = time.time() - int(stamp)
        except ValueError:
            return f"{TIMESTAMP_HEADER} {stamp[:20]!r} is not a number"
        if abs(age) > feishu.replay_window_seconds:
            return (f"{TIMESTAMP_HEADER} is {age:.0f} s off (outside the "
                    f"±{feishu.replay_window_seconds} s replay window)")
        key = feishu.encrypt_key.reveal()
        if key:
            nonce = headers.get(NONCE_HEADER, "")
            expected = hashlib.sha256((stamp + nonce + key).encode() + body).hexdigest()
            if not hmac.compare_digest(expected, signature.strip().lower()):
                return "signature verification failed"
        return None

    def _dispatch(self, headers: dict[str, str], body: bytes, data: dict[str, Any]) -> None:
        request = lark.RawRequest()
        request.uri = self.path
        request.headers = headers
        request.body = body
        state = self.server.intake.state
        state.reset()
        state.capturing = True
        try:
            response = self.server.dispatcher.do(request)
        finally:
            state.capturing = False
        if isinstance(state.error, EventError):
            return self._reject(HTTPStatus.BAD_REQUEST, str(state.error), logged=True)
        if isinstance(state.error, StoreError):
            return self._reply(HTTPStatus.SERVICE_UNAVAILABLE,
                               {"msg": "schedule store unavailable; retry later"})
        if response.status_code == HTTPStatus.OK:
            if state.accepted is not None:
                return self._reply(HTTPStatus.OK, {"msg": "success",
                                                   "verdict": state.accepted.verdict.value})
            log.info("answered url_verification")
            return self._send(HTTPStatus.OK, response.content or b"{}")
        self._reject(*self._classify(state.sdk_error, data))

    def _classify(self, error: BaseException | None,
                  data: dict[str, Any]) -> tuple[HTTPStatus, str]:
        """Status and reason for a request the SDK refused before reaching our handler."""
        if isinstance(error, AccessDeniedException | NoAuthorizationException):
            return HTTPStatus.UNAUTHORIZED, str(error)
        if error is None:
            return HTTPStatus.INTERNAL_SERVER_ERROR, "the SDK failed without a reason"
        plain: Any = data
        if "encrypt" in data:
            try:
                plain = json.loads(AESCipher(self.server.feishu.encrypt_key.reveal())
                                   .decrypt_str(data["encrypt"]))
            except (ValueError, TypeError, UnicodeDecodeError):
                return HTTPStatus.BAD_REQUEST, "cannot decrypt the body (check feishu.encrypt_key)"
        try:  # the SDK choked on the envelope's shape: name the field
            parse_envelope(plain)
        except EventError as exc:
            return HTTPStatus.BAD_REQUEST, str(exc)
        return HTTPStatus.BAD_REQUEST, f"malformed event ({type(error).__name__}: {error})"

    # -- answering ------------------------------------------------------------------------------

    def _reject(self, status: HTTPStatus, reason: str, *, logged: bool = False,
                **headers: str) -> None:
        if not logged:
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


def run_webhook(feishu: FeishuConfig, config_path: Path, intake: Intake,
                channel: ParentChannel, alive_interval: float, resync: Resync | None) -> int:
    """Serve webhooks until stdin closes (the process then exits from the watcher thread)."""
    if not feishu.verification_token:
        log.error("%s: feishu.verification_token: is required in webhook mode (every event "
                  "carries it; copy it from the developer console)", config_path)
        return EXIT_CONFIG
    try:
        server = WebhookServer(feishu, intake, build_handler(intake, feishu))
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
            time.sleep(alive_interval)

    threading.Thread(target=heartbeat, name="alive", daemon=True).start()
    # The selector blocks until a connection arrives (no 0.5 s poll): nobody calls shutdown(),
    # the process ends from the stdin watcher.
    server.serve_forever(poll_interval=IDLE_POLL)
    return EXIT_OK
