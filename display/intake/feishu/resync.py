"""Re-sync every room from Feishu's free/busy API, in the intake child (it imports ``lark_oapi``).

Feishu gives up on an undelivered event after ~7.1 h of retries; only a pull recovers
it. :class:`Resync` pulls ``GET /open-apis/meeting_room/freebusy/batch_get`` for every configured
room, at most 20 rooms per call, and makes each room's bookings in the window match the answer
through :meth:`~display.store.ScheduleStore.resync_room`, which never overrides an event newer
than the request.

When: once the child is ready; after each long-connection reconnect; every ``resync_minutes``
(0: never periodically); and, while the long connection is down, at least every half
``stale_after_minutes`` (when periodic re-sync is on), so that a working API keeps the panels from
turning stale. A failed pass is retried with backoff (30 s doubling to 30 min, or longer when a
rate limit says so); requests made meanwhile wait for the backoff. One worker thread runs every
pass: never two at once, and never on the SDK's event loop, which must keep acknowledging events.

Targeted passes: an event with ``original_time = 0`` may be a recurring series, whose other
occurrences only free/busy knows (events carry no recurrence rule, and the store drops a series'
instances when a newer event for it comes). :meth:`Resync.after_event` therefore re-syncs just the
rooms that event named, :data:`DEBOUNCE` seconds later so that a burst of events costs one
call per 20 rooms. A targeted pass shares the backoff and rate-limit handling of full passes; it
is not reported as a pass (it vouches only for its rooms), only its changes are.

Window: ``[now - 1 h, now + 2 days]``. The hour behind covers the meeting running now or just
ended (and some clock skew); two days ahead covers what signs show (today, the next bookings) and
what the bridge publishes soon. It is short on purpose: recurring series come expanded, so answers
stay small (the API suggests under 30 days), and the window slides, so every booking is checked
again long before it matters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from display.backoff import Backoff
from display.clock import Clock
from display.config import FeishuConfig
from display.errors import EventError, FeishuApiError, StoreError
from display.intake.feishu.freebusy import chunks, parse_freebusy, rfc3339

# lark-oapi's core only (token manager, transport): not `import lark_oapi`, which loads every
# service of the SDK (see display.intake.feishu.sdk).
from display.intake.feishu.rawapi import RATE_LIMITED, Failure, RawApi, RawApiError
from display.model import RoomEvent
from display.store import ScheduleStore

log = logging.getLogger(__name__)

FREEBUSY_URI = "/open-apis/meeting_room/freebusy/batch_get"
LOOK_BACK = timedelta(hours=1)
LOOK_AHEAD = timedelta(days=2)
BACKOFF_INITIAL = 30.0
BACKOFF_MAX = 30 * 60.0
#: The longest wait a rate limit's ``x-ogw-ratelimit-reset`` may ask for (a longer one is capped).
MAX_RATE_LIMIT_WAIT = 3600.0
#: Seconds between an event for a series and the targeted re-sync of its rooms (batches bursts).
DEBOUNCE = 2.0
HTTP_TIMEOUT = 30.0
_TEXT_CHARS = 200  # of a message from Feishu quoted in an error
_ERROR_CHARS = 500  # of the error reported to the parent


class FreeBusyApi(Protocol):
    """Fetches one ``batch_get`` answer (decoded JSON) for at most 20 rooms."""

    def fetch(self, rooms: Sequence[str], time_min: datetime, time_max: datetime) -> Any: ...


class LarkFreeBusy:
    """``batch_get`` through lark-oapi's token manager, which fetches and caches the tenant
    token, and its HTTP transport (:class:`~display.intake.feishu.rawapi.RawApi`).

    Raises :class:`FeishuApiError` for what retrying later may fix (unreachable, token refused,
    rate limited, an error code) and :class:`EventError` for an answer that is not JSON.
    """

    def __init__(self, feishu: FeishuConfig) -> None:
        self.domain = feishu.domain
        # ValueError for a plain-http domain that is not loopback: the SDK refuses to send
        # the app secret there.
        self._api = RawApi(feishu, HTTP_TIMEOUT)

    def fetch(self, rooms: Sequence[str], time_min: datetime, time_max: datetime) -> Any:
        queries = [("room_ids", room) for room in rooms]
        queries += [("time_min", rfc3339(time_min)), ("time_max", rfc3339(time_max))]
        try:
            return self._api.request("GET", FREEBUSY_URI, queries=queries)
        except RawApiError as exc:
            if exc.status == 200 and exc.answer is not None and type(exc.code) is not int:
                return exc.answer  # JSON, but not Feishu's: parse_freebusy says what is wrong
            raise _worded(exc) from exc


def _worded(exc: RawApiError) -> FeishuApiError | EventError:
    """Re-sync's wording of a failed request (the status line shows it)."""
    if exc.failure is Failure.TOKEN:
        if exc.code == RATE_LIMITED:
            return FeishuApiError(f"tenant token: rate limited (code {exc.code})")
        return FeishuApiError(f"tenant token refused: code {exc.code}: {_text(exc.msg)} "
                              "(check feishu.app_id and feishu.app_secret)")
    if exc.failure is Failure.RATE_LIMITED:
        wait = exc.retry_after
        return FeishuApiError(str(exc), retry_after=None if wait is None
                              else min(wait, MAX_RATE_LIMIT_WAIT))
    if exc.failure is Failure.REFUSED or (exc.failure is Failure.NOT_JSON
                                          and exc.status not in (None, 200)):
        if exc.status != 200:
            detail = f", code {exc.code}: {_text(exc.msg)}" if exc.code is not None else ""
            return FeishuApiError(f"free/busy: HTTP {exc.status}{detail}")
        return FeishuApiError(f"free/busy: code {exc.code}: {_text(exc.msg)}")
    if exc.failure is Failure.NOT_JSON and exc.status == 200:
        return EventError("body", "is not JSON")
    return FeishuApiError(str(exc))  # unreachable; an answer the SDK could not decode


