"""Doubling retry delays, said once for every loop that retries (serial port, device worker,
Feishu re-sync, the intake child).

paho-mqtt keeps its own reconnect delay (``reconnect_delay_set``); everything of ours uses this.
"""

from __future__ import annotations


class Backoff:
    """A delay that starts at ``initial`` and doubles after each failure, up to ``maximum``.

    Not thread-safe: each retry loop owns its own instance.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0:
            raise ValueError("initial backoff must be positive")
        self.initial = initial
        self.maximum = max(maximum, initial)
        self._delay = initial

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long (capped)."""
        delay = self._delay
        self._delay = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self._delay = self.initial
