"""Live updates for the page: Server-Sent Events fed by the node's hooks.

A room's new view reaches every open page at once: the node calls :meth:`Hub.on_view` on its
loop thread, which only encodes that one room and appends it to each client's queue (no I/O on
the loop). Everything that changes without a new view (device health, links, re-sync, the fleet)
is found by a once-a-second comparison, done only while a page is open, of what can change that
way: the ``node`` member, the rooms that have devices here, and the rooms the node recomputed
since the last round (:meth:`~display.node.Node.entry_changes`); never the whole document, so
its cost follows what changed, not how many rooms there are. Each page is compared with what
*it* was last sent (its own baseline, a digest per room rather than the room's JSON: 1 MB
instead of 12 at 20,000 rooms): a page opening never resets what the pages already open are owed.
The first message, the whole document, is joined from the rooms' JSON the node keeps, never
parsed into objects and encoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from display.config import Config
from display.model import RoomView
from display.node import Node
from display.web.document import (
    compact,
    node_document,
    redact,
    room_entry,
    status_parts,
    status_pieces,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how late a change that is not a new view may reach the page
HEARTBEAT_SECONDS = 5.0  # a comment line this often: the page notices a dead node within 3 of them
MAX_QUEUE = 5000  # a client this far behind is dropped (it reconnects and gets a snapshot)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Events message (JSON data on one line)."""
    return sse_json(event, compact(data))


def sse_json(event: str, body: bytes) -> bytes:
    """:func:`sse` of data already JSON (one line)."""
    return b"".join((b"event: ", event.encode(), b"\ndata: ", body, b"\n\n"))


class Client:
    """One open page: a queue of encoded messages its handler thread writes out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self.closed = False
        # What this page was last sent (guarded by the hub's lock): each page has its own
        # baseline, so a page that opens later never hides a change from one already open.
        self.rooms: dict[str, bytes] = {}  # open id -> digest of the room's JSON
        self.node = ""
        self.config: Config | None = None  # the configuration its snapshot was made from

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
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="web-hub", daemon=True)
        self._cursor = 0  # of node.entry_changes: the rooms recomputed since the last round

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
        config = self.node.config
        with self._lock:
            if not self._clients:  # the first page: nothing before now is owed to anyone
                self._cursor, _ = self.node.entry_changes(sys.maxsize)
        head, rooms = status_parts(self.node)
        with self._lock:
            _remember(client, head, rooms)  # this page's baseline only: the others keep theirs
            client.config = config
            self._clients.add(client)
        self._wake.set()
        return client, self._snapshot(head, rooms)

    def _snapshot(self, head: dict[str, Any], rooms: list[tuple[str, bytes]]) -> bytes:
        """``sse("snapshot", {"status": document, **meta})``, joined from the rooms' JSON."""
        meta = compact(self.meta())
        return b"".join((b'event: snapshot\ndata: {"status":', *status_pieces(head, rooms),
                         b"," + meta[1:] if len(meta) > 2 else b"}", b"\n\n"))

    def unsubscribe(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)
        client.close()

    # -- node loop thread -------------------------------------------------------------------------

    def on_view(self, view: RoomView) -> None:
        """The node showed a new view of a room: send that room now."""
        if not self.clients:
            return
        entry = room_entry(self.node, view)
        if entry is None:
            return
        body = compact(entry)
        encoded = _digest(body)
        with self._lock:
            behind = [c for c in self._clients if c.rooms.get(view.open_id) != encoded]
            for client in behind:
                client.rooms[view.open_id] = encoded
        if behind:
            message = sse_json("room", body)
            for client in behind:
                client.put(message)

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
                self.poll_once()
            except RuntimeError as exc:  # the config was being swapped mid-read: next round
                log.debug("status comparison skipped: %s", exc)

    def poll_once(self) -> None:
        """One comparison round: send each page what changed since it was last sent."""
        node_doc = node_document(self.node)
        node_text = json.dumps(node_doc, sort_keys=True, default=str)
        config = self.node.config
        self._cursor, recomputed = self.node.entry_changes(self._cursor)
        ids = self.node.rooms_with_devices()
        if recomputed is not None:
            ids.update(recomputed)
        entries: dict[str, bytes] = {}  # open id -> the room's redacted JSON
        for open_id in ids:
            entry = self.node.room_entry(open_id)
            if entry is not None:
                entries[open_id] = compact(redact({"rooms": [entry]})["rooms"][0])
        rooms = {open_id: _digest(body) for open_id, body in entries.items()}
        # Made once, if a page needs one: (head, rooms, message).
        snapshot: list[tuple[dict[str, Any], list[tuple[str, bytes]], bytes]] = []

        def whole(client: Client) -> bytes:
            if not snapshot:
                head, all_rooms = status_parts(self.node)
                snapshot.append((head, all_rooms, self._snapshot(head, all_rooms)))
            _remember(client, snapshot[0][0], snapshot[0][1])
            return snapshot[0][2]

        messages: dict[str, bytes] = {}  # each message encoded once, however many pages

        def message(key: str) -> bytes:
            if key not in messages:
                messages[key] = (sse("node", node_doc) if key == "\0node"
                                 else sse_json("room", entries[key]))
            return messages[key]

        sends: list[tuple[Client, list[bytes]]] = []
        with self._lock:
            for client in self._clients:
                if client.config is not config or recomputed is None:
                    # Rooms added, removed or renamed, or too much changed to know: start over.
                    sends.append((client, [whole(client)]))
                    client.config = config
                    continue
                keys = [i for i, encoded in rooms.items() if client.rooms.get(i) != encoded]
                for i in keys:
                    client.rooms[i] = rooms[i]
                if node_text != client.node:
                    keys.append("\0node")
                    client.node = node_text
                if keys:
                    sends.append((client, [message(key) for key in keys]))
        for client, batch in sends:
            for item in batch:
                client.put(item)


def _digest(body: bytes) -> bytes:
    """What a page was sent of a room (its compact JSON), for comparing with what it is owed:
    a digest, so that a page's baseline does not hold a copy of every room."""
    return hashlib.blake2b(body, digest_size=16).digest()


def _remember(client: Client, head: dict[str, Any], rooms: list[tuple[str, bytes]]) -> None:
    """The document of ``head`` and ``rooms`` (:func:`status_parts`) is what ``client`` was
    sent last."""
    client.rooms = {open_id: _digest(body) for open_id, body in rooms}
    client.node = json.dumps(head["node"], sort_keys=True, default=str)
