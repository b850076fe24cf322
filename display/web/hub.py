"""Live updates for the page: Server-Sent Events fed by the node's hooks.

A room's new view reaches every open page at once: the node calls :meth:`Hub.on_view` on its
loop thread, which only encodes that one room and appends it to each client's queue (no I/O on
the loop). Everything that changes without a new view (device health, links, re-sync, the fleet)
is found by a once-a-second comparison of the status document, done only while a page is open.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from display.model import RoomView
from display.node import Node
from display.web.document import room_entry, status_document

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how late a change that is not a new view may reach the page
HEARTBEAT_SECONDS = 5.0  # a comment line this often: the page notices a dead node within 3 of them
MAX_QUEUE = 5000  # a client this far behind is dropped (it reconnects and gets a snapshot)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Events message (JSON data on one line)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n".encode()


class Client:
    """One open page: a queue of encoded messages its handler thread writes out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self.closed = False

    def put(self, message: bytes) -> None:
        with self._cond:
            if len(self._queue) >= MAX_QUEUE:
                self.closed = True  # too slow: let it reconnect rather than grow without bound
            else:
                self._queue.append(message)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> list[bytes]:
        """Every queued message, waiting up to ``timeout`` for the first; [] on timeout."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            items = list(self._queue)
            self._queue.clear()
            return items


class Hub:
    """Fans room and node changes out to every :class:`Client`; wire with :meth:`attach`."""

    def __init__(self, node: Node, meta: Callable[[], dict[str, Any]]) -> None:
        self.node = node
        self.meta = meta
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._last_rooms: dict[str, str] = {}
        self._last_node = ""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="web-hub", daemon=True)

    def attach(self) -> None:
        self.node.add_listener(self.on_view)
        self._thread.start()

    def close(self) -> None:
        self.node.remove_listener(self.on_view)  # a restarted page (reload) gets a new hub
        self._stop.set()
        self._wake.set()
        with self._lock:
            clients, self._clients = set(self._clients), set()
        for client in clients:
            client.close()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def subscribe(self) -> tuple[Client, bytes]:
        """A new client and its first message: the whole document."""
        client = Client()
        doc = status_document(self.node)
        with self._lock:
            self._clients.add(client)
            self._remember(doc)
        self._wake.set()
        return client, sse("snapshot", {"status": doc, **self.meta()})

    def unsubscribe(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)
        client.close()

    def _broadcast(self, message: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.put(message)

    def _remember(self, doc: dict[str, Any]) -> None:
        self._last_rooms = {r["open_id"]: json.dumps(r, sort_keys=True) for r in doc["rooms"]}
        self._last_node = json.dumps(doc["node"], sort_keys=True, default=str)

    # -- node loop thread -------------------------------------------------------------------------

    def on_view(self, view: RoomView) -> None:
        """The node showed a new view of a room: send that room now."""
        if not self.clients:
            return
        entry = room_entry(self.node, view)
        if entry is None:
            return
        encoded = json.dumps(entry, sort_keys=True)
        with self._lock:
            if self._last_rooms.get(view.open_id) == encoded:
                return
            self._last_rooms[view.open_id] = encoded
        self._broadcast(sse("room", entry))

    # -- poller thread ----------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.is_set():
            # Asleep while no page is open (a new client sets _wake): an idle node must not
            # wake for nobody. Once a second while one is.
            self._wake.wait(POLL_SECONDS if self.clients else None)
            self._wake.clear()
            if self._stop.is_set() or not self.clients:
                continue
            try:
                self._compare()
            except RuntimeError as exc:  # the config was being swapped mid-read: next round
                log.debug("status comparison skipped: %s", exc)

    def _compare(self) -> None:
        doc = status_document(self.node)
        rooms = {r["open_id"]: r for r in doc["rooms"]}
        changed: list[dict[str, Any]] = []
        with self._lock:
            if set(rooms) != set(self._last_rooms):  # rooms added or removed: start over
                self._remember(doc)
                resend = True
            else:
                resend = False
                for open_id, room in rooms.items():
                    encoded = json.dumps(room, sort_keys=True)
                    if self._last_rooms.get(open_id) != encoded:
                        self._last_rooms[open_id] = encoded
                        changed.append(room)
                node = json.dumps(doc["node"], sort_keys=True, default=str)
                node_changed = node != self._last_node
                self._last_node = node
        if resend:
            self._broadcast(sse("snapshot", {"status": doc, **self.meta()}))
            return
        for room in changed:
            self._broadcast(sse("room", room))
        if node_changed:
            self._broadcast(sse("node", doc["node"]))
