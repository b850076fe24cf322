"""Two bridges as a site runs them: replication lag, and the takeover after a SIGKILL.

Both bridges are whole ``room-display run`` processes (each with its Feishu intake child, a
webhook with an Encrypt Key, a store on disk with fsync) on one real Mosquitto on loopback, with
configs that differ only in the name and the listen addresses
(:mod:`display.testing.node_process`). Deliveries are Feishu's: encrypted, signed, POSTed.

1. lag: signed deliveries are POSTed to bridge A's webhook at 100 a second for 10 s (from 4
   keep-alive connections; 40 bookings in two rooms, each event a newer version of one). An
   event is in B once it is committed in B's store: ``schedule.db`` is read read-only every
   2 ms for the ``uuid`` of each event not there yet (a replicated event is recorded there like
   one of B's own). The store, not B's status file (rewritten on B's own rhythm) nor the
   retained room topic (only the publisher writes it: it would add B's publishing, or measure
   nothing while A publishes), is where replication ends. Two starts: A's HTTP 200 as the
   client gets it (what the issue asks; on a loaded machine the client may get its answer late,
   even after the event is in B), and A's own commit, seen the same way in A's store (the
   replication path alone: A's node noticing the commit, MQTT, B applying it). The resolution
   is the 2 ms poll. Median, p99 and max of each. A subscriber to A's ``events`` topic splits
   the way from commit to commit at the broker (medians only: it shares this process with the
   senders, so its tail is its own).
2. takeover: the publishing bridge's whole process group (node and intake child) gets SIGKILL
   (no ``offline``; the broker sends its last will when the TCP connection drops). Measured
   from the kill: until the other bridge's first retained schedule is on the broker, and until
   an event POSTed to the live bridge right after the kill is in the retained schedule of its
   room (what an agent shows). A subscriber to the room topics timestamps every message on
   arrival. The killed bridge is then started again, and the next round waits until it is
   back, caught up and not publishing (the other keeps publishing; a schedule it writes while
   coming back is counted: there should be none); so the bridges take turns. 5 rounds: median
   and max. A bridge that loses power or its network, not its process, is noticed by the
   broker only after ``keepalive`` x 1.5 (90 s by default): add that.

About 20-30 s in all; the load average is printed before and after. Run:
``scripts/bench replication`` or ``.venv/bin/python bench/bench_replication.py``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import loadavg, machine, median, percentile, wait  # noqa: E402
from display.encode.mqtt_schedule import Schedule, decode_schedule  # noqa: E402
from display.errors import EventError  # noqa: E402
from display.store import store_path  # noqa: E402
from display.testing.broker import Broker, Recorder  # noqa: E402
from display.testing.envelopes import envelope  # noqa: E402
from display.testing.feishu_standin import encrypted_body, signed_headers  # noqa: E402
from display.testing.node_process import (  # noqa: E402
    ENCRYPT_KEY,
    NodeProcess,
    bridge_text,
)

RATE = 100  # events per second
SECONDS = 10
SENDERS = 4  # keep-alive connections, as Feishu keeps several open
POLL = 0.002  # how often the stores are read for the events not there yet
TAKEOVERS = 5
ROOMS = ("omm_a", "omm_b", "omm_c")
TAKE_ROOM = "omm_c"  # the takeover rounds' events (the lag's are in omm_a and omm_b)
PREFIX = "room-display"


class Arrivals(Recorder):
    """A :class:`Recorder` that also timestamps every message on arrival."""

    def __init__(self, port: int, topic_filter: str) -> None:
        # set before subscribing: the retained messages arrive at once
        self.log: list[tuple[float, str, bytes]] = []
        super().__init__(port, topic_filter)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        at = time.perf_counter()
        super()._on_message(client, userdata, msg)
        with self._lock:
            self.log.append((at, msg.topic, bytes(msg.payload)))

    def schedules_since(self, since: float) -> list[tuple[float, Schedule]]:
        """The schedules that arrived after ``since`` (perf_counter), in order."""
        with self._lock:
            log = [m for m in self.log if m[0] >= since and m[1].endswith("/schedule")]
        out = []
        for at, topic, payload in log:
            try:
                out.append((at, decode_schedule(payload, topic.split("/")[-2])))
            except EventError:
                continue
        return out


def replication(node: NodeProcess) -> dict[str, Any]:
    """``node.replication`` of the running node's status ({} while it is not running)."""
    try:
        doc = node.status()
    except (OSError, ValueError):  # the file replaced as it was read: the next look
        return {}
    if not doc["node"].get("running"):
        return {}
    result: dict[str, Any] = doc["node"].get("replication") or {}
    return result


