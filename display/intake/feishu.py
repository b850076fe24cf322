"""The Feishu intake child process: the only module that imports ``lark_oapi``.

lark-oapi keeps one module-global asyncio loop, its ``ws.Client.start()`` blocks forever, has no
``stop()`` and can die silently; importing it costs seconds and ~170 MB. So the intake runs in a
child process, started and restarted by :class:`display.intake.supervisor.IntakeSupervisor`::

    python -m display.intake.feishu -c CONFIG [--alive-interval SECONDS]
        [--resync-interval SECONDS] [--resync-backoff SECONDS]   (the last two: tests)

It loads the config, opens the schedule store under ``[node] state_dir``, and feeds every event
through :class:`~display.intake.sink.EventSink` *before* acknowledging it:

- ``mode = "long_connection"`` (default): the real ``lark.ws.Client`` in a thread; a watchdog exits
  the process when no frame (ping, pong or data) arrived for 3 ping intervals, so the parent
  restarts it. Invalid events are logged and acknowledged (retries cannot fix them); a store
  failure makes the SDK answer 500 so Feishu retries.
- ``mode = "webhook"``: a stdlib HTTP/1.1 server on ``listen`` serving ``path`` (and
  ``GET /healthz``), with the SDK's ``EventDispatcherHandler`` doing decryption, token and
  signature checks; our own checks in front give each rejection a clear status (see
  :class:`WebhookHandler`).

Unless ``resync = false``, it also re-syncs every room from Feishu's free/busy API
(:mod:`display.intake.resync`): once ready, after each long-connection reconnect and every
``resync_minutes``; that needs ``app_id`` and ``app_secret`` in webhook mode too.

Parent contract: stdout carries only these JSON lines (one object per line, UTF-8)::

    {"ready": true, "mode": "webhook"|"long_connection", "listen": "HOST:PORT"|null}
        once, when listening (webhook; the real port when the config says :0) or connected
    {"changed": ["omm_..", ...]}
        after each committed change, the rooms whose bookings changed (sorted)
    {"link": "up"}  /  {"link": "down", "error": "..."}
        on connect, disconnect and reconnect (webhook: "up" once listening)
    {"alive": <unix time>, "last_frame_age": <seconds>|null}
        every ``--alive-interval`` seconds (default 5); the age of the newest frame from Feishu
    {"resync": {"ok": bool, "at": <unix time>, "error": "..."|null, "rooms": <int>,
                "changed": <int>, "next_at": <unix time>|null}}
        after each re-sync pass: whether every room was re-synced, how many rooms were (and
        changed; their ids came in "changed" lines first), the failure, and when the next pass is
        due (null: only after a reconnect). Also once with ok false and next_at null when
        re-sync is on but cannot run (e.g. no app credentials in webhook mode).

Readers must ignore keys they do not know. Logs go to stderr. The child exits when stdin reaches
EOF (the parent is gone), so run it by hand as ``sleep infinity | python -m ...``.
Exit codes: 0 stdin closed; 1 link lost, watchdog or unexpected error; 2 configuration or
credentials rejected (retrying soon will not help: back off).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import lark_oapi as lark
from lark_oapi.core.exception import AccessDeniedException, NoAuthorizationException
from lark_oapi.core.utils import AESCipher
from lark_oapi.event.custom import CustomizedEventProcessor
from lark_oapi.ws.exception import ClientException

from display.clock import SystemClock
from display.config import Config, FeishuConfig, load_config
from display.errors import ConfigError, EventError, StoreError
from display.intake.envelope import parse_envelope
from display.intake.resync import BACKOFF_INITIAL, LarkFreeBusy, PassResult, Resync
from display.intake.sink import Accepted, EventSink, Verdict
from display.model import EventKind
from display.store import ScheduleStore

# Run with -m this module is "__main__"; log under its real name all the same.
log = logging.getLogger("display.intake.feishu" if __name__ == "__main__" else __name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
ALIVE_INTERVAL = 5.0
#: The watchdog never fires sooner than this, whatever ping interval the server asks for.
WATCHDOG_FLOOR = 3.0
#: Pings/pongs the watchdog waits for before declaring the link dead.
WATCHDOG_PINGS = 3
#: Idle keep-alive connections are closed after this; it also bounds a slow client's request.
HTTP_TIMEOUT = 30.0

# The SDK looks these up case-sensitively in RawRequest.headers; HTTP header names are not.
TIMESTAMP_HEADER = lark.LARK_REQUEST_TIMESTAMP
NONCE_HEADER = lark.LARK_REQUEST_NONCE
SIGNATURE_HEADER = lark.LARK_REQUEST_SIGNATURE
_CANONICAL = {h.lower(): h for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}


# -- talking to the parent --------------------------------------------------------------------


class ParentChannel:
    """Writes the JSON lines of the parent contract (module docstring); thread-safe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, **fields: Any) -> None:
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                # The parent closed the pipe: nobody is left to serve.
                os._exit(EXIT_OK)


