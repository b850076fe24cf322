"""Fetch meeting titles and organizer names, in the intake child (it imports lark-oapi's core).

What is fetched is what ``[details]`` allows (README "Titles and organizers"), for the bookings a
sign shows: per room, the one in progress and the next, today. Private bookings (no organizer in
free/busy) are never asked about. Titles come from ``POST meeting_room/summary/batch_get``
(parsed here: lark-oapi has no client for it and its model mistypes ``vchat``); names from the
free/busy answers themselves (:class:`HarvestingFreeBusy`), else ``GET contact/v3/users/batch``
(at most 50 ids a call), cached per open id (:class:`~display.details.NameCache`).

When: :meth:`DetailsFetcher.touch` after an event or a re-sync touched a room, batched over
:data:`DEBOUNCE` seconds, on a worker thread of its own, so neither the event loop nor re-sync
ever waits for it: the node shows a state change at once and the details when they are stored.
Failures (41050: the user is outside the app's contact range; 41012: not a user, e.g. an app
that booked; 429: rate limited) leave the detail unknown, so signs say "Booked"; they are
counted (``node.details`` in ``status``, ``/metrics``). A rate limit or an unreachable API backs
off (the wait Feishu asks for, bounded by :data:`MAX_RATE_WAIT`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any, Literal

from display.backoff import Backoff
from display.clock import Clock
from display.config import Config, DetailsConfig, FeishuConfig, load_config
from display.details import NameCache, StoredDetails, wants_organizer, wants_title
from display.errors import ConfigError, FeishuApiError, StoreError
from display.intake.envelope import MS_THRESHOLD

# lark-oapi's core only (see display.intake.feishu.sdk).
from display.intake.feishu.rawapi import Failure, RawApi, RawApiError
from display.model import Booking
from display.store import ScheduleStore

log = logging.getLogger(__name__)

SUMMARY_URI = "/open-apis/meeting_room/summary/batch_get"
USERS_URI = "/open-apis/contact/v3/users/batch"
MAX_IDS = 50  # documented bound of users/batch
MAX_EVENTS = 20  # summary/batch_get's bound is undocumented: stay modest
NO_PERMISSION, INVALID_ID = 41050, 41012
DEBOUNCE = 0.3
#: A rate limit's reset header is obeyed up to this many seconds (a wild value must not park
#: the fetcher for hours; a later touch retries sooner anyway).
MAX_RATE_WAIT = 300.0
BACKOFF_INITIAL, BACKOFF_MAX = 5.0, 600.0
#: A title is asked again after this long (a meeting renamed without an event reaching us), or
#: at once when an event names its booking.
TITLE_TTL = 600.0
TITLE_MISS_TTL = 60.0
PER_ROOM = 2  # the booking in progress and the next: what a sign names
MAX_REMEMBERED = 10_000  # booking keys whose free/busy organizer is remembered
HTTP_TIMEOUT = 15.0
#: The store's meta key the counts are kept under (the node shows them in ``status``).
META_KEY = "details_counts"
COUNTERS = ("titles", "names", "title_missing", "no_permission", "invalid_id", "rate_limited",
            "errors")


class UserError(Exception):
    """``users/batch`` refused the ids asked with ``code`` (41050, 41012 or another)."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"contact API code {code}")


