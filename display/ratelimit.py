"""One log line per cause, not one per occurrence: what a flood or a hostile peer makes us say.

A node must stay readable (and its disk unfilled) while someone sends it the same bad thing a
thousand times a second: :class:`RateLimitedLog` writes the first line of each cause, then at
most one every ``every`` seconds, saying how many it held back meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

#: Causes remembered at most; the oldest half is forgotten beyond (bounded memory).
MAX_CAUSES = 4096


class RateLimitedLog:
    """``log(level, cause, fmt, *args)`` at most once per ``every`` seconds per ``cause``."""

    def __init__(self, logger: logging.Logger, every: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every = every
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: dict[Hashable, tuple[float, int]] = {}  # cause -> (when logged, held back)
        self.suppressed = 0

    def log(self, level: int, cause: Hashable, fmt: str, *args: Any) -> bool:
        """Log unless ``cause`` was logged less than ``every`` s ago; True when logged."""
        now = self._monotonic()
        with self._lock:
            last, held = self._last.get(cause, (None, 0))
            if last is not None and now - last < self.every:
                self._last[cause] = (last, held + 1)
                self.suppressed += 1
                return False
            if len(self._last) >= MAX_CAUSES:
                for key in sorted(self._last, key=lambda k: self._last[k][0])[:MAX_CAUSES // 2]:
                    del self._last[key]
            self._last[cause] = (now, 0)
        if held:
            fmt += " (%d more like it since the last line)"
            args = (*args, held)
        self.logger.log(level, fmt, *args)
        return True

    def warning(self, cause: Hashable, fmt: str, *args: Any) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, cause, fmt, *args)
