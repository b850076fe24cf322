"""Feishu's side of a webhook, for the soak: signed deliveries at a steady rate, retried.

:class:`Sender` posts :class:`Delivery` objects from a :class:`Workload` (bookings created,
moved and cancelled across several rooms) from a few keep-alive connections, each body
encrypted and signed with the Encrypt Key as Feishu does. A delivery that gets no 200 (refused,
reset, no answer within Feishu's 3 s) is sent again with the same ``uuid``, as Feishu retries
(its 15 s, 5 min, 1 h, 6 h compressed to 0.5 s doubling to 4 s, and never given up, so every
delivery ends answered); a share of answered ones is sent again (Feishu delivers at least
once). It records what each request got.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from display.testing.envelopes import envelope
from display.testing.feishu_standin import encrypted_body, signed_headers

KEY = "soak-encrypt-key"
TOKEN = "vtoken"
PATH = "/webhook/event"

#: A booking's rooms and times as a store holds it: one (room, start, end) per room; empty when
#: the booking is cancelled (or was never there).
Effect = frozenset[tuple[str, datetime, datetime]]


@dataclass(frozen=True)
class Delivery:
    """One event as Feishu delivers it (every retry carries the same ``uuid``)."""

    uuid: str
    uid: str
    kind: str  #: created | updated | deleted
    version: int  #: seconds after the envelopes' event_time base: grows with every event
    rooms: tuple[str, ...]
    start: datetime
    end: datetime

    def envelope(self) -> dict[str, Any]:
        """The v1 envelope Feishu sends for it (encrypted and signed on each try)."""
        return envelope(self.kind, uid=self.uid, start=self.start, end=self.end,
                        rooms=self.rooms, event_time=self.version, uuid=self.uuid, token=TOKEN)

    @property
    def effect(self) -> Effect:
        """What the booking is once this delivery is the newest applied."""
        if self.kind == "deleted":
            return frozenset()
        return frozenset((room, self.start, self.end) for room in self.rooms)


class Workload:
    """Bookings created (a tenth of them in two rooms), moved and cancelled at random."""

    def __init__(self, rng: random.Random, rooms: list[str], tag: str) -> None:
        self.rng = rng
        self.rooms = rooms
        self.tag = tag
        self.begin = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
        self.live: dict[str, tuple[str, ...]] = {}
        self.count = 0

    def next(self) -> Delivery:
        """The next event: a newer version than any before it."""
        self.count += 1
        n, rng = self.count, self.rng
        roll = rng.random()
        # Creations outweigh cancellations until each room holds about 30 bookings: a busy
        # day's schedule, far below what one schedule message carries.
        creating = 0.45 if len(self.live) < 30 * len(self.rooms) else 0.2
        if len(self.live) < 3 or roll < creating:
            kind, uid = "created", f"{self.tag}-bk{n}"
            rooms = tuple(rng.sample(self.rooms, 2 if rng.random() < 0.1 and len(self.rooms) > 1
                                     else 1))
            self.live[uid] = rooms
        else:
            uid = rng.choice(list(self.live))
            rooms = self.live[uid]
            kind = "updated" if roll < 0.8 else "deleted"
            if kind == "deleted":
                del self.live[uid]
        start = self.begin + timedelta(minutes=15 * rng.randrange(4 * 24 * 3))
        end = start + timedelta(minutes=rng.choice((15, 30, 45, 60, 90, 120)))
        return Delivery(f"{self.tag}-d{n}", uid, kind, n, rooms, start, end)


@dataclass(frozen=True)
class _Job:
    delivery: Delivery
    attempt: int = 0  #: 0: the first delivery; n: its n-th retry
    again: bool = False  #: an answered delivery sent again (at least once)


@dataclass
class Tally:
    """What the sender saw (read it once the sender is closed)."""

    deliveries: dict[str, Delivery] = field(default_factory=dict)
    first_sent: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    posts: int = 0
    retries: int = 0
    retried: set[str] = field(default_factory=set)
    answer_lost: int = 0  #: retries answered "duplicate": committed, the 200 never arrived
    again: int = 0
    again_wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  #: ms, request -> 200
    failures: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Pace:
    """How Feishu's side sends."""

    rate: float = 20.0  #: new deliveries a second
    connections: int = 2  #: posting at once
    again_share: float = 0.05  #: answered deliveries sent again
    timeout: float = 3.0  #: Feishu's: no answer within 3 s counts as none


