"""The node's one broker connection, built on paho-mqtt 2 (``CallbackAPIVersion.VERSION2``).

Rules this module keeps:

- **Connect asynchronously.** The broker may be down at boot: ``connect_async`` + ``loop_start``
  and paho retries with :data:`BACKOFF` (1 s doubling to 60 s). The node runs meanwhile.
- **Nothing slow on paho's network thread.** Its callbacks only put a task on a queue; one worker
  thread (:attr:`MqttLink.worker`) runs subscription handlers, connect hooks and link reports.
- **Republish after every (re)connect.** On each CONNACK the worker resubscribes every filter,
  publishes ``online`` (retained) on the node's availability topic and runs the connect hooks, so
  a broker restarted without persistence gets all retained state back.
- **Last will** ``offline`` (retained) on ``{p}/v1/nodes/{name}/availability``; a clean
  :meth:`MqttLink.close` publishes ``offline`` itself (the broker sends no will then).
- **Clear errors.** Refused credentials, unreachable broker and missing TLS files each become one
  log line (logged once, not per retry) and the ``broker`` link's error in ``status``.

Missing TLS files are a configuration problem, but they do **not** stop the node: it logs one
error line naming the key, reports the ``broker`` link down with that text (so panels turn stale
after ``stale_after_minutes`` and ``status`` says why) and looks for the files again every
:data:`SETUP_RETRY` seconds (certificates are often provisioned after first boot). ``check``
reports the same line and exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from display.config import MqttConfig
from display.errors import RoomDisplayError
from display.ratelimit import RateLimitedLog
from display.transport.mqtt_schema import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)
noisy = RateLimitedLog(log, 600.0)  # what another client's oversized messages make us say

BACKOFF = (1, 60)  # paho's reconnect delay: first retry after 1 s, doubling up to 60 s
SETUP_RETRY = 30.0  # seconds between looks for missing TLS files
#: paho's own limit of QoS 1 messages in flight: none (0). With a limit, paho walks its whole list
#: of unacknowledged messages at every PUBACK to find the next one to send (O(limit) a message;
#: a 20,000-room republish took 2.1-2.7 s of node CPU without, 2.7-3.4 s with a limit of 100,
#: on a loaded machine). The bulk publisher bounds what is in flight itself
#: (:meth:`MqttLink.wait_window`, the bridge's ``WINDOW``); paho does not follow an MQTT 5
#: broker's Receive Maximum either way. Mosquitto acknowledges QoS 1 at once, whatever the count.
MAX_INFLIGHT = 0
CLOSE_TIMEOUT = 2.0
#: Largest message a node takes in (a schedule is at most 256 KiB, a node status 64 KiB). With
#: MQTT 5 the broker is told so (CONNECT's Maximum Packet Size) and never sends a larger one;
#: with 3.1.1 paho has read it by then, and it is dropped before it is queued.
MAX_MESSAGE_BYTES = 1024 * 1024
PRUNE_ALL = 4096  # unacknowledged handles kept before a full sweep (the size then doubles)

Handler = Callable[["MqttMessage"], None]
LinkReport = Callable[[bool, str | None], None]


class MqttError(RoomDisplayError, OSError):
    """The MQTT link cannot be set up (TLS files, refused credentials) or is down."""


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """A message as handlers receive it (on the worker thread, never paho's)."""

    topic: str
    payload: bytes
    retain: bool


def refusal_text(reason: ReasonCode | int) -> str:
    """A CONNACK refusal as ``status`` and ``check`` show it."""
    value = reason.value if isinstance(reason, ReasonCode) else int(reason)
    if value in (4, 134):  # 3.1.1 "bad user name or password"; MQTT 5 0x86
        return "broker refused credentials (bad user name or password)"
    if value in (5, 135):  # 3.1.1 "not authorised"; MQTT 5 0x87
        return "broker refused credentials (not authorised)"
    return f"broker refused the connection ({reason})"


def tls_problem(config: MqttConfig) -> str | None:
    """The first missing or unreadable TLS file as one line naming its key, else None."""
    if not config.tls:
        return None
    for key, path in (("ca_file", config.ca_file), ("cert_file", config.cert_file),
                      ("key_file", config.key_file)):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            return (f"mqtt.{key}: cannot read {path} ({exc.strerror}); fix the path in [mqtt] "
                    "or install the file")
    if (config.cert_file is None) != (config.key_file is None):
        return "mqtt.cert_file / mqtt.key_file: a client certificate needs both"
    return None


def build_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A configured but unconnected paho client (credentials, protocol, TLS).

    Raises :class:`MqttError` when the TLS files cannot be loaded.
    """
    protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = True  # every (re)connect resubscribes; no broker-side queue
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         **kwargs)
    if config.username is not None:
        client.username_pw_set(config.username,
                               config.password.reveal() if config.password else None)
    if config.tls:
        problem = tls_problem(config)
        if problem:
            raise MqttError(problem)
        try:
            client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None,
                           certfile=str(config.cert_file) if config.cert_file else None,
                           keyfile=str(config.key_file) if config.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise MqttError(f"mqtt.ca_file/cert_file/key_file: cannot load TLS files ({exc})"
                            ) from exc
    client.reconnect_delay_set(*BACKOFF)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.on_socket_open = _no_delay
    return client


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Send each packet at once (``TCP_NODELAY``; paho leaves Nagle's algorithm on).

    A change is several small packets in a row (a room's schedule, then its state): with Nagle
    the second waits in the kernel for the broker's delayed acknowledgement of the first, about
    40 ms, which was most of an event's way to the broker."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a Unix one): no Nagle
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_properties(config: MqttConfig) -> Properties | None:
    """MQTT 5: the CONNECT properties telling the broker the largest packet we take."""
    if config.protocol != "5":
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = MAX_MESSAGE_BYTES
    return properties


def _chain(first: Handler, second: Handler) -> Handler:
    def both(message: MqttMessage) -> None:
        first(message)
        second(message)
    return both


class MqttLink:
    """One node's broker connection: subscriptions, publishing, link health.

    Use :meth:`subscribe`, :meth:`add_connect_hook` and :meth:`add_disconnect_hook` before or
    after :meth:`start`; handlers and hooks run on the worker thread, in order. :meth:`publish`
    may be called from any thread and never blocks on the network.
    """

    def __init__(self, config: MqttConfig, node_name: str, *,
                 on_link: LinkReport | None = None) -> None:
        self.config = config
        self.node_name = node_name
        self.topics = Topics(config.topic_prefix)
        self.availability_topic = self.topics.availability(node_name)
        self.client_id = config.client_id or f"room-display-{node_name}"
        #: Called on the worker with (up, error) at every link change; set before start.
        self.on_link = on_link
        self._client: mqtt.Client | None = None
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._subs: dict[str, tuple[int, Handler]] = {}
        self._connect_hooks: list[Callable[[], None]] = []
        self._disconnect_hooks: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._error: str | None = "not connected yet"
        self._logged_error: str | None = None
        # Handles of QoS>0 messages not known to be acknowledged, oldest first. PUBACKs come in
        # order, so the acknowledged ones are dropped from the front (O(1) a publish); a full
        # sweep runs only when the deque doubled, for one that stays unacknowledged.
        self._unacked: deque[mqtt.MQTTMessageInfo] = deque()
        self._sweep_at = PRUNE_ALL
        # Which of config.brokers the client uses now; only the network thread moves it.
        self._broker = 0
        self.connects = 0
        #: How often the link moved to another broker of the list.
        self.failovers = 0
        #: How often another client overwrote our ``online`` and we said it again.
        self.reasserted = 0
        # Any client allowed on the broker could write "offline" here and make every agent that
        # follows us stale: watch our own availability and say "online" again (docs/MQTT.md).
        self._subs[self.availability_topic] = (1, self._on_own_availability)
        self.worker = threading.Thread(target=self._work, name="mqtt-worker", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; it sets up the client and connects in the background."""
        self.worker.start()

    def close(self) -> None:
        """Say ``offline`` (retained), disconnect, stop paho's thread and the worker."""
        self._stopping.set()
        client = self._client
        if client is not None:
            if self._connected.is_set():
                info = client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
                # If this fails, the will says offline anyway when the connection drops.
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(CLOSE_TIMEOUT)
            client.disconnect()
            client.loop_stop()
        self._tasks.put(None)
        if self.worker.is_alive() and threading.current_thread() is not self.worker:
            self.worker.join(timeout=CLOSE_TIMEOUT)

    def __enter__(self) -> MqttLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def error(self) -> str | None:
        """Why the link is down (None while connected)."""
        return None if self.connected else self._error

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use (or being tried)."""
        host, port = self.config.brokers[self._broker]
        return f"{host}:{port}"

    def status(self) -> dict[str, Any]:
        """For ``status``: where and whether; never the credentials."""
        brokers = [f"{h}:{p}" for h, p in self.config.brokers]
        return {"broker": self.broker, "brokers": brokers, "failovers": self.failovers,
                "tls": self.config.tls, "protocol": self.config.protocol,
                "client_id": self.client_id, "connected": self.connected,
                "connects": self.connects, "error": self.error}

    # -- subscriptions and hooks ------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``handler``, across reconnects.

        A second handler for the same filter is called after the first (the fleet page and the
        bridges' publisher choice both follow every node's availability)."""
        with self._lock:
            known = self._subs.get(topic_filter)
            if known is not None and known[1] is not handler:
                handler = _chain(known[1], handler)
                qos = max(qos, known[0])
            self._subs[topic_filter] = (qos, handler)
        client = self._client
        if client is not None and self.connected:
            client.subscribe(topic_filter, qos)

    def subscriptions(self) -> list[str]:
        """The filters this link subscribes to (again at every connect)."""
        with self._lock:
            return sorted(self._subs)

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            known = self._subs.pop(topic_filter, None)
        client = self._client
        if known is not None and client is not None and self.connected:
            client.unsubscribe(topic_filter)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on the worker after every (re)connect (republish retained state)."""
        self._connect_hooks.append(hook)

    def add_disconnect_hook(self, hook: Callable[[str], None]) -> None:
        """Run ``hook(reason)`` on the worker when the connection is lost."""
        self._disconnect_hooks.append(hook)

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the worker thread (in order with message handlers)."""
        self._tasks.put(task)

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False,
                qos: int = 1) -> mqtt.MQTTMessageInfo | None:
        """Queue a message; returns its handle, or None while disconnected.

        Nothing is queued while disconnected: the connect hooks republish the newest state, and
        an old queued copy sent after it would overwrite a retained value with a stale one.
        """
        client = self._client
        if client is None or not self.connected:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            return None
        if qos > 0:
            with self._lock:
                self._unacked.append(info)
                if len(self._unacked) > self._sweep_at:
                    self._prune()
        return info

    def _prune(self) -> None:
        """Drop acknowledged handles (with the lock held); amortised O(1) a publish.

        Called when the deque grew past the sweep size or when a count is asked for, not at
        every publish: looking at a handle takes paho's lock for it (a tenth of a republish's
        CPU when it was looked at twice a message)."""
        unacked = self._unacked
        while unacked and unacked[0].is_published():
            unacked.popleft()
        if len(unacked) > self._sweep_at:
            self._unacked = unacked = deque(i for i in unacked if not i.is_published())
            self._sweep_at = max(PRUNE_ALL, 2 * len(unacked))

    def unacknowledged(self) -> int:
        """How many QoS>0 messages published so far may still lack their acknowledgement."""
        with self._lock:
            self._prune()
            return len(self._unacked)

    def wait_window(self, limit: int, timeout: float) -> bool:
        """Block while ``limit`` messages await their acknowledgement (then until half of them
        got it), so that a long run of publishes goes at the broker's pace instead of piling up
        in memory.

        False when the link went down or ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if len(self._unacked) < limit:  # acknowledged ones included: fewer still in flight
                return True
            self._prune()
            if len(self._unacked) < limit:
                return True
        # Full: wait until half of it drained, so the publisher goes on in batches instead of
        # handing the GIL back and forth once a message.
        while True:
            with self._lock:
                self._prune()
                if len(self._unacked) <= limit // 2:
                    return True
                oldest = self._unacked[len(self._unacked) - limit // 2 - 1]
            if not self.connected:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                oldest.wait_for_publish(min(left, 0.5))
            except (RuntimeError, ValueError):
                return False

    def flush(self, timeout: float) -> bool:
        """Wait until every QoS>0 message published so far was acknowledged."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending, self._unacked = list(self._unacked), deque()
        for i, info in enumerate(pending):
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                return False
            if not info.is_published():
                with self._lock:
                    self._unacked.extendleft(reversed(pending[i:]))
                return False
        return True

    # -- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        if not self._setup():
            return
        while True:
            task = self._tasks.get()
            if task is None or self._stopping.is_set():
                return
            try:
                task()
            except Exception:  # one bad handler must not stop the node's MQTT
                log.exception("MQTT task failed")

    def _setup(self) -> bool:
        """Build the client and start connecting; retry while TLS files are missing."""
        while not self._stopping.is_set():
            try:
                client = build_client(self.config, self.client_id)
            except MqttError as exc:
                self._report(False, str(exc), level=logging.ERROR)
                self._stopping.wait(SETUP_RETRY)
                continue
            client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
            client.on_connect = self._paho_connect
            client.on_connect_fail = self._paho_connect_fail
            client.on_disconnect = self._paho_disconnect
            client.on_message = self._paho_message
            self._client = client
            host, port = self.config.brokers[self._broker]
            client.connect_async(host, port, keepalive=self.config.keepalive,
                                 properties=connect_properties(self.config))
            client.loop_start()
            return True
        return False

    def _report(self, up: bool, error: str | None, level: int = logging.WARNING) -> None:
        """Tell the node; log each distinct problem once, not once per retry."""
        self._error = error
        if up:
            if self._logged_error is not None:
                log.info("broker %s connected", self.broker)
            self._logged_error = None
        elif error != self._logged_error:
            self._logged_error = error
            log.log(level, "MQTT: %s", error)
        if self.on_link is not None:
            self.on_link(up, error)

    def _connected_task(self) -> None:
        with self._lock:
            subs = [(f, q) for f, (q, _h) in self._subs.items()]
        client = self._client
        if client is None:
            return
        self.connects += 1
        if subs:
            client.subscribe(subs)
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        self._report(True, None)
        for hook in list(self._connect_hooks):
            try:
                hook()
            except Exception:  # a failing hook must not keep the others from republishing
                log.exception("MQTT connect hook failed")

    def _on_own_availability(self, message: MqttMessage) -> None:
        """Someone else wrote our availability topic while we are connected: re-assert it.

        Retained copies delivered at subscribe time are skipped (our ``online`` follows them).
        """
        if (message.retain or message.payload == ONLINE.encode() or self._stopping.is_set()
                or not self.connected):
            return
        client = self._client
        if client is None:
            return
        self.reasserted += 1
        if self.reasserted == 1 or self.reasserted % 100 == 0:
            log.warning("another client wrote %r on %s (our availability); publishing online "
                        "again (%d time(s); see docs/MQTT.md, trust)",
                        message.payload[:40].decode("utf-8", "replace"), self.availability_topic,
                        self.reasserted)
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def _lost_task(self, reason: str) -> None:
        self._report(False, reason)
        for hook in list(self._disconnect_hooks):
            try:
                hook(reason)
            except Exception:
                log.exception("MQTT disconnect hook failed")

    def _dispatch(self, message: MqttMessage) -> None:
        with self._lock:
            handlers = [h for f, (_q, h) in self._subs.items()
                        if mqtt.topic_matches_sub(f, message.topic)]
        for handler in handlers:
            handler(message)

    # -- paho callbacks: network thread, so only flags and queue puts ------------------------------

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                      reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._connected.clear()
            where = self.broker
            self._tasks.put(lambda: self._report(False, refusal_text(reason), logging.ERROR))
            self._next_broker(client, f"{where} refused the connection")
            return
        self._connected.set()
        self._tasks.put(self._connected_task)

    def _paho_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        text = f"cannot reach broker {self.broker}"
        self._tasks.put(lambda: self._report(False, text))
        self._next_broker(client, text)

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                         reason: ReasonCode, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():
            text = f"connection to broker {self.broker} lost ({reason})"
            self._tasks.put(lambda: self._lost_task(text))
            self._next_broker(client, text)

    def _next_broker(self, client: mqtt.Client, why: str) -> None:
        """With several brokers, point paho's own reconnect (after its backoff delay) at the
        next one. Runs on paho's network thread, between two of its connection attempts:
        ``connect_async`` only records where to go, and the loop's reconnect goes there."""
        brokers = self.config.brokers
        if len(brokers) < 2 or self._stopping.is_set():
            return
        self._broker = (self._broker + 1) % len(brokers)
        self.failovers += 1
        host, port = brokers[self._broker]
        log.info("MQTT: %s; trying broker %s:%s next", why, host, port)
        client.connect_async(host, port, keepalive=self.config.keepalive,
                             properties=connect_properties(self.config))

    def _paho_message(self, client: mqtt.Client, userdata: Any,
                      msg: mqtt.MQTTMessage) -> None:
        if len(msg.payload) > MAX_MESSAGE_BYTES:
            noisy.warning(msg.topic, "message on %.200s dropped unread: %d bytes, more than the "
                          "%d a node takes", msg.topic, len(msg.payload), MAX_MESSAGE_BYTES)
            return
        message = MqttMessage(msg.topic, bytes(msg.payload), bool(msg.retain))
        self._tasks.put(lambda: self._dispatch(message))


