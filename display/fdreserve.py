"""A few file descriptors held in reserve, so that a process at its file limit can still start
a child (the Feishu intake) or open what it must.

Starting a child takes about eight descriptors (three pipes and the exec status pipe). A node
flooded with connections could otherwise find none free at the moment its intake child has to be
restarted ("Too many open files"), and the webhook would stay down. :meth:`FdReserve.spent`
frees the reserve for the one call that needs it and takes it back afterwards.

Why not raise the soft ``RLIMIT_NOFILE`` instead: paho-mqtt and pyserial wait in ``select()``,
which cannot watch a descriptor numbered 1024 or more; with a soft limit of 1024 such a number
never exists. The listeners cap their connections far below it instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: Descriptors held: a child's pipes with room to spare.
RESERVE = 16


class FdReserve:
    """``count`` descriptors of ``/dev/null`` held open until :meth:`spent` needs them."""

    def __init__(self, count: int = RESERVE) -> None:
        self.count = count
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self.refill()

    @property
    def held(self) -> int:
        """Descriptors held now."""
        with self._lock:
            return len(self._fds)

    def refill(self) -> None:
        """Take descriptors back up to ``count`` (as many as are free)."""
        with self._lock:
            while len(self._fds) < self.count:
                try:
                    self._fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                except OSError:
                    break  # at the limit now: refilled next time

    def release(self) -> None:
        """Close every held descriptor."""
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    @contextlib.contextmanager
    def spent(self) -> Iterator[None]:
        """Free the reserve for the block, then take it back."""
        self.release()
        try:
            yield
        finally:
            self.refill()