def agreed(*bridges: NodeProcess) -> str | None:
    """The publisher every bridge names, once each knows all the others."""
    seen = [replication(n) for n in bridges]
    names = {s.get("publisher") for s in seen}
    known = all(len(s.get("peers", {})) == len(bridges) - 1 for s in seen)
    return names.pop() if known and len(names) == 1 and None not in names else None


def read_only(node: NodeProcess) -> sqlite3.Connection:
    """A read-only connection to the node's store (WAL: it never blocks the node's writes)."""
    return sqlite3.connect(f"{store_path(node.config).resolve().as_uri()}?mode=ro", uri=True,
                           check_same_thread=False)


def has(db: sqlite3.Connection, uuids: list[str]) -> set[str]:
    """Which of ``uuids`` the store has recorded."""
    marks = ",".join("?" * len(uuids))
    rows = db.execute(f"SELECT uuid FROM deliveries WHERE uuid IN ({marks})", uuids)
    return {row[0] for row in rows}


@dataclass(frozen=True)
class Lag:
    """What :func:`lag` measured, in ms per event."""

    commit_to_commit: list[float]  #: committed at A -> committed at B
    commit_to_broker: list[float]  #: committed at A -> at a subscriber to A's events topic
    broker_to_commit: list[float]  #: at that subscriber -> committed at B
    ack_to_commit: list[float]  #: A's HTTP 200 at the client -> committed at B
    answer: list[float]  #: POST -> 200 at A
    failed: int  #: deliveries A did not answer 200


def lag(a: NodeProcess, b: NodeProcess, wire: Arrivals) -> Lag:
    """Signed deliveries to A at :data:`RATE` a second; each one's way into B's store
    (``wire``: a subscriber to A's ``events`` topic, which splits the way at the broker)."""
    begin = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1)
    total = RATE * SECONDS
    prepared = []
    for i in range(total):
        # 40 bookings moved about (each event a newer version of one): a busy building's
        # day, not a room with a thousand bookings.
        start_at = begin + timedelta(minutes=i % 97)
        env = envelope(uid=f"lag{i % 40}", start=start_at, end=start_at + timedelta(minutes=30),
                       event_time=i + 1, rooms=("omm_a" if i % 2 else "omm_b",),
                       uuid=f"lag-{i}")
        body = encrypted_body(env, ENCRYPT_KEY)
        prepared.append((env["uuid"], body, signed_headers(body, ENCRYPT_KEY)))
    assert a.config.feishu is not None
    host, port = a.config.feishu.listen.rsplit(":", 1)
    path = a.config.feishu.path
    acked: dict[str, float] = {}
    answer_ms: list[float] = []
    # per store: when each event was first seen there, and the events not seen there yet
    seen: tuple[dict[str, float], dict[str, float]] = ({}, {})
    pending: tuple[set[str], set[str]] = (set(), set())
    failed = 0
    lock = threading.Lock()
    numbers = itertools.count()
    done = threading.Event()
    t0 = time.perf_counter() + 0.2

    def send() -> None:
        nonlocal failed
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            while (i := next(numbers)) < total:
                pause = t0 + i / RATE - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)  # the pace of the load, not a wait for a result
                uuid, body, headers = prepared[i]
                with lock:  # watched from the POST on: nothing arrives unseen
                    for waiting in pending:
                        waiting.add(uuid)
                sent = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    answer = conn.getresponse()
                    answer.read()
                    status = answer.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                    status = 0
                now = time.perf_counter()
                with lock:
                    if status == 200:
                        acked[uuid] = now
                        answer_ms.append((now - sent) * 1000)
                    else:
                        failed += 1
        finally:
            conn.close()

    def watch() -> None:
        dbs = read_only(a), read_only(b)
        try:
            while not done.wait(POLL):
                for db, waiting, found_at in zip(dbs, pending, seen, strict=True):
                    with lock:
                        looking = list(waiting)
                    if not looking:
                        continue
                    found = has(db, looking)
                    now = time.perf_counter()
                    with lock:
                        for uuid in found:
                            found_at[uuid] = now
                        waiting.difference_update(found)
        finally:
            for db in dbs:
                db.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    senders = [threading.Thread(target=send, daemon=True) for _ in range(SENDERS)]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    at_a, at_b = seen
    try:
        # B's query follows A's in each pass, so an event may be seen in B a pass before A.
        wait(lambda: all(u in at_b and u in at_a for u in list(acked)), 60,
             "every acknowledged event in both stores", interval=0.05)
    finally:
        done.set()
        watcher.join(timeout=10)
    on_wire: dict[str, float] = {}
    with wire._lock:
        for at, _topic, payload in wire.log:
            on_wire.setdefault(json.loads(payload)["event"]["uuid"], at)
    wait(lambda: all(u in on_wire for u in acked), 1, "every event on A's events topic")
    return Lag(commit_to_commit=[(at_b[u] - at_a[u]) * 1000 for u in acked],
               commit_to_broker=[(on_wire[u] - at_a[u]) * 1000 for u in acked],
               broker_to_commit=[(at_b[u] - on_wire[u]) * 1000 for u in acked],
               ack_to_commit=[(at_b[u] - acked[u]) * 1000 for u in acked],
               answer=answer_ms, failed=failed)


