"""The device seam: what the node hands a device, and the worker each device runs on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from display.backoff import Backoff
from display.clock import Clock
from display.config import DeviceConfig
from display.model import DeviceHealth, RoomView

log = logging.getLogger(__name__)


class Device(Protocol):
    """A panel for one room. ``show`` must return at once; the work happens elsewhere.

    ``on_change``, when set (by the node), is called after the device's health changed;
    ``on_press``, when set, with ``"in"`` or ``"end"`` when a person pressed the panel's
    check-in button (short press, or held to end the meeting).
    """

    on_change: Callable[[], None] | None
    on_press: Callable[[str], None] | None

    @property
    def id(self) -> str: ...

    def start(self) -> None:
        """Begin working (threads, ports); the factory calls it once, after construction."""
        ...

    def show(self, view: RoomView) -> None:
        """Make ``view`` the desired state; the device catches up in its own time."""
        ...

    def resend(self) -> None:
        """Apply the current desired state again (after identify, or a board that forgot it)."""
        ...

    def health(self) -> DeviceHealth:
        """Online flag, time of the last successful update, last error."""
        ...

    def close(self) -> None:
        """Stop the worker and release the port/topic."""
        ...


#: What the node calls to build a room's device (tests hand in their own).
DeviceFactory = Callable[[DeviceConfig, Clock], Device]


class DeviceWorker:
    """Base for devices: a thread that applies the latest desired view.

    Only the newest view matters (state-based, like the serial protocol), so ``show`` overwrites a
    single slot and wakes the thread; a slow ``apply`` never queues stale work. Subclasses
    implement :meth:`apply`, which may block and may raise; the worker records the error in
    health and retries with backoff.
    """

    kind = "device"
    retry_initial = 0.5
    retry_max = 30.0

    def __init__(self, device_id: str, url: str, clock: Clock) -> None:
        self._id = device_id
        self.url = url
        self._clock = clock
        self._cond = threading.Condition()
        self._desired: RoomView | None = None
        self._dirty = False
        self._stopping = False
        self._online = False
        self._last_update: datetime | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"device-{device_id}", daemon=True)
        #: Called (on the worker's thread) after health changed; the node refreshes ``status``.
        self.on_change: Callable[[], None] | None = None
        #: Called (on the link's thread; must return at once) with "in" or "end" per press.
        self.on_press: Callable[[str], None] | None = None

    @property
    def id(self) -> str:
        return self._id

    def start(self) -> None:
        """Start the worker thread (separate from ``__init__`` so subclasses finish first)."""
        self._thread.start()

    def show(self, view: RoomView) -> None:
        with self._cond:
            self._desired = view
            self._dirty = True
            self._cond.notify()

    def resend(self) -> None:
        """Apply the current desired view again (after a reconnect, the board forgot it)."""
        with self._cond:
            if self._desired is not None:
                self._dirty = True
                self._cond.notify()

    def health(self) -> DeviceHealth:
        with self._cond:
            return DeviceHealth(
                id=self._id,
                kind=self.kind,
                url=self.url,
                online=self._online,
                last_update=self._last_update,
                error=self._error,
            )

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.release()

    # -- for subclasses -------------------------------------------------------------------------

    def apply(self, view: RoomView) -> None:
        """Bring the panel to ``view``. Blocking is fine; raise on failure."""
        raise NotImplementedError

    def release(self) -> None:
        """Free the port or connection; called once after the worker stopped."""

    def mark(self, *, online: bool, error: str | None = None) -> None:
        """Record link health seen outside ``apply`` (e.g. a reader thread noticing EOF)."""
        with self._cond:
            changed = (self._online, self._error) != (online, error)
            self._online = online
            self._error = error
        if changed:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.retry_initial, self.retry_max)
        while True:
            with self._cond:
                while not self._dirty and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                view = self._desired
                self._dirty = False
            if view is None:
                continue
            try:
                self.apply(view)
            except Exception as exc:  # any failure of one device must not kill its worker
                message = str(exc) or type(exc).__name__
                with self._cond:
                    new_error = self._error != message
                    if new_error:  # an error may lower its level (expected at start)
                        log.log(getattr(exc, "log_level", logging.WARNING), "device %s: %s",
                                self._id, message)
                    self._online = False
                    self._error = message
                    self._dirty = True  # retry the newest view after the backoff
                if new_error:
                    self._changed()
                with self._cond:
                    if not self._stopping:
                        self._cond.wait(timeout=backoff.next())
            else:
                backoff.reset()
                with self._cond:
                    self._online = True
                    self._error = None
                    self._last_update = self._clock.now()
                self._changed()