def _text(value: Any) -> str:
    return repr(str(value)[:_TEXT_CHARS]) if value is not None else "''"


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one re-sync pass over every room did."""

    ok: bool
    at: datetime  # when the pass ended
    rooms: int  # rooms whose bookings were made to match an answer
    changed: frozenset[str]  # rooms whose bookings changed
    error: str | None = None
    retry_after: float | None = None  # what a rate limit asked for, in seconds


ReportCallback = Callable[[PassResult, datetime | None], None]


class Resync:
    """Re-sync passes on one worker thread (:meth:`start`), or one at a time by :meth:`run_pass`.

    ``rooms`` is called at each pass (the config may have changed). ``on_changed`` gets the rooms
    a chunk changed, after the commit; ``on_report`` each pass's result and when the next pass is
    due (``None``: only on request).
    """

    def __init__(self, api: FreeBusyApi, store: ScheduleStore, clock: Clock,
                 rooms: Callable[[], Sequence[str]], *,
                 on_changed: Callable[[frozenset[str]], None], on_report: ReportCallback,
                 interval: float, link_down_interval: float = 0.0,
                 backoff_initial: float = BACKOFF_INITIAL,
                 backoff_max: float = BACKOFF_MAX, debounce: float = DEBOUNCE) -> None:
        if interval < 0 or link_down_interval < 0 or backoff_initial <= 0:
            raise ValueError("intervals must be >= 0 and backoff_initial > 0")
        self._api = api
        self._store = store
        self._clock = clock
        self._rooms = rooms
        self._on_changed = on_changed
        self._on_report = on_report
        self._interval = interval
        self._link_down_interval = link_down_interval
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._one_pass = threading.Lock()
        self._cond = threading.Condition()
        self._pending = True  # the first pass runs as soon as the worker starts
        self._retry_at: float | None = None  # monotonic; set while backing off
        self._last_pass: float | None = None  # the last full pass
        self._debounce = max(0.0, debounce)
        self._targeted: set[str] = set()  # rooms waiting for a targeted pass
        self._targeted_due = 0.0  # monotonic
        self._link_up = True
        self._stopped = False
        self._thread: threading.Thread | None = None

    # -- control (any thread; never blocks) -----------------------------------------------------

    def start(self) -> None:
        """Start the worker; it runs a first pass at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="resync", daemon=True)
            self._thread.start()

    def request(self, reason: str) -> None:
        """Ask for a pass soon (coalesced with one already asked for; after any backoff)."""
        log.info("re-sync requested: %s", reason)
        with self._cond:
            self._pending = True
            self._cond.notify()

    def request_rooms(self, rooms: Iterable[str], reason: str) -> None:
        """Ask for a targeted pass over ``rooms`` in :data:`DEBOUNCE` seconds (batched)."""
        new = set(rooms)
        if not new:
            return
        log.debug("targeted re-sync requested for %d room(s): %s", len(new), reason)
        with self._cond:
            if not self._targeted:
                self._targeted_due = self._clock.monotonic() + self._debounce
            self._targeted |= new
            self._cond.notify()

    def after_event(self, event: RoomEvent, changed: frozenset[str]) -> None:
        """An event was applied: for a possible series (``original_time = 0``) re-sync its rooms.

        The rooms are those it names, and for a delete naming none, those it was removed from.
        """
        if event.original_time == 0:
            self.request_rooms(set(event.room_ids) | changed, f"event for {event.key}")

    def link(self, up: bool) -> None:
        """The event link went up or down (down: re-sync more often to keep data fresh)."""
        with self._cond:
            self._link_up = up
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=HTTP_TIMEOUT + 5)

    # -- scheduling -----------------------------------------------------------------------------

    def _period(self) -> float:
        if self._interval <= 0:
            return 0.0  # no periodic interval (tests): start and reconnects only
        if not self._link_up and self._link_down_interval > 0:
            return min(self._interval, self._link_down_interval)
        return self._interval

    def _next(self, now: float) -> tuple[float | None, str | None]:
        """When the next pass is due (monotonic; ``None``: only on request) and which one.

        ``"full"`` or ``"rooms"`` (targeted); ``None`` while waiting for a backoff.
        """
        if self._retry_at is not None and self._retry_at > now:
            return self._retry_at, None  # a request waits for the backoff too: rate limits
        if self._pending:
            return now, "full"
        options: list[tuple[float, str]] = []
        period = self._period()
        if period and self._last_pass is not None:
            options.append((self._last_pass + period, "full"))
        if self._targeted:
            options.append((self._targeted_due, "rooms"))
        if not options:
            return None, None
        due, job = min(options)
        return due, job

    def _work(self) -> None:
        """The worker thread: :meth:`_loop`, restarted with backoff whatever it raises."""
        while True:
            try:
                self._loop()
                return
            except Exception as exc:  # the thread's boundary: it must never end silently
                with self._cond:
                    delay = self._backoff.next()
                    self._pending = True
                    self._retry_at = self._clock.monotonic() + delay
                log.exception("re-sync worker failed; running again in %.0f s", delay)
                error = f"re-sync worker failed: {type(exc).__name__}: {exc}"[:_ERROR_CHARS]
                with contextlib.suppress(Exception):  # reporting must not end the thread
                    self._on_report(PassResult(ok=False, at=self._clock.now(), rooms=0,
                                               changed=frozenset(), error=error),
                                    self._clock.now() + timedelta(seconds=delay))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = self._clock.monotonic()
                    due, job = self._next(now)
                    if job is not None and due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                self._retry_at = None
                if job == "full":  # covers every room, targeted ones included
                    self._pending = False
                    self._targeted.clear()
                    targeted: list[str] = []
                else:
                    targeted = sorted(self._targeted)
                    self._targeted.clear()
            result = self._guarded_pass(targeted if job == "rooms" else None)
            with self._cond:
                now = self._clock.monotonic()
                if job == "full":
                    self._last_pass = now
                if result.ok:
                    self._backoff.reset()
                    delay = None
                else:
                    delay = max(self._backoff.next(), result.retry_after or 0.0)
                    self._retry_at = now + delay
                    if job == "full":
                        self._pending = True
                    else:  # retried after the backoff, with whatever was asked meanwhile
                        self._targeted.update(targeted)
                        self._targeted_due = now
                due, _ = self._next(now)
            if job == "rooms":
                if result.ok:
                    log.info("targeted re-sync: %d room(s), %d changed", result.rooms,
                             len(result.changed))
                else:
                    log.warning("targeted re-sync failed (%d room(s) done): %s; retrying in "
                                "%.1f s", result.rooms, result.error, delay)
                continue
            next_at = result.at + timedelta(seconds=due - now) if due is not None else None
            if result.ok:
                log.info("re-sync: %d room(s) from free/busy, %d changed%s", result.rooms,
                         len(result.changed),
                         f"; next in {due - now:.0f} s" if due is not None else "")
            else:
                log.warning("re-sync failed (%d room(s) done, %d changed): %s; retrying in "
                            "%.1f s", result.rooms, len(result.changed), result.error, delay)
            self._on_report(result, next_at)

    def _guarded_pass(self, rooms: list[str] | None) -> PassResult:
        try:
            return self.run_pass() if rooms is None else self.run_rooms(rooms)
        except Exception as exc:  # the worker's boundary: report it, back off, keep going
            log.exception("re-sync: unexpected error")
            return PassResult(ok=False, at=self._clock.now(), rooms=0, changed=frozenset(),
                              error=f"unexpected {type(exc).__name__}: {exc}"[:_ERROR_CHARS])

    # -- one pass -------------------------------------------------------------------------------

    def run_pass(self) -> PassResult:
        """Re-sync every room now, chunk by chunk; a chunk that fails changes nothing.

        An API failure (token, reachability, rate limit, error code) ends the pass: the next
        chunk would fail alike. A malformed answer only skips its own chunk.
        """
        return self._sync(None)

    def run_rooms(self, rooms: Iterable[str]) -> PassResult:
        """A targeted pass: re-sync those of ``rooms`` that are configured, like :meth:`run_pass`.
        """
        return self._sync(set(rooms))

    def _sync(self, only: set[str] | None) -> PassResult:
        with self._one_pass:
            rooms = list(dict.fromkeys(self._rooms()))  # once each, in config order
            if only is not None:
                rooms = [room for room in rooms if room in only]
            now = self._clock.now()
            window = (now - LOOK_BACK, now + LOOK_AHEAD)
            synced = 0
            changed: set[str] = set()
            errors: list[str] = []
            retry_after: float | None = None
            for chunk in chunks(rooms):
                # Before sending (and before the token): anything committed after this instant
                # may be newer than the answer, and resync_room leaves it alone.
                requested_at = self._clock.now()
                try:
                    answer = parse_freebusy(self._api.fetch(chunk, *window), chunk)
                except FeishuApiError as exc:
                    errors.append(str(exc))
                    retry_after = exc.retry_after
                    break
                except EventError as exc:
                    errors.append(f"malformed free/busy answer: {exc}")
                    continue
                received = self._clock.now()
                chunk_changed: set[str] = set()
                try:
                    with self._store.batch():  # one commit (one fsync) per chunk of rooms
                        for room, bookings in answer.items():
                            if self._store.resync_room(room, window, bookings, requested_at,
                                                       received):
                                chunk_changed.add(room)
                            synced += 1
                except StoreError as exc:
                    errors.append(str(exc))
                    break
                finally:
                    if chunk_changed:
                        changed |= chunk_changed
                        self._on_changed(frozenset(chunk_changed))
                failed = [room for room in chunk if room not in answer]
                if failed:
                    errors.append(f"Feishu could not answer for {len(failed)} room(s) "
                                  f"(error_room_ids): {', '.join(failed[:5])}"
                                  + (", ..." if len(failed) > 5 else ""))
            error = "; ".join(errors)[:_ERROR_CHARS] if errors else None
            return PassResult(ok=not errors, at=self._clock.now(), rooms=synced,
                              changed=frozenset(changed), error=error, retry_after=retry_after)