class LarkDetailsApi:
    """The two calls through lark-oapi's token manager and transport (raw JSON, parsed here)."""

    def __init__(self, feishu: FeishuConfig) -> None:
        self.domain = feishu.domain
        self._api = RawApi(feishu, HTTP_TIMEOUT)

    def _call(self, what: str, method: Literal["GET", "POST"], uri: str, *,
              queries: Sequence[tuple[str, str]] = (), body: Any = None
              ) -> tuple[int, Mapping[str, Any]]:
        """Feishu's ``code`` and answer; an error code is the caller's to word."""
        try:
            return 0, self._api.request(method, uri, queries=queries, body=body)
        except RawApiError as exc:
            if exc.failure is Failure.REFUSED and type(exc.code) is int and exc.code != 0:
                return exc.code, {}
            if exc.failure is Failure.TOKEN:
                raise FeishuApiError(f"tenant token refused: code {exc.code}") from exc
            if exc.failure is Failure.RATE_LIMITED:
                wait = exc.retry_after
                raise FeishuApiError(f"{what}: rate limited (HTTP {exc.status})",
                                     retry_after=None if wait is None
                                     else min(MAX_RATE_WAIT, wait)) from exc
            if exc.status is None:  # unreachable; an answer the SDK could not decode
                raise
            raise FeishuApiError(f"{what}: HTTP {exc.status}, not a Feishu answer") from exc

    def summaries(self, events: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
        """Titles of ``events`` (``(uid, original_time)``); ``None`` for those Feishu listed in
        ``ErrorEventUids`` or left out."""
        body = {"EventUids": [{"uid": uid, "original_time": ot} for uid, ot in events]}
        code, answer = self._call("summary", "POST", SUMMARY_URI, body=body)
        if code != 0:
            raise FeishuApiError(f"summary: code {code}")
        return parse_summaries(answer, events)

    def users(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Names of ``ids`` (open ids); ``None`` for those Feishu did not return.

        Raises :class:`UserError` when the call as a whole is refused (41050, 41012)."""
        queries = [("user_ids", i) for i in ids] + [("user_id_type", "open_id")]
        code, answer = self._call("contact", "GET", USERS_URI, queries=queries)
        if code != 0:
            raise UserError(code)
        return parse_users(answer, ids)


def parse_summaries(answer: Mapping[str, Any],
                    events: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str | None]:
    """``data.EventInfos`` as titles by ``(uid, original_time)``; anything malformed is unknown.
    """
    out: dict[tuple[str, int], str | None] = {e: None for e in events}
    data = answer.get("data")
    infos = data.get("EventInfos") if isinstance(data, Mapping) else None
    for info in infos if isinstance(infos, list) else []:
        if not isinstance(info, Mapping):
            continue
        uid, ot, summary = info.get("uid"), info.get("original_time"), info.get("summary")
        if isinstance(ot, str) and ot.isdigit():
            ot = int(ot)
        if isinstance(uid, str) and isinstance(ot, int) and (uid, ot) in out \
                and isinstance(summary, str) and summary.strip():
            out[(uid, ot)] = " ".join(summary.split())[:200]  # one line, bounded
    return out


def parse_users(answer: Mapping[str, Any], ids: Sequence[str]) -> dict[str, str | None]:
    """``data.items`` as names by open id; a user not returned has none."""
    out: dict[str, str | None] = {i: None for i in ids}
    data = answer.get("data")
    items = data.get("items") if isinstance(data, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            open_id, name = item.get("open_id"), item.get("name")
            if open_id in out and isinstance(name, str) and name.strip():
                out[str(open_id)] = " ".join(name.split())[:100]
    return out


def harvest_names(answer: Any) -> tuple[dict[str, str], dict[str, bool]]:
    """What a free/busy answer says of organizers: names by open id (app-created bookings have
    none), and for each booking key whether it has an organizer at all (private ones do not).
    """
    names: dict[str, str] = {}
    organized: dict[str, bool] = {}
    data = answer.get("data") if isinstance(answer, Mapping) else None
    free_busy = data.get("free_busy") if isinstance(data, Mapping) else None
    if not isinstance(free_busy, Mapping):
        return names, organized
    for slots in free_busy.values():
        for slot in slots if isinstance(slots, list) else []:
            if not isinstance(slot, Mapping):
                continue
            info = slot.get("organizer_info")
            open_id = info.get("open_id") if isinstance(info, Mapping) else None
            uid, ot = slot.get("uid"), slot.get("original_time") or 0
            if isinstance(uid, str) and isinstance(ot, int | str) and str(ot).isdigit():
                ot = int(ot)
                key = f"{uid}_{ot // 1000 if ot > MS_THRESHOLD else ot}"  # as free/busy parses
                organized[key] = isinstance(open_id, str) and bool(open_id)
            name = info.get("name") if isinstance(info, Mapping) else None
            if isinstance(open_id, str) and isinstance(name, str) and name.strip():
                names[open_id] = " ".join(name.split())[:100]
    return names, organized


class ConfigFollower:
    """The config as the file says now, re-read when it changes (``[details]`` may be switched
    on or off without restarting the child)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._config.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def __call__(self) -> Config:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self._config = load_config(self._config.path, resolve_secrets=False)
            except ConfigError as exc:
                log.warning("details keep the config known before the change: %s", exc)
        return self._config


class DetailsFetcher:
    """Titles and names for the bookings signs show, on one worker thread (:meth:`start`).

    ``config()`` is asked at each batch; ``on_changed(rooms)`` is told the rooms whose stored
    details changed (the parent redraws them). ``confirm`` (the default): fetch only for
    bookings free/busy listed with an organizer; ``False`` trusts an event's organizer (tests).
    """

    def __init__(self, api: LarkDetailsApi | Any, store: ScheduleStore, clock: Clock,
                 config: Callable[[], Config], on_changed: Callable[[frozenset[str]], None], *,
                 names: NameCache | None = None, debounce: float = DEBOUNCE,
                 confirm: bool = True,
                 backoff_initial: float = BACKOFF_INITIAL) -> None:
        self._api = api
        self._store = store
        self._clock = clock
        self._config = config
        self._on_changed = on_changed
        self._names = names or NameCache()
        self._debounce = debounce
        self._backoff = Backoff(backoff_initial, BACKOFF_MAX)
        self._cond = threading.Condition()
        self._rooms: set[str] = set()
        self._due = 0.0
        self._retry_at: float | None = None
        self._titles: dict[str, float] = {}  # booking key -> monotonic expiry of its title
        # Booking key -> whether free/busy gave it an organizer. With re-sync on, nothing is
        # fetched for a booking free/busy has not vouched for: an event names an organizer even
        # for a private meeting, whose title must never be asked for.
        self._organized: dict[str, bool] = {}
        self._confirm = confirm
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._reported = dict(self.counts)

    # -- control (any thread; never blocks on the network) ---------------------------------------

    def start(self) -> None:
        """Start the worker; it looks at every configured room first."""
        self.touch(room.open_id for room in self._config().rooms)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="details", daemon=True)
            self._thread.start()

    def touch(self, rooms: Iterable[str], keys: Iterable[str] = ()) -> None:
        """Rooms whose bookings changed; ``keys``: bookings an event described (their titles
        are asked again)."""
        new = set(rooms)
        with self._cond:
            for key in keys:
                self._titles.pop(key, None)
            if not new:
                return
            if not self._rooms:
                self._due = self._clock.monotonic() + self._debounce
            self._rooms |= new
            self._cond.notify()

    def harvest(self, answer: Any) -> None:
        """Remember what a free/busy answer said of organizers (names; who has one)."""
        found, organized = harvest_names(answer)
        now = self._clock.monotonic()
        with self._cond:
            for open_id, name in found.items():
                self._names.put(open_id, name, now)
            if len(self._organized) > MAX_REMEMBERED:  # a bound, not a cache: start again
                self._organized.clear()
            self._organized.update(organized)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=HTTP_TIMEOUT * 2 + 5)

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = self._clock.monotonic()
                    due = max(self._due, self._retry_at or 0.0)
                    if self._rooms and due <= now:
                        break
                    self._cond.wait(None if not self._rooms else due - now)
                rooms, self._rooms = self._rooms, set()
                self._retry_at = None
            try:
                retry = self.run(sorted(rooms))
            except Exception:  # the worker's boundary: a bug here must not end the thread
                log.exception("details: unexpected error")
                self.counts["errors"] += 1
                retry = self._backoff.next()
            if retry is not None:
                with self._cond:
                    self._rooms |= rooms
                    self._retry_at = self._clock.monotonic() + retry
            self._report()

    def _report(self) -> None:
        """Keep the counts in the store for the parent, only when they changed (nothing is
        written while nothing happens)."""
        if self.counts == self._reported:
            return
        self._reported = dict(self.counts)
        try:
            self._store.set_meta(META_KEY, json.dumps(self.counts, sort_keys=True))
        except StoreError as exc:
            log.warning("details: cannot store the counts: %s", exc)

    def wanted(self, rooms: Sequence[str]) -> dict[str, list[Booking]]:
        """Per room, the bookings whose details are shown and may be fetched."""
        config = self._config()
        now = self._clock.now()
        local = now.astimezone(config.node.tz)
        day_end = datetime.combine(local.date() + timedelta(days=1), time(0),
                                   tzinfo=config.node.tz)
        out: dict[str, list[Booking]] = {}
        for open_id in rooms:
            room = config.room(open_id)
            if room is None:
                continue
            policy = config.room_details(room)
            if not policy.any:
                continue
            shown = [b for b in self._store.bookings(open_id, ending_after=now)
                     if b.start < day_end][:PER_ROOM]
            with self._cond:
                out[open_id] = [b for b in shown
                                if (wants_title(b, policy) or wants_organizer(b, policy))
                                and (not self._confirm or self._organized.get(b.key) is True)]
        return out

    def run(self, rooms: Sequence[str]) -> float | None:
        """One batch over ``rooms``; returns seconds to wait before retrying, or ``None``."""
        config = self._config()
        wanted = self.wanted(rooms)
        bookings: dict[str, tuple[str, Booking, DetailsConfig]] = {}
        for room_id, bs in wanted.items():
            room = config.room(room_id)
            policy = config.room_details(room) if room is not None else config.details
            for b in bs:
                bookings[b.key] = (room_id, b, policy)
        if not bookings:
            return None
        mono = self._clock.monotonic()
        titles: dict[str, str | None] = {}
        ask_titles: list[tuple[str, int]] = []
        ids: set[str] = set()
        for key, (_room, b, policy) in bookings.items():
            with self._cond:
                expiry = self._titles.get(key)
            if wants_title(b, policy) and (expiry is None or expiry <= mono):
                ask_titles.append((b.uid, b.original_time))
            if wants_organizer(b, policy) and b.organizer_open_id:
                with self._cond:
                    known, _ = self._names.lookup(b.organizer_open_id, mono)
                if not known:
                    ids.add(b.organizer_open_id)
        try:
            for i in range(0, len(ask_titles), MAX_EVENTS):
                part = ask_titles[i:i + MAX_EVENTS]
                for (uid, ot), title in self._api.summaries(part).items():
                    key = f"{uid}_{ot}"
                    titles[key] = title
                    with self._cond:
                        self._titles[key] = mono + (TITLE_TTL if title else TITLE_MISS_TTL)
                    self.counts["titles" if title else "title_missing"] += 1
            self._ask_names(sorted(ids), mono)
        except FeishuApiError as exc:
            self._store_found(bookings, titles)
            self.counts["rate_limited" if exc.retry_after is not None or "rate limited"
                        in str(exc) else "errors"] += 1
            wait = max(self._backoff.next(), exc.retry_after or 0.0)
            log.warning("details: %s; retrying in %.0f s (signs say \"Booked\" meanwhile)",
                        exc, wait)
            return wait
        self._backoff.reset()
        self._store_found(bookings, titles)
        return None

    def _ask_names(self, ids: Sequence[str], mono: float) -> None:
        for i in range(0, len(ids), MAX_IDS):
            part = list(ids[i:i + MAX_IDS])
            try:
                found = self._api.users(part)
            except UserError as exc:
                if len(part) > 1:  # one id outside the range must not hide the others' names
                    for one in part:
                        self._ask_names([one], mono)
                    continue
                self.counts[{NO_PERMISSION: "no_permission", INVALID_ID: "invalid_id"}
                            .get(exc.code, "errors")] += 1
                log.info("details: no name for an organizer (contact API code %d)", exc.code)
                found = {part[0]: None}
            with self._cond:
                for open_id, name in found.items():
                    self._names.put(open_id, name, mono)
                    if name:
                        self.counts["names"] += 1

    def _store_found(self, bookings: Mapping[str, tuple[str, Booking, DetailsConfig]],
                     titles: Mapping[str, str | None]) -> None:
        """Store what is known now; a detail that is off is stored as unknown (never kept)."""
        mono = self._clock.monotonic()
        old = self._store.details(bookings)
        rows: dict[str, StoredDetails] = {}
        for key, (_room, b, policy) in bookings.items():
            before = old.get(key, StoredDetails())
            title = titles.get(key, before.title)
            title = title if wants_title(b, policy) else None
            organizer = before.organizer if wants_organizer(b, policy) else None
            if b.organizer_open_id and wants_organizer(b, policy):
                with self._cond:
                    known, name = self._names.lookup(b.organizer_open_id, mono)
                if known:
                    organizer = name
            rows[key] = StoredDetails(title=title, organizer=organizer)
        try:
            if self._store.put_details(rows, self._clock.now()):
                self._on_changed(frozenset(room for room, _, _ in bookings.values()))
        except StoreError as exc:
            log.warning("details: cannot store them: %s", exc)


class HarvestingFreeBusy:
    """A free/busy API that hands every answer's organizer names to a :class:`DetailsFetcher`
    and touches the rooms asked (their bookings may be new to the details)."""

    def __init__(self, inner: Any, details: DetailsFetcher) -> None:
        self._inner = inner
        self._details = details

    def fetch(self, rooms: Sequence[str], time_min: datetime, time_max: datetime) -> Any:
        answer = self._inner.fetch(rooms, time_min, time_max)
        self._details.harvest(answer)
        self._details.touch(rooms)
        return answer