def take_stdout() -> TextIO:
    """Reserve the real stdout for the protocol and point fd 1 and ``sys.stdout`` at stderr.

    lark-oapi's logger writes to stdout, and so might any stray print: none of that may corrupt
    the protocol stream.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


def exit_when_stdin_closes() -> None:
    """Exit the process when stdin reaches EOF: the parent died or asked us to stop."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        log.info("stdin closed (parent gone): exiting")
        logging.shutdown()
        os._exit(EXIT_OK)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


# -- events through the SDK's dispatcher ------------------------------------------------------


class _RequestState(threading.local):
    """What happened while the SDK handled one request on this thread."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.capturing = False
        self.accepted: Accepted | None = None
        self.error: EventError | StoreError | None = None
        self.sdk_error: BaseException | None = None


class SdkLogCapture(logging.Filter):
    """Silences the SDK's own records while we handle a webhook request and keeps the exception.

    ``EventDispatcherHandler.do`` answers 500 for every failure and logs it with a traceback; the
    exception's class is the only thing that tells a bad token apart from a broken body, and our
    single log line per rejection replaces its traceback.
    """

    def __init__(self, state: _RequestState) -> None:
        super().__init__("Lark")
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._state.capturing:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            self._state.sdk_error = record.exc_info[1]
        return False


class Intake:
    """Glue between lark-oapi's dispatcher and :class:`EventSink`, for both modes."""

    def __init__(self, sink: EventSink, *, long_connection: bool) -> None:
        self.sink = sink
        self.long_connection = long_connection
        self.state = _RequestState()
        self._ignored_logged: set[str] = set()

    def on_event(self, event: Any) -> None:
        """The SDK's p1 handler: commit the event, then return so the SDK acknowledges it."""
        if getattr(event, "schema", None):  # a v2 event: nothing we subscribe to
            kind = str(getattr(getattr(event, "header", None), "event_type", "?"))
            if kind not in self._ignored_logged:
                self._ignored_logged.add(kind)
                log.info("ignoring v2 event type %r (acknowledged; logged once)", kind)
            self.state.accepted = Accepted(Verdict.IGNORED)
            return
        raw = {"uuid": event.uuid, "token": event.token, "ts": event.ts, "type": event.type,
               "event": event.event}
        try:
            self.state.accepted = self.sink.accept(raw)
        except EventError as exc:
            self.state.error = exc
            log.warning("rejected event uuid=%.64r: %s", raw["uuid"], exc)
            if self.long_connection:
                return  # acknowledged: a retry of the same bytes cannot fix it
            raise
        except StoreError as exc:
            self.state.error = exc
            log.error("cannot commit event uuid=%.64r: %s (not acknowledged; Feishu retries)",
                      raw["uuid"], exc)
            raise


class _FallbackProcessors(dict[str, Any]):
    """The SDK's processor map, answering every unregistered type with one processor."""

    def __init__(self, registered: dict[str, Any], fallback: Any) -> None:
        super().__init__(registered)
        self._fallback = fallback

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or self._fallback

    def __missing__(self, key: str) -> Any:
        return self._fallback


def route_unregistered_types(handler: Any, on_event: Callable[[Any], None]) -> None:
    """Send every event type we did not register to ``on_event`` (which ignores unknown ones).

    The SDK answers "processor not found" (500 / a failed ack) for unregistered types and Feishu
    would retry them for hours; its only seam is the private ``_processorMap``, so a test
    (``test_unknown_type_is_acknowledged``) fails if an upgrade renames it.
    """
    processors = getattr(handler, "_processorMap", None)
    if not isinstance(processors, dict):
        raise RuntimeError("lark-oapi changed: EventDispatcherHandler._processorMap is gone")
    handler._processorMap = _FallbackProcessors(processors, CustomizedEventProcessor(on_event))