def publishing(rec: Arrivals, bridge: str) -> bool:
    """The newest schedule of every room on the broker names ``bridge``."""
    for room in ROOMS:
        got = rec.get(f"{PREFIX}/v1/rooms/{room}/schedule")
        if got is None or decode_schedule(got[0], room).bridge != bridge:
            return False
    return True


def first(schedules: list[tuple[float, Schedule]], bridge: str, uid: str | None = None
          ) -> float | None:
    """When the first schedule from ``bridge`` (holding booking ``uid``, if given) arrived."""
    for at, schedule in schedules:
        if schedule.bridge == bridge and (uid is None or any(
                booking.uid == uid for booking in schedule.bookings)):
            return at
    return None


def back(node: NodeProcess, other: NodeProcess, uuid: str) -> bool:
    """``node`` is back: its webhook answers, it knows ``other`` publishes, does not itself,
    has caught up with ``uuid``, and ``other`` sees it online."""
    if not node.webhook_up():  # the intake child starts after the node's link
        return False
    mine, theirs = replication(node), replication(other)
    if (mine.get("publisher") != other.name or mine.get("publishing")
            or not mine.get("peers", {}).get(other.name, {}).get("online")
            or not theirs.get("peers", {}).get(node.name, {}).get("online")):
        return False
    db = read_only(node)
    try:
        return bool(has(db, [uuid]))
    finally:
        db.close()


@dataclass(frozen=True)
class Round:
    """One kill of the publisher, as :func:`kill_round` measured it."""

    first_ms: float  #: the kill -> the other's first schedule
    event_ms: float  #: the kill -> the event POSTed to the live bridge in its room's schedule
    after_ack_ms: float  #: that event's 200 -> in the schedule
    killed: float  #: perf_counter() of the kill
    restarted: float  #: perf_counter() of the killed bridge's start
    doomed: str  #: the name of the killed bridge


def takeover(bridges: dict[str, NodeProcess], rec: Arrivals) -> tuple[list[Round], int]:
    """:data:`TAKEOVERS` kills, and how many schedules the killed bridges wrote from their
    restart until the next kill, while the other publishes (there should be none)."""
    begin = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2)
    rounds = [kill_round(bridges, rec, n, begin + timedelta(minutes=10 * n))
              for n in range(TAKEOVERS)]
    ends = [r.killed for r in rounds[1:]] + [time.perf_counter()]
    stray = sum(at < end and schedule.bridge == r.doomed
                for r, end in zip(rounds, ends, strict=True)
                for at, schedule in rec.schedules_since(r.restarted))
    return rounds, stray


