"""What the child tells the node besides rooms: event counts and the store's health.

- :class:`CountReporter`: ``{"events": {"applied": 3, "duplicate": 1, ...}}``, the deliveries
  counted since the previous line (the parent adds them up, across restarts of the child), at
  most one line every :data:`COUNT_EVERY` seconds and none while nothing arrives.
- :class:`StoreWatch`: ``{"store": {"ok": false, "error": "..."}}`` when a commit fails (the
  delivery is not acknowledged: Feishu delivers it again), then a small write every
  :data:`STORE_RETRY_SECONDS` until one succeeds, ``{"store": {"ok": true, "error": null}}`` and a
  re-sync for what was missed meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from display.errors import StoreError
from display.intake.feishu.channel import ParentChannel
from display.store import ScheduleStore

log = logging.getLogger(__name__)

#: Coalescing window of the ``events`` lines: a burst of 1,000 events is a handful of lines,
#: and `status` still shows a count well within its 1 s.
COUNT_EVERY = 0.25
#: How often a store that refused a commit is tried again.
STORE_RETRY_SECONDS = 5.0


class CountReporter:
    """Sends counted deliveries to the parent; :meth:`count` is the sink's ``on_count``."""

    def __init__(self, channel: ParentChannel, every: float = COUNT_EVERY) -> None:
        self._channel = channel
        self._every = every
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="event-counts", daemon=True).start()

    def count(self, key: str) -> None:
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
        self._wake.set()

    def _run(self) -> None:
        pause = threading.Event()  # never set: the coalescing wait
        while True:
            self._wake.wait()  # blocks while nothing arrives: an idle child does not wake up
            pause.wait(self._every)
            with self._lock:
                self._wake.clear()
                delta, self._pending = self._pending, {}
            if delta:
                self._channel.send(events=delta)


class StoreWatch:
    """The sink's ``on_store``: tells the parent, and retries writes while the store fails."""

    def __init__(self, channel: ParentChannel, store: ScheduleStore,
                 note_store: Callable[[bool, str | None], None],
                 on_writable: Callable[[], None], retry_seconds: float = STORE_RETRY_SECONDS
                 ) -> None:
        self._channel = channel
        self._store = store
        self._note_store = note_store  # the sink's note_store: one place holds the state
        self._on_writable = on_writable
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._retrying = False
        self._failed = False  # a failure was logged: only then is a success a recovery

    def changed(self, ok: bool, error: str | None) -> None:
        self._channel.send(store={"ok": ok, "error": error})
        with self._lock:
            recovered, self._failed = self._failed and ok, not ok
        if ok:
            # The sink's first commit is a change too (from "unknown"): not a recovery.
            if recovered:
                log.info("schedule store writable again")
                self._on_writable()
            return
        log.error("cannot write the schedule store (events are not acknowledged, Feishu "
                  "delivers them again; retrying every %.0f s): %s", self._retry_seconds, error)
        with self._lock:
            if self._retrying:
                return
            self._retrying = True
        threading.Thread(target=self._retry, name="store-retry", daemon=True).start()

    def _retry(self) -> None:
        pause = threading.Event()  # never set: the wait between tries
        while True:
            pause.wait(self._retry_seconds)
            try:
                self._store.set_meta("written_at", datetime.now(UTC).isoformat())
            except StoreError as exc:
                log.debug("schedule store still not writable: %s", exc)
                continue
            with self._lock:
                self._retrying = False
            self._note_store(True, None)  # -> changed(True) unless a commit said so first
            return