def probe(config: MqttConfig, node_name: str, timeout: float = 5.0,
          broker: tuple[str, int] | None = None) -> tuple[bool, str]:
    """Connect once and wait for the CONNACK: ``(ok, one line)`` for ``room-display check``.
    ``broker`` is one of ``config.brokers`` (default the first).

    Uses its own client id; on a broker that binds client ids to user names (docs/MQTT.md,
    Trust) that id is ignored and a probe with a running node's account would take over its
    connection, so ``check`` reports the broker a running node uses from its status and probes
    only the others.
    """
    import os

    host, port = broker or config.brokers[0]
    where = f"broker {host}:{port}"
    try:
        client = build_client(config, f"room-display-check-{node_name}-{os.getpid()}")
    except MqttError as exc:
        return False, f"{where}: {exc}"
    answered = threading.Event()
    result: list[ReasonCode] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                   properties: Any) -> None:
        result.append(reason)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=max(5, config.keepalive))
    except (OSError, ssl.SSLError) as exc:
        return False, f"{where}: unreachable ({getattr(exc, 'strerror', None) or exc})"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return False, (f"{where}: no answer to CONNECT within {timeout:.0f} s "
                           "(not an MQTT broker?)")
        reason = result[0]
        if reason.is_failure:
            fix = "; check [mqtt] username / password" if reason.value in (4, 5, 134, 135) else ""
            return False, f"{where}: {refusal_text(reason)}{fix}"
        tls = ", TLS" if config.tls else ""
        return True, f"{where}: connected (MQTT {config.protocol}{tls})"
    finally:
        client.disconnect()
        client.loop_stop()