def kill_round(bridges: dict[str, NodeProcess], rec: Arrivals, n: int, start_at: datetime
               ) -> Round:
    """One kill of the publisher (see :func:`takeover`); the killed bridge back afterwards."""
    chosen = wait(lambda: agreed(*bridges.values()), 60, "one publisher", interval=0.05)
    doomed = bridges[chosen]
    live = next(b for name, b in bridges.items() if name != chosen)
    wait(lambda: publishing(rec, chosen), 30, f"{chosen}'s schedules on the broker",
         interval=0.01)
    killed = time.perf_counter()
    doomed.kill()
    uid, uuid = f"take{n}", f"take-{n}"
    code = live.deliver(envelope(uid=uid, start=start_at, end=start_at + timedelta(minutes=5),
                                 rooms=(TAKE_ROOM,), event_time=10_000 + n, uuid=uuid))
    acked = time.perf_counter()
    if code != 200:
        tail = "\n".join(live.log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"the live bridge {live.name} answered {code}, not 200:\n{tail}")
    took = wait(lambda: first(rec.schedules_since(killed), live.name), 60,
                f"{live.name}'s first schedule after the kill")
    shown = wait(lambda: first(rec.schedules_since(killed), live.name, uid), 60,
                 f"{uid} in {live.name}'s schedule")
    restarted = time.perf_counter()
    doomed.start()
    wait(lambda: back(doomed, live, uuid), 90,
         f"{doomed.name} back, caught up and not publishing", interval=0.05)
    return Round(first_ms=(took - killed) * 1000, event_ms=(shown - killed) * 1000,
                 after_ack_ms=(shown - acked) * 1000, killed=killed, restarted=restarted,
                 doomed=chosen)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min) before: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp / "broker")
        broker.start()
        bridges = {name: NodeProcess(tmp / name, bridge_text(name, broker.url, ROOMS))
                   for name in ("bridge-a", "bridge-b")}
        rec: Arrivals | None = None
        try:
            for node in bridges.values():
                node.start()
            for node in bridges.values():
                wait(node.webhook_up, 90, f"{node.name}'s webhook", interval=0.05)
            wait(lambda: agreed(*bridges.values()), 60, "the bridges meeting", interval=0.05)
            a, b = bridges["bridge-a"], bridges["bridge-b"]
            wire = Arrivals(broker.port, f"{PREFIX}/v1/bridges/{a.name}/events")
            try:
                got = lag(a, b, wire)
            finally:
                wire.close()
            lags, late = got.commit_to_commit, got.ack_to_commit
            print(f"replication lag at {RATE} events/s for {SECONDS} s ({len(lags)} events "
                  f"acknowledged, {got.failed} not)")
            print(f"  committed at A -> committed at B: median {median(lags):.1f} ms, "
                  f"p99 {percentile(lags, 99):.1f} ms, max {max(lags):.1f} ms")
            for what, values in (("A's commit -> on A's events topic (a subscriber)",
                                  got.commit_to_broker),
                                 ("that subscriber -> committed at B", got.broker_to_commit)):
                # medians only: the subscriber shares this process (and its GIL) with the
                # senders and the poll, so its own delays make its tail, not replication's
                print(f"    {what}: median {median(values):.1f} ms")
            print(f"  A's HTTP 200 at the client -> committed at B: "
                  f"median {median(late):.1f} ms, p99 {percentile(late, 99):.1f} ms, "
                  f"max {max(late):.1f} ms ({sum(x < 0 for x in late)} in B before the 200 "
                  f"reached the client)")
            print(f"  POST -> 200 at A: median {median(got.answer):.1f} ms, "
                  f"p99 {percentile(got.answer, 99):.1f} ms", flush=True)
            rec = Arrivals(broker.port, f"{PREFIX}/v1/rooms/#")
            rounds, stray = takeover(bridges, rec)
            took = [r.first_ms for r in rounds]
            shown = [r.event_ms for r in rounds]
            after_ack = [r.after_ack_ms for r in rounds]
            print(f"publisher SIGKILLed -> the other's first retained schedule ({len(took)} "
                  f"kills): median {median(took):.0f} ms, max {max(took):.0f} ms")
            print(f"publisher SIGKILLed -> an event POSTed to the live bridge in the retained "
                  f"schedule: median {median(shown):.0f} ms, max {max(shown):.0f} ms "
                  f"(from its 200: median {median(after_ack):.0f} ms, "
                  f"max {max(after_ack):.0f} ms); schedules written by a killed bridge once back: "
                  f"{stray}")
            traced = sum(node.tracebacks() for node in bridges.values())
            if traced:
                print(f"bridges logged {traced} traceback(s)")
        finally:
            if rec is not None:
                rec.close()
            for node in bridges.values():
                node.stop()
            broker.stop()
    print(f"load average (1, 5, 15 min) after: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
