"""Talking to the parent: the stdout JSON lines, stdin EOF as the signal to exit, exit codes.

The contract these implement is in :mod:`display.intake.feishu`. Nothing here imports
``lark_oapi``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
#: The config is refused outright (sysexits' EX_CONFIG): the parent does not restart the child
#: until the config changes. Sent after a ``{"refused": "<one line>"}`` line.
EXIT_REFUSED = 78


class ParentChannel:
    """Writes the JSON lines of the parent contract (:mod:`display.intake.feishu`); thread-safe."""

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

    def fatal(self, reason: str) -> None:
        """Say why the child is about to exit with a failure: the parent shows it as the
        link's error (in ``status`` and on the web page) instead of a bare exit code."""
        self.send(fatal=reason[:500])


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


def exit_when_stdin_closes(on_request: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Exit the process when stdin reaches EOF: the parent died or asked us to stop.

    Each JSON object line the parent writes meanwhile goes to ``on_request`` (today only
    ``{"resync": "<reason>"}``: another bridge stopped publishing, this one took over); anything
    else is ignored.
    """

    def watch() -> None:
        buffer = b""
        try:
            while chunk := os.read(0, 4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    _request(line, on_request)
        except OSError:
            pass
        log.info("stdin closed (parent gone): exiting")
        logging.shutdown()
        os._exit(EXIT_OK)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _request(line: bytes, on_request: Callable[[dict[str, Any]], None] | None) -> None:
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        log.warning("parent wrote a line that is not a JSON object: %.100r", line)
        return
    if on_request is not None:
        try:
            on_request(doc)
        except Exception:  # a bad request must not end the intake
            log.exception("parent request failed")
