"""A local stand-in for Feishu's open platform, for tests and benchmarks (no internet needed).

- HTTP on 127.0.0.1 (``domain``): ``POST /callback/ws/endpoint`` hands out the long-connection URL
  and ClientConfig as Feishu's protocol has them; more endpoints can be added with
  :meth:`add_route`
  (e.g. ``/open-apis/auth/v3/tenant_access_token/internal``).
- A WebSocket server speaking lark-oapi's protobuf ``Frame``: answers pings with pongs, delivers
  each event to ONE connection (as Feishu does), optionally split into several frames, records
  the acks, and can drop connections or go silent on them (TCP kept open, no pongs).
- :func:`encrypt` and :func:`signed_headers` produce webhook bodies the way Feishu does, written
  from the documented algorithm with pycryptodome (not with the SDK's helpers).
- :class:`FreeBusyApi`: the tenant token and ``meeting_room/freebusy/batch_get``, answering from
  a table and from a :class:`Calendar` of one-off bookings and recurring :class:`Series` (daily
  or weekly in an IANA time zone, exceptions moved or cancelled), expanded as Feishu documents
  it: instances of a series share ``uid`` and ``original_time = 0``, an exception carries its
  original start, times are RFC 3339 at +08:00, failing rooms go to ``error_room_ids``.
- :class:`RoomsApi`: the room directory, ``vc/v1/rooms`` (paged by ``page_token`` /
  ``has_more``) and ``vc/v1/room_levels/mget``, with Feishu's rate limit (429, code 99991400,
  ``x-ogw-ratelimit-reset``), missing-scope (99991672) and validation (99992402) answers.
- :class:`DetailsApi`: meeting titles (``meeting_room/summary/batch_get``) and user names
  (``contact/v3/users/batch``), with their errors and rate limiting, counting every call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from Crypto.Cipher import AES

# Test code may use the SDK's generated protobuf module: it *is* the wire format.
from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.asyncio.server import ServerConnection, serve

# -- webhook crypto (Feishu's "encrypt key" scheme) ----------------------------------------------


def encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """AES-256-CBC, key sha256(encrypt_key), random IV prefixed, PKCS7, base64."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    pad = 16 - len(plaintext) % 16
    cipher = AES.new(key, AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(plaintext + bytes([pad]) * pad)).decode()


def encrypted_body(envelope: Any, encrypt_key: str) -> bytes:
    """``{"encrypt": ...}`` around the JSON of ``envelope``."""
    return json.dumps({"encrypt": encrypt(json.dumps(envelope).encode(), encrypt_key)}).encode()