class Sender:
    """Feishu's side: posts deliveries at ``pace.rate`` from ``pace.connections`` keep-alive
    connections to the webhook on ``port`` of 127.0.0.1, retries whatever got no 200, sends
    some that did again."""

    def __init__(self, pace: Pace, workload: Workload, rng: random.Random, port: int) -> None:
        self.pace = pace
        self.workload = workload
        self.rng = rng
        self.port = port
        self.tally = Tally()
        self._lock = threading.Lock()
        self._work: queue.Queue[_Job | None] = queue.Queue()
        self._later: list[tuple[float, int, _Job]] = []  # retries by due time
        self._later_cv = threading.Condition()
        self._seq = itertools.count()
        self._stop_new = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post_loop, name=f"soak-post-{i}",
                                          daemon=True) for i in range(pace.connections)]
        self._threads += [threading.Thread(target=self._generate, name="soak-generate",
                                           daemon=True),
                          threading.Thread(target=self._dispatch, name="soak-retry",
                                           daemon=True)]

    def start(self) -> None:
        """Start posting (at the pace) and retrying."""
        for t in self._threads:
            t.start()

    def outstanding(self) -> int:
        """Deliveries sent that have not been answered 200 yet."""
        with self._lock:
            return len(self.tally.deliveries) - len(self.tally.acked)

    def stop_new(self) -> None:
        """No new deliveries from now on; retries go on until :meth:`close`."""
        self._stop_new.set()

    def close(self) -> None:
        """Stop posting and retrying; what is still unanswered stays so."""
        self._stop_new.set()
        self._stop.set()
        with self._later_cv:
            self._later_cv.notify_all()
        for _ in range(self.pace.connections):
            self._work.put(None)
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(timeout=self.pace.timeout + 5)

    # -- threads --------------------------------------------------------------------------------

    def _generate(self) -> None:
        pace = 1 / self.pace.rate
        due = time.monotonic()
        while not self._stop_new.is_set():
            delivery = self.workload.next()
            again: Delivery | None = None
            with self._lock:
                self.tally.deliveries[delivery.uuid] = delivery
                self.tally.first_sent[delivery.uuid] = time.perf_counter()
                if self.tally.acked and self.rng.random() < self.pace.again_share:
                    again = self.tally.deliveries[self.rng.choice(list(self.tally.acked))]
            self._work.put(_Job(delivery))
            if again is not None:  # Feishu delivers at least once: a second copy, a bit later
                self._later_job(_Job(again, again=True), self.rng.uniform(0, 2))
            due += pace
            # The pace of the load, not a wait for a result.
            self._stop_new.wait(max(0.0, due - time.monotonic()))

    def _dispatch(self) -> None:
        with self._later_cv:
            while not self._stop.is_set():
                if not self._later:
                    self._later_cv.wait()
                    continue
                due, _, job = self._later[0]
                pause = due - time.monotonic()
                if pause > 0:
                    self._later_cv.wait(pause)
                    continue
                heapq.heappop(self._later)
                self._work.put(job)

    def _later_job(self, job: _Job, delay: float) -> None:
        with self._later_cv:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), job))
            self._later_cv.notify()

    def _post_loop(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while (job := self._work.get()) is not None:
            body = encrypted_body(job.delivery.envelope(), KEY)
            headers = signed_headers(body, KEY)  # signed afresh on every try
            t0 = time.perf_counter()
            status, reply, failure = 0, b"", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                      timeout=self.pace.timeout)
                conn.request("POST", PATH, body=body, headers=headers)
                answer = conn.getresponse()
                status, reply = answer.status, answer.read()
                if answer.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                failure = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            self._answered(job, status, reply, failure, (time.perf_counter() - t0) * 1000)
        if conn is not None:
            conn.close()

    def _answered(self, job: _Job, status: int, reply: bytes, failure: str,
                  ms: float) -> None:
        uuid = job.delivery.uuid
        verdict = ""
        if status == 200:
            try:
                verdict = str(json.loads(reply).get("verdict"))
            except (ValueError, AttributeError):
                verdict = f"unreadable answer {reply[:60]!r}"
        with self._lock:
            tally = self.tally
            tally.posts += 1
            if job.attempt:
                tally.retries += 1
                tally.retried.add(uuid)
            if status == 200:
                tally.latencies.append(ms)
                tally.verdicts[verdict] += 1
                if job.again:
                    tally.again += 1
                    if verdict != "duplicate":  # its record is gone: the commit was lost
                        tally.again_wrong.append(f"{uuid} answered {verdict!r} when sent again")
                else:
                    if job.attempt and verdict == "duplicate" and uuid not in tally.acked:
                        tally.answer_lost += 1
                    tally.acked.setdefault(uuid, time.perf_counter())
                return
            tally.failures[failure or f"HTTP {status}"] += 1
        if not job.again and not self._stop.is_set():
            # Feishu retries at 15 s, 5 min, 1 h, 6 h; compressed here, and never given up.
            delay = min(4.0, 0.5 * 2 ** job.attempt) * self.rng.uniform(0.8, 1.2)
            self._later_job(_Job(job.delivery, job.attempt + 1), delay)


