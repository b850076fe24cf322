"""The node's local control socket: how ``room-display checkin`` reaches the running node.

A Unix stream socket, made by the node in its runtime directory (RAM) and linked from
``state_dir/control.sock`` (where ``status.json`` is linked too), mode 0660: the node's user and
group may use it. One JSON line each way::

    -> {"room": "omm_..|name", "action": "in"|"end"}
    <- {"ok": true|false, "message": "one line"}

An early end is answered once Feishu answered (at most :data:`~.service.END_WAIT` seconds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from display.checkin.service import END_WAIT, Action, Result
from display.errors import RoomDisplayError

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
#: ``handler(room, action) -> future result``: what a request is handed to.
Handler = Callable[[str, Action], "Future[Result]"]


class NoNodeError(RoomDisplayError, ConnectionError):
    """No node answers on the control socket."""


def link_path(state_dir: Path) -> Path:
    """Where clients find the socket: ``state_dir/control.sock`` (a symbolic link)."""
    return state_dir / "control.sock"


class ControlServer:
    """Serves the socket at ``path`` (linked from ``state_dir``) on its own threads."""

    def __init__(self, path: Path, state_dir: Path, handler: Handler) -> None:
        self.path = path
        self.link = link_path(state_dir)
        self._handler = handler
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> bool:
        """Listen; False (one log line) when the socket cannot be made."""
        server_self = self

        class Request(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.settimeout(5)
                try:
                    line = self.rfile.readline(MAX_REQUEST)
                except OSError:
                    return
                result = server_self.answer(line)
                with contextlib.suppress(OSError):
                    self.wfile.write(json.dumps({"ok": result.ok, "message": result.message},
                                                ensure_ascii=False).encode() + b"\n")

        try:
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            old = os.umask(0o117)
            try:
                server = socketserver.ThreadingUnixStreamServer(str(self.path), Request)
            finally:
                os.umask(old)
            server.daemon_threads = True
            self.link.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.link.with_name(".control.sock.link")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            os.replace(tmp, self.link)
        except OSError as exc:
            log.warning("no control socket at %s (room-display checkin will not reach this "
                        "node): %s", self.path, exc.strerror or exc)
            return False
        self._server = server
        self._closing = False
        self._thread = threading.Thread(target=self._serve, args=(server,), name="control",
                                        daemon=True)
        self._thread.start()
        return True

    def _serve(self, server: socketserver.ThreadingUnixStreamServer) -> None:
        # Blocks in accept until a client comes: serve_forever would wake twice a second to
        # look for a shutdown, and an idle node must not (close() connects once instead).
        while not self._closing:
            server.handle_request()

    def answer(self, line: bytes) -> Result:
        """One request line -> its result (bad input: a one-line refusal)."""
        try:
            req = json.loads(line)
            room, action = req["room"], Action(req["action"])
            if not isinstance(room, str) or not room:
                raise ValueError("room")
        except (ValueError, KeyError, TypeError):
            return Result(False, 'bad request: want {"room": ..., "action": "in" | "end"}')
        try:
            return self._handler(room, action).result(timeout=END_WAIT)
        except FutureTimeout:
            return Result(False, "no answer from Feishu yet: see room-display status")

    def close(self) -> None:
        if self._server is not None:
            self._closing = True
            with contextlib.suppress(OSError), \
                    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                wake.connect(str(self.path))  # ends the accept the loop is blocked in
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server.server_close()
            self._server = None
            with contextlib.suppress(OSError):
                if self.link.is_symlink() and Path(os.readlink(self.link)) == self.path:
                    self.link.unlink()
                self.path.unlink()


def request(state_dir: Path, room: str, action: Action, timeout: float = END_WAIT + 10) -> Result:
    """Ask the node running with ``state_dir``; :class:`NoNodeError` when none answers."""
    path = link_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoNodeError(f"no node is running with state directory {state_dir} "
                              "(start it: room-display run)") from None
        except PermissionError:
            raise NoNodeError(f"not allowed to use {path}: run as the node's user or group "
                              "(e.g. sudo)") from None
        sock.sendall(json.dumps({"room": room, "action": action.value}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data)
        return Result(bool(answer["ok"]), str(answer["message"]))
    except (ValueError, KeyError, TypeError):
        raise NoNodeError(f"the node's answer on {path} was not understood") from None