def build_handler(intake: Intake, feishu: FeishuConfig) -> Any:
    """The SDK's dispatcher with our handler for the three event kinds and everything else."""
    builder = lark.EventDispatcherHandler.builder(feishu.encrypt_key.reveal(),
                                                  feishu.verification_token.reveal())
    for kind in EventKind:
        builder = builder.register_p1_customized_event(kind.value, intake.on_event)
    handler = builder.build()
    route_unregistered_types(handler, intake.on_event)
    return handler


def quiet_sdk_logger(capture: logging.Filter) -> None:
    """Route the SDK's logger to our stderr handler, warnings and up, through ``capture``."""
    sdk_log = logging.getLogger("Lark")
    for h in list(sdk_log.handlers):  # its own handler writes to stdout
        sdk_log.removeHandler(h)
    sdk_log.setLevel(logging.WARNING)
    sdk_log.propagate = True
    sdk_log.addFilter(capture)


# -- webhook mode -------------------------------------------------------------------------------


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
    server.serve_forever()
    return EXIT_OK


# -- long-connection mode -----------------------------------------------------------------------


class WatchedClient(lark.ws.Client):  # type: ignore[misc]  # lark_oapi is untyped
    """``lark.ws.Client`` that remembers when it last heard from the server.

    Every frame (ping, pong, data) counts; the watchdog in :func:`run_long_connection` compares
    the age with the client's ``_ping_interval``, which the endpoint's ClientConfig sets.
    """

    def __init__(self, *args: Any, on_connected: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_frame = time.monotonic()
        self._on_connected = on_connected

    async def _handle_message(self, msg: bytes) -> None:
        self.last_frame = time.monotonic()
        await super()._handle_message(msg)

    async def _connect(self) -> None:
        await super()._connect()
        if self._conn is not None:
            self.last_frame = time.monotonic()  # a fresh connection starts the clock anew
            self._on_connected()

    @property
    def ping_interval(self) -> float:
        return float(self._ping_interval or 0)


def run_long_connection(feishu: FeishuConfig, config_path: Path, intake: Intake,
                        channel: ParentChannel, alive_interval: float,
                        resync: Resync | None) -> int:
    """Hold the long connection until it dies, the watchdog fires or stdin closes."""
    ready = threading.Event()

    def connected() -> None:  # on the SDK's loop thread: only quick, non-blocking calls here
        if not ready.is_set():
            ready.set()
            log.info("long connection to %s established", feishu.domain)
            channel.send(ready=True, mode="long_connection", listen=None)
            channel.send(link="up")
            if resync is not None:
                resync.start()
        elif resync is not None:
            # Events sent while we were away may be lost for good (or come hours later).
            resync.link(True)
            resync.request("long connection re-established")

    def reconnecting() -> None:
        log.warning("long connection lost; the SDK is reconnecting")
        channel.send(link="down", error="connection lost; reconnecting")
        if resync is not None:
            resync.link(False)

    def reconnected() -> None:
        log.info("long connection re-established")
        channel.send(link="up")

    client = WatchedClient(feishu.app_id, feishu.app_secret.reveal(),
                           event_handler=build_handler(intake, feishu), domain=feishu.domain,
                           log_level=lark.LogLevel.WARNING, on_connected=connected)
    client.on_reconnecting = reconnecting
    client.on_reconnected = reconnected
    done: queue.Queue[int] = queue.Queue()

    def run() -> None:
        try:
            client.start()
        except ClientException as exc:
            log.error("Feishu refused the long connection: %s (check feishu.app_id and "
                      "feishu.app_secret, and that the app is self-built)", exc)
            done.put(EXIT_CONFIG)
        except Exception as exc:  # the thread's boundary: anything else ends the process
            log.error("long connection failed: %s: %s", type(exc).__name__, exc)
            done.put(EXIT_FAILURE)
        else:
            done.put(EXIT_FAILURE)

    threading.Thread(target=run, name="lark-ws", daemon=True).start()
    next_alive = 0.0
    while True:
        try:
            return done.get(timeout=min(1.0, alive_interval))
        except queue.Empty:
            pass
        now = time.monotonic()
        age = now - client.last_frame
        limit = max(WATCHDOG_PINGS * client.ping_interval, WATCHDOG_FLOOR)
        if age > limit:
            reason = f"no frame from Feishu for {age:.0f} s (limit {limit:.0f} s)"
            log.error("watchdog: %s; exiting so the supervisor restarts the intake", reason)
            channel.send(link="down", error=reason)
            return EXIT_FAILURE
        if now >= next_alive:
            next_alive = now + alive_interval
            channel.send(alive=round(time.time(), 3), last_frame_age=round(age, 3))


# -- re-sync ------------------------------------------------------------------------------------


def make_resync(config: Config, feishu: FeishuConfig, store: ScheduleStore,
                channel: ParentChannel, interval: float | None,
                backoff: float) -> Resync | None:
    """The re-sync worker for this child (not started), or ``None`` when it is off or cannot run.

    When it cannot run, one log line and one ``resync`` line to the parent say why.
    """
    if not feishu.resync_enabled:
        log.info("re-sync from free/busy is off (feishu.resync = false or resync_minutes = 0)")
        return None
    problem = None
    if not feishu.app_id or not feishu.app_secret:
        problem = ("re-sync needs feishu.app_id and feishu.app_secret (or set "
                   "feishu.resync = false)")
    else:
        try:
            api = LarkFreeBusy(feishu)
        except ValueError as exc:  # the SDK refuses plain http to anything but loopback
            problem = f"re-sync cannot use feishu.domain: {exc}"
    if problem is not None:
        log.error("%s: %s", config.path, problem)
        channel.send(resync={"ok": False, "at": round(time.time(), 3), "error": problem,
                             "rooms": 0, "changed": 0, "next_at": None})
        return None
    rooms = [room.open_id for room in config.rooms]

    def current_rooms() -> list[str]:
        # Re-read each pass: `map add-room` reaches a running node without restarting us.
        nonlocal rooms
        try:
            rooms = [room.open_id for room in load_config(config.path).rooms]
        except ConfigError as exc:
            log.warning("re-sync keeps the rooms it knew: %s", exc)
        return rooms

    def report(result: PassResult, next_at: datetime | None) -> None:
        channel.send(resync={
            "ok": result.ok, "at": round(result.at.timestamp(), 3), "error": result.error,
            "rooms": result.rooms, "changed": len(result.changed),
            "next_at": round(next_at.timestamp(), 3) if next_at is not None else None})

    stale_after = config.occupancy.stale_after_minutes * 60.0
    return Resync(api, store, SystemClock(), current_rooms,
                  on_changed=lambda changed: channel.send(changed=sorted(changed)),
                  on_report=report,
                  interval=feishu.resync_minutes * 60.0 if interval is None else interval,
                  link_down_interval=stale_after / 2, backoff_initial=backoff)


# -- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the intake child; returns the exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m display.intake.feishu",
                                     description="Feishu intake child of room-display")
    parser.add_argument("-c", "--config", required=True, type=Path, help="config file (TOML)")
    parser.add_argument("--alive-interval", type=float, default=ALIVE_INTERVAL,
                        help="seconds between alive lines (default %(default)s)")
    parser.add_argument("--resync-interval", type=float, default=None,
                        help="seconds between periodic re-syncs, instead of "
                             "feishu.resync_minutes (tests)")
    parser.add_argument("--resync-backoff", type=float, default=BACKOFF_INITIAL,
                        help="first retry delay after a failed re-sync, doubling "
                             "(default %(default)s; tests)")
    args = parser.parse_args(argv)
    channel = ParentChannel(take_stdout())
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s feishu-intake[%(process)d] "
                               "%(name)s: %(message)s")
    exit_when_stdin_closes()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if config.feishu is None:
        log.error("%s: feishu: section missing (add [feishu] to run the Feishu intake)",
                  config.path)
        return EXIT_CONFIG
    long_connection = config.feishu.mode != "webhook"
    try:
        store = ScheduleStore(config.node.state_dir / "schedule.db")
    except StoreError as exc:
        log.error("%s (node.state_dir)", exc)
        return EXIT_FAILURE
    with store:
        sink = EventSink(store, SystemClock(),
                         on_change=lambda rooms: channel.send(changed=sorted(rooms)))
        intake = Intake(sink, long_connection=long_connection)
        quiet_sdk_logger(SdkLogCapture(intake.state))
        resync = make_resync(config, config.feishu, store, channel, args.resync_interval,
                             args.resync_backoff)
        run = run_long_connection if long_connection else run_webhook
        return run(config.feishu, config.path, intake, channel, args.alive_interval, resync)


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    # The SDK's loop thread cannot be stopped; leave without waiting for it.
    os._exit(code)