def signed_headers(body: bytes, encrypt_key: str, *, timestamp: int | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """The three signature headers: hex sha256(timestamp + nonce + encrypt_key + body)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or uuid.uuid4().hex
    sig = hashlib.sha256((ts + nonce + encrypt_key).encode() + body).hexdigest()
    return {"Content-Type": "application/json", "X-Lark-Request-Timestamp": ts,
            "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": sig}


# -- the stand-in -------------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request to the stand-in."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


#: ``route(request) -> (status, payload[, headers])``; a ``bytes`` payload is sent as it is.
Route = Callable[[Request], tuple[int, Any] | tuple[int, Any, dict[str, str]]]


@dataclass(frozen=True)
class Ack:
    """A client's answer to one delivered event."""

    message_id: str
    connection: str
    code: int | None
    payload: Any
    received: float = field(default_factory=time.monotonic)


@dataclass
class _Conn:
    id: str
    ws: ServerConnection
    silent: bool = False


class FeishuStandIn:
    """Feishu's endpoints on 127.0.0.1 free ports; a context manager."""

    def __init__(self, *, app_id: str = "cli_standin", app_secret: str = "standin-secret",
                 ping_interval: int = 1, reconnect_interval: int = 1,
                 reconnect_nonce: int = 0) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.client_config = {"ReconnectCount": -1, "ReconnectInterval": reconnect_interval,
                              "ReconnectNonce": reconnect_nonce, "PingInterval": ping_interval}
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        self.acks: dict[str, list[Ack]] = {}
        self.pings = 0
        #: Called on the WebSocket thread the moment an ack arrives, before it is recorded.
        self.on_ack: Callable[[Ack], None] | None = None
        self._conns: dict[str, _Conn] = {}
        self._lock = threading.Lock()
        self._round_robin = itertools.count()
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ws_port = 0
        self._http: ThreadingHTTPServer | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.add_route("POST", "/callback/ws/endpoint", self._endpoint)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FeishuStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=self._run_ws, args=(ready,), name="standin-ws",
                         daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("stand-in WebSocket server did not start")
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(method, parts.path, parse_qs(parts.query), dict(self.headers),
                              self.rfile.read(length))
                with standin._lock:
                    standin.requests.append(req)
                route = standin.routes.get((method, parts.path))
                answer = route(req) if route else (404, {"code": 404, "msg": "no route"})
                status, payload = answer[0], answer[1]
                extra: dict[str, str] = answer[2] if len(answer) > 2 else {}
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                # JSON unless the route says otherwise (a gateway's HTML error page).
                self.send_header("Content-Type", next(
                    (v for k, v in extra.items() if k.lower() == "content-type"),
                    "application/json"))
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    if name.lower() != "content-type":
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="standin-http",
                         daemon=True).start()

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set_result, None)

    @property
    def domain(self) -> str:
        """What a config's ``[feishu] domain`` should say."""
        assert self._http is not None, "start() first"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def add_route(self, method: str, path: str, route: Route) -> None:
        """Serve ``method path`` with ``route(request) -> (status, JSON payload[, headers])``;
        a payload of bytes goes as it is, with the headers' ``Content-Type`` if they name one."""
        self.routes[(method, path)] = route

    # -- HTTP endpoints -------------------------------------------------------------------------

    def _endpoint(self, req: Request) -> tuple[int, Any]:
        body = req.json() or {}
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return 200, {"code": 10003, "msg": "invalid app_id or app_secret"}
        device = uuid.uuid4().hex[:12]
        return 200, {"code": 0, "msg": "ok", "data": {
            "URL": f"ws://127.0.0.1:{self._ws_port}/ws?device_id={device}&service_id=1",
            "ClientConfig": self.client_config}}

    # -- WebSocket --------------------------------------------------------------------------------

    def _run_ws(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stopped = self._loop.create_future()
            async with serve(self._serve_ws, "127.0.0.1", 0, ping_interval=None) as server:
                self._ws_port = next(iter(server.sockets)).getsockname()[1]
                ready.set()
                await self._stopped

        self._loop.run_until_complete(main())

    async def _serve_ws(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        conn = _Conn(query.get("device_id", ["?"])[0], ws)
        with self._lock:
            self._conns[conn.id] = conn
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    await self._on_frame(conn, message)
        except Exception:  # a client going away mid-frame is normal here
            pass
        finally:
            with self._lock:
                self._conns.pop(conn.id, None)

    async def _on_frame(self, conn: _Conn, message: bytes) -> None:
        frame = Frame()
        frame.ParseFromString(message)
        headers = {h.key: h.value for h in frame.headers}
        if frame.method == 0 and headers.get("type") == "ping":
            with self._lock:
                self.pings += 1
            if not conn.silent:
                await conn.ws.send(_frame(0, {"type": "pong"}, service=frame.service))
        elif frame.method == 1:
            try:
                payload = json.loads(frame.payload)
            except ValueError:
                payload = frame.payload
            code = payload.get("code") if isinstance(payload, dict) else None
            ack = Ack(headers.get("message_id", "?"), conn.id, code, payload)
            if self.on_ack is not None:
                self.on_ack(ack)
            with self._lock:
                self.acks.setdefault(ack.message_id, []).append(ack)

    # -- driving it from a test ---------------------------------------------------------------

    def connections(self) -> list[str]:
        """Ids of the open WebSocket connections."""
        with self._lock:
            return sorted(self._conns)

    def deliver(self, envelope: Any, *, split: int = 1, connection: str | None = None,
                message_id: str | None = None) -> str:
        """Send one event to ONE connection (round robin, or ``connection``); its message id.

        ``split > 1`` cuts the payload into that many frames (``sum``/``seq`` headers). Pass
        ``message_id`` to know it before the ack can arrive.
        """
        payload = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        with self._lock:
            conns = sorted(self._conns.values(), key=lambda c: c.id)
            if connection is not None:
                conns = [c for c in conns if c.id == connection]
            if not conns:
                raise RuntimeError("no client connected to the stand-in")
            conn = conns[next(self._round_robin) % len(conns)]
        message_id = message_id or f"msg_{next(self._ids)}_{uuid.uuid4().hex[:8]}"
        size = -(-len(payload) // split)
        parts = [payload[i * size:(i + 1) * size] for i in range(split)]
        frames = [_frame(1, {"type": "event", "message_id": message_id, "sum": str(split),
                             "seq": str(i), "trace_id": uuid.uuid4().hex}, payload=part)
                  for i, part in enumerate(parts)]

        async def send() -> None:
            for data in frames:
                await conn.ws.send(data)

        self._submit(send()).result(timeout=10)
        return message_id

    def acks_for(self, message_id: str) -> list[Ack]:
        with self._lock:
            return list(self.acks.get(message_id, []))

    def drop_connections(self) -> None:
        """Close every connection (clients must reconnect)."""
        with self._lock:
            conns = list(self._conns.values())

        async def drop() -> None:
            for c in conns:
                await c.ws.close()

        self._submit(drop()).result(timeout=10)

    def silence_connections(self) -> None:
        """Stop answering pings on the current connections; TCP stays open, new ones are
        served normally."""
        with self._lock:
            for c in self._conns.values():
                c.silent = True

    def _submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)


def _frame(method: int, headers: dict[str, str], *, service: int = 1,
           payload: bytes = b"") -> bytes:
    frame = Frame()
    frame.SeqID = 0
    frame.LogID = 0
    frame.service = service
    frame.method = method
    for key, value in headers.items():
        h = frame.headers.add()
        h.key = key
        h.value = value
    if payload:
        frame.payload = payload
    return bytes(frame.SerializeToString())


# -- the open API endpoints re-sync uses --------------------------------------------------------

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
FREEBUSY_PATH = "/open-apis/meeting_room/freebusy/batch_get"
TENANT_TOKEN = "t-test"


def token_granted() -> tuple[Any, ...]:
    """Feishu's answer granting :data:`TENANT_TOKEN` for two hours."""
    return 200, {"code": 0, "msg": "ok", "tenant_access_token": TENANT_TOKEN, "expire": 7200}


def tenant_token(standin: FeishuStandIn, req: Request,
                 granted: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """The answer to a tenant-token request: ``granted`` (default :func:`token_granted`) for
    the stand-in's app id and secret, Feishu's code 10014 for any other."""
    body = req.json() or {}
    if (body.get("app_id"), body.get("app_secret")) != (standin.app_id, standin.app_secret):
        return 200, {"code": 10014, "msg": "app secret invalid"}
    return granted if granted is not None else token_granted()


class _Table:
    """A stand-in API answering from attributes, changed under its lock."""

    lock: threading.Lock

    def set(self, **changes: Any) -> None:
        """Change attributes under the lock (so no answer sees half a change)."""
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, value)


@dataclass
class Held:
    """A free/busy request the stand-in holds until :meth:`release` (its answer is fixed)."""

    request: Request
    rooms: list[str]
    gate: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.gate.set()


class FreeBusyApi(_Table):
    """Tenant token and ``meeting_room/freebusy/batch_get`` on a stand-in, from a table.

    ``slots`` maps room id -> busy slots (as Feishu writes them), and ``calendar`` (a
    :class:`Calendar`) adds what its series and bookings occupy in the asked window, expanded
    as Feishu documents it; rooms in ``error_rooms`` are listed in ``error_room_ids`` and left
    out of ``free_busy``. Each answer is computed when the request arrives, so a change made
    while a request is held does not reach it.
    ``answer`` (a route result) replaces the table's answer; ``token_answer`` the token's.
    With ``hold`` set, each free/busy request waits in :attr:`held` until released.
    """

    def __init__(self, standin: FeishuStandIn) -> None:
        self.standin = standin
        self.slots: dict[str, list[dict[str, Any]]] = {}
        self.calendar = Calendar()
        self.error_rooms: set[str] = set()
        self.answer: tuple[Any, ...] | None = None
        self.token_answer: tuple[Any, ...] = token_granted()
        self.hold = False
        self.calls: list[Request] = []
        self.token_calls: list[Request] = []
        self.held: list[Held] = []
        self.unauthorised = 0
        self.lock = threading.Lock()
        standin.add_route("POST", TOKEN_PATH, self._token)
        standin.add_route("GET", FREEBUSY_PATH, self._freebusy)

    def _token(self, req: Request) -> tuple[Any, ...]:
        with self.lock:
            self.token_calls.append(req)
            return tenant_token(self.standin, req, self.token_answer)

    def _freebusy(self, req: Request) -> tuple[Any, ...]:
        rooms = req.query.get("room_ids", [])
        with self.lock:
            if req.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
                self.unauthorised += 1
                return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}
            self.calls.append(req)
            time_min = req.query.get("time_min", [""])[0]
            time_max = req.query.get("time_max", [""])[0]
            window = (datetime.fromisoformat(time_min), datetime.fromisoformat(time_max))
            answer = self.answer or (200, {"code": 0, "msg": "success", "data": {
                "error_room_ids": [room for room in rooms if room in self.error_rooms],
                "free_busy": {room: list(self.slots.get(room, []))
                              + self.calendar.slots(room, *window)
                              for room in rooms if room not in self.error_rooms},
                "time_min": time_min, "time_max": time_max}})
            held = Held(req, rooms) if self.hold else None
            if held is not None:
                self.held.append(held)
        if held is not None:
            held.gate.wait(15)
        return answer

    def release_all(self) -> None:
        with self.lock:
            held, self.held = self.held, []
        for h in held:
            h.release()

    def rooms_asked(self) -> list[list[str]]:
        with self.lock:
            return [c.query.get("room_ids", []) for c in self.calls]


def slot(uid: str, start: datetime, end: datetime, *, original_time: int = 0,
         organizer: str | None = "ou_alice", name: str | None = "Alice") -> dict[str, Any]:
    """One busy slot as ``batch_get`` lists it (times RFC 3339 at +08:00, as Feishu writes).

    ``organizer=None``: a private meeting (no ``organizer_info``); ``name=None``: a booking an
    app created (``organizer_info`` without ``name``).
    """
    cst = timezone(timedelta(hours=8))
    found: dict[str, Any] = {"uid": uid, "original_time": original_time,
                             "start_time": start.astimezone(cst).isoformat(),
                             "end_time": end.astimezone(cst).isoformat()}
    if organizer is not None:
        found["organizer_info"] = {"open_id": organizer, **({"name": name} if name else {})}
    return found


# -- a calendar the free/busy answers come from ------------------------------------------------


@dataclass
class Series:
    """A recurring booking: every ``every`` days at the first start's local time in ``tz``.

    ``exceptions`` maps an occurrence's original start (epoch seconds) to its new ``(start,
    end)``, or to ``None`` when that occurrence was cancelled.
    """

    uid: str
    rooms: tuple[str, ...]
    first_start: datetime
    duration: timedelta
    tz: str = "Asia/Shanghai"
    every: int = 1
    count: int | None = None
    organizer: str = "ou_alice"
    exceptions: dict[int, tuple[datetime, datetime] | None] = field(default_factory=dict)

    def occurrences(self, time_min: datetime,
                    time_max: datetime) -> list[tuple[int, datetime, datetime]]:
        """``(original start in epoch seconds, start, end)`` of the occurrences that would fall
        in the window, before exceptions; local wall time is kept across DST changes."""
        zone = ZoneInfo(self.tz)
        first = self.first_start.astimezone(zone).replace(tzinfo=None)
        skip = max(0, (time_min.astimezone(zone).replace(tzinfo=None) - first).days
                   // self.every - 1)
        found = []
        k = skip
        while self.count is None or k < self.count:
            local = first + timedelta(days=k * self.every)
            start = local.replace(tzinfo=zone)
            end = (local + self.duration).replace(tzinfo=zone)
            if start >= time_max:
                break
            if end > time_min:
                found.append((int(start.timestamp()), start, end))
            k += 1
        return found


@dataclass
class Calendar:
    """The truth a free/busy answer is computed from: series and one-off bookings."""

    series: dict[str, Series] = field(default_factory=dict)
    one_offs: dict[str, tuple[tuple[str, ...], datetime, datetime]] = field(default_factory=dict)

    def slots(self, room: str, time_min: datetime, time_max: datetime) -> list[dict[str, Any]]:
        """What ``batch_get`` lists for ``room``: a series expanded into instances sharing its
        uid with ``original_time`` 0, each exception with ``original_time`` = its original start,
        a cancelled occurrence not at all."""
        found = []
        for uid, (rooms, start, end) in self.one_offs.items():
            if room in rooms and start < time_max and end > time_min:
                found.append(slot(uid, start, end))
        for series in self.series.values():
            if room not in series.rooms:
                continue
            lookaround = timedelta(days=31)  # an exception may move an occurrence far
            for original, start, end in series.occurrences(time_min - lookaround,
                                                           time_max + lookaround):
                if original in series.exceptions:
                    moved = series.exceptions[original]
                    if moved is not None and moved[0] < time_max and moved[1] > time_min:
                        found.append(slot(series.uid, *moved, original_time=original,
                                          organizer=series.organizer))
                elif start < time_max and end > time_min:
                    found.append(slot(series.uid, start, end, organizer=series.organizer))
        return sorted(found, key=lambda s: str(s["start_time"]))


# -- the room directory: vc/v1/rooms and vc/v1/room_levels/mget --------------------------------

ROOMS_PATH = "/open-apis/vc/v1/rooms"
ROOM_LEVELS_MGET_PATH = "/open-apis/vc/v1/room_levels/mget"
#: Feishu's codes: rate limited, a scope the app lacks, a parameter that fails validation.
RATE_LIMITED_CODE = 99991400
SCOPE_MISSING_CODE = 99991672
INVALID_PARAM_CODE = 99992402
MAX_PAGE_SIZE = 100


def directory_room(room_id: str, name: str, *, capacity: int = 8, level: str = "",
                   path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A room as ``GET /open-apis/vc/v1/rooms`` lists it (``path``: its levels' ids, outermost
    first; ``disable_end_time`` comes as a string, as Feishu sometimes sends it)."""
    return {"room_id": room_id, "name": name, "capacity": capacity, "description": "",
            "display_id": f"FM{room_id[-6:]}", "custom_room_id": "",
            "room_level_id": level, "path": list(path),
            "room_status": {"status": True, "schedule_status": True,
                            "disable_start_time": 0, "disable_end_time": "0"}}


def room_level(level_id: str, name: str, parent: str = "0",
               path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A room level as ``room_levels/mget`` answers it."""
    return {"room_level_id": level_id, "name": name, "parent_id": parent, "path": list(path),
            "has_child": True, "custom_group_id": ""}


class RoomsApi(_Table):
    """The tenant token, ``GET vc/v1/rooms`` (paged) and ``POST vc/v1/room_levels/mget``.

    ``rooms`` and ``levels`` (by id) are what the tenant has. Pages hold ``page_size`` rooms
    (1..100, else code 99992402) and carry an opaque ``page_token`` while ``has_more``; a
    token the stand-in did not hand out is refused the same way. ``scope_granted = False``
    answers both endpoints with HTTP 400 and code 99991672 (the app lacks ``vc:room:readonly``);
    each of the next ``rate_limited`` requests gets HTTP 429, code 99991400 and the header
    ``x-ogw-ratelimit-reset: reset``. Every request is kept in :attr:`calls`.
    """

    def __init__(self, standin: FeishuStandIn) -> None:
        self.standin = standin
        self.rooms: list[dict[str, Any]] = []
        self.levels: dict[str, dict[str, Any]] = {}
        self.scope_granted = True
        self.rate_limited = 0
        self.reset = 1
        self.calls: list[Request] = []
        self.lock = threading.Lock()
        standin.add_route("GET", ROOMS_PATH, self._rooms)
        standin.add_route("POST", ROOM_LEVELS_MGET_PATH, self._mget)
        if ("POST", TOKEN_PATH) not in standin.routes:
            standin.add_route("POST", TOKEN_PATH, self._token)

    def _token(self, req: Request) -> tuple[Any, ...]:
        return tenant_token(self.standin, req)

    def _refusal(self, req: Request) -> tuple[Any, ...] | None:
        """Authorization, rate limit and scope, in the order Feishu's gateway checks them."""
        self.calls.append(req)
        if req.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return (429, {"code": RATE_LIMITED_CODE, "msg": "request trigger frequency limit"},
                    {"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(self.reset)})
        if not self.scope_granted:
            return 400, {"code": SCOPE_MISSING_CODE, "msg": "Access denied. One of the "
                         "following scopes is required: [vc:room:readonly]"}
        return None

    def _rooms(self, req: Request) -> tuple[Any, ...]:
        with self.lock:
            refused = self._refusal(req)
            if refused is not None:
                return refused
            size_text = req.query.get("page_size", [str(MAX_PAGE_SIZE)])[0]
            token = req.query.get("page_token", [""])[0]
            if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
                return 400, {"code": INVALID_PARAM_CODE, "msg": "field validation failed: "
                             f"page_size {size_text!r}"}
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
            except ValueError:
                return 400, {"code": INVALID_PARAM_CODE,
                             "msg": f"field validation failed: page_token {token!r}"}
            size = int(size_text)
            page = self.rooms[offset:offset + size]
            more = offset + size < len(self.rooms)
            data: dict[str, Any] = {"rooms": page, "has_more": more}
            if more:
                data["page_token"] = base64.urlsafe_b64encode(
                    str(offset + size).encode()).decode()
            return 200, {"code": 0, "msg": "success", "data": data}

    def _mget(self, req: Request) -> tuple[Any, ...]:
        with self.lock:
            refused = self._refusal(req)
            if refused is not None:
                return refused
            body = req.json() or {}
            ids = body.get("level_ids")
            if not isinstance(ids, list) or not ids:
                return 400, {"code": INVALID_PARAM_CODE,
                             "msg": "field validation failed: level_ids"}
            items = [self.levels[i] for i in ids if i in self.levels]
            return 200, {"code": 0, "msg": "success", "data": {"items": items}}

    def pages_asked(self) -> list[str]:
        """The ``page_token`` of each rooms request, in order (``""`` for the first page)."""
        with self.lock:
            return [c.query.get("page_token", [""])[0] for c in self.calls
                    if c.path == ROOMS_PATH]

    def levels_asked(self) -> list[Any]:
        """The ``level_ids`` of each ``room_levels/mget`` request, in order."""
        with self.lock:
            return [(c.json() or {}).get("level_ids") for c in self.calls
                    if c.path == ROOM_LEVELS_MGET_PATH]


# -- titles and names (README "Titles and organizers") -------------------------------------------

SUMMARY_PATH = "/open-apis/meeting_room/summary/batch_get"
USERS_PATH = "/open-apis/contact/v3/users/batch"
#: Feishu's answer when an app may not see a user (outside its contact data range) and for an id
#: that is not a user (an app identity, e.g. a recruiting system that books rooms).
NO_PERMISSION, INVALID_ID = 41050, 41012


class DetailsApi:
    """``meeting_room/summary/batch_get`` and ``contact/v3/users/batch`` on a stand-in.

    ``titles`` maps ``(uid, original_time)`` to a meeting's summary; an asked event not in it
    goes to ``ErrorEventUids``. ``names`` maps open ids to names; an id in ``refused`` makes the
    whole call fail with its code (41050 or 41012), as Feishu does; an unknown id is left out of
    ``items``. ``rate_limited`` answers that many next calls (of either endpoint) with HTTP 429,
    code 99991400 and ``x-ogw-ratelimit-reset: reset`` (any text: the client must cope).
    Every call is recorded in :attr:`summary_calls` or :attr:`user_calls`, token checked.
    """

    def __init__(self, standin: FeishuStandIn) -> None:
        self.titles: dict[tuple[str, int], str] = {}
        self.names: dict[str, str] = {}
        self.refused: dict[str, int] = {}
        self.rate_limited = 0
        self.reset = "1"
        self.summary_calls: list[Request] = []
        self.user_calls: list[Request] = []
        self.lock = threading.Lock()
        standin.add_route("POST", SUMMARY_PATH, self._summary)
        standin.add_route("GET", USERS_PATH, self._users)

    def _limited(self) -> tuple[Any, ...] | None:
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return (429, {"code": 99991400, "msg": "request trigger frequency limit"},
                    {"x-ogw-ratelimit-reset": self.reset})
        return None

    def _summary(self, req: Request) -> tuple[Any, ...]:
        with self.lock:
            if req.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
                return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}
            self.summary_calls.append(req)
            limited = self._limited()
            if limited is not None:
                return limited
            asked = (req.json() or {}).get("EventUids")
            if not isinstance(asked, list):
                return 400, {"code": 99992402, "msg": "field validation failed: EventUids"}
            infos, errors = [], []
            for item in asked:
                key = (str(item.get("uid")), int(item.get("original_time") or 0))
                if key in self.titles:  # vchat is an object, as the API sends it
                    infos.append({"uid": key[0], "original_time": key[1],
                                  "summary": self.titles[key],
                                  "vchat": {"vc_type": "vc", "meeting_url": ""}})
                else:
                    errors.append({"uid": key[0], "original_time": key[1],
                                   "error_msg": "event not found"})
            return 200, {"code": 0, "msg": "success",
                         "data": {"EventInfos": infos, "ErrorEventUids": errors}}

    def _users(self, req: Request) -> tuple[Any, ...]:
        with self.lock:
            if req.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
                return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}
            self.user_calls.append(req)
            limited = self._limited()
            if limited is not None:
                return limited
            ids = req.query.get("user_ids", [])
            if req.query.get("user_id_type") != ["open_id"] or not 1 <= len(ids) <= 50:
                return 400, {"code": 99992402, "msg": "field validation failed"}
            for open_id in ids:
                if open_id in self.refused:
                    code = self.refused[open_id]
                    return 400, {"code": code, "msg": "no user authority" if code ==
                                 NO_PERMISSION else "invalid user id"}
            items = [{"open_id": i, "name": self.names[i], "en_name": ""} for i in ids
                     if i in self.names]
            return 200, {"code": 0, "msg": "success", "data": {"items": items}}

    def asked_titles(self) -> list[tuple[str, int]]:
        """Every ``(uid, original_time)`` a summary call asked for, in order."""
        with self.lock:
            return [(str(e.get("uid")), int(e.get("original_time") or 0))
                    for c in self.summary_calls for e in (c.json() or {}).get("EventUids", [])]


# -- check-in release: meeting_room/instance/reply ----------------------------------------------

REPLY_PATH = "/open-apis/meeting_room/instance/reply"
REPLY_STATUSES = ("NOT_CHECK_IN", "ENDED_BEFORE_DUE", "ACCEPTED_BY_ADMIN", "DECLINED_BY_ADMIN")


class InstanceReplyApi:
    """``POST meeting_room/instance/reply`` on a stand-in, consistent with a :class:`FreeBusyApi`.

    Each request is recorded in :attr:`calls` (its JSON body) and :attr:`requests`. By default it
    answers code 0 and changes ``freebusy``'s truth as Feishu would: ``NOT_CHECK_IN`` takes the
    booking out (a one-off of its calendar, or its slots in the table), ``ENDED_BEFORE_DUE`` ends it
    at ``now()``. ``answer`` (a route result) replaces that, e.g. an error code; with ``delay`` the
    answer waits that many seconds (longer than the client's timeout: a timeout) or until
    :meth:`release_held`.
    """

    def __init__(self, standin: FeishuStandIn, freebusy: FreeBusyApi,
                 now: Callable[[], datetime] = lambda: datetime.now().astimezone()) -> None:
        self.freebusy = freebusy
        self.now = now
        self.calls: list[Any] = []
        self.requests: list[Request] = []
        self.answer: tuple[Any, ...] | None = None
        self.delay = 0.0
        self._gate = threading.Event()
        self._lock = threading.Lock()
        standin.add_route("POST", REPLY_PATH, self._reply)

    def release_held(self) -> None:
        """Let every delayed answer go now."""
        self._gate.set()

    def _reply(self, req: Request) -> tuple[Any, ...]:
        if req.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}
        try:
            body = req.json()
        except ValueError:
            body = None
        with self._lock:
            self.calls.append(body)
            self.requests.append(req)
            answer, delay = self.answer, self.delay
        if delay:
            self._gate.wait(delay)
        if answer is not None:
            return answer
        ok = (isinstance(body, dict) and isinstance(body.get("room_id"), str)
              and isinstance(body.get("uid"), str) and isinstance(body.get("original_time"), int)
              and body.get("status") in REPLY_STATUSES)
        if not ok:
            return 400, {"code": 1000001, "msg": "invalid parameters"}
        self._apply(body["room_id"], body["uid"], body["original_time"], body["status"])
        return 200, {"code": 0, "msg": "success", "data": {}}

    def _apply(self, room: str, uid: str, original: int, status: str) -> None:
        cal = self.freebusy.calendar
        with self.freebusy.lock:
            if status == "NOT_CHECK_IN":
                cal.one_offs.pop(uid, None)
                self.freebusy.slots[room] = [
                    s for s in self.freebusy.slots.get(room, [])
                    if not (s["uid"] == uid and s.get("original_time", 0) == original)]
            elif status == "ENDED_BEFORE_DUE":
                now = self.now()
                if uid in cal.one_offs:
                    rooms, start, _end = cal.one_offs[uid]
                    cal.one_offs[uid] = (rooms, start, now)
                cst = timezone(timedelta(hours=8))
                for s in self.freebusy.slots.get(room, []):
                    if s["uid"] == uid and s.get("original_time", 0) == original:
                        s["end_time"] = now.astimezone(cst).isoformat()
