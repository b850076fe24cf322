"""Two bridges on a real Mosquitto (loopback): replication lag and publisher takeover.

1. lag: bridge A's Feishu intake commits 100 events/s for 10 s (each with its outbox row, as the
   intake child does; 40 bookings in two rooms, each event a newer version of one); the time
   from each commit at A to its commit at B (median, p99).
2. takeover: the publishing bridge is killed without a clean ``offline`` (its TCP connection
   just drops, as under SIGKILL: the broker sends its last will at once); the time until the
   other bridge's first retained schedule is on the broker (median and max of 5).

Both bridges are nodes in this process (``display.testing.mqtt_nodes.RunningNode``: real node
loops, real stores, each with its own broker link); the stores do not fsync (``durable=False``),
so the figures are the replication path, not the disk.

Run: ``scripts/bench replication`` or ``.venv/bin/python bench/bench_replication.py``.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, median, percentile, wait  # noqa: E402
from display.clock import SystemClock  # noqa: E402
from display.encode.mqtt_schedule import decode_schedule  # noqa: E402
from display.testing.broker import Broker, Recorder  # noqa: E402
from display.testing.envelopes import envelope  # noqa: E402
from display.testing.mqtt_nodes import BRIDGE, RunningNode  # noqa: E402

RATE = 100  # events per second
SECONDS = 10
TAKEOVERS = 5


def start(tmp: Path, broker: Broker, name: str) -> RunningNode:
    return RunningNode(tmp / name, BRIDGE, name=name, url=broker.url,
                       clock=SystemClock()).start()


def agreed(*bridges: RunningNode) -> str | None:
    names = {n.mqtt.peers.status()["publisher"] for n in bridges}  # type: ignore[union-attr]
    known = all(len(n.mqtt.peers.bridges()) == len(bridges) for n in bridges)  # type: ignore[union-attr]
    return names.pop() if known and len(names) == 1 and None not in names else None


def lag(tmp: Path, broker: Broker) -> list[float]:
    a, b = start(tmp, broker, "bridge-a"), start(tmp, broker, "bridge-b")
    try:
        wait(lambda: agreed(a, b), 15, "the bridges meeting")
        committed: dict[str, float] = {}
        arrived: dict[str, float] = {}
        peers = b.mqtt.peers
        assert peers is not None
        apply_many = peers.store.apply_many
        lock = threading.Lock()

        def timed(events: Any, received: Any) -> Any:
            result = apply_many(events, received)
            now = time.perf_counter()
            with lock:
                for event in events:
                    arrived.setdefault(event.uuid, now)
            return result

        peers.store.apply_many = timed  # type: ignore[method-assign]
        begin = SystemClock().now() + timedelta(hours=1)
        total = RATE * SECONDS
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + i / RATE
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # the pace of the load, not a wait for a result
            # 40 bookings moved about (each event a newer version of one): a busy building's
            # day, not a room with a thousand bookings.
            start_at = begin + timedelta(minutes=i % 97)
            env = envelope(uid=f"lag{i % 40}", start=start_at,
                           end=start_at + timedelta(minutes=30), event_time=i + 1,
                           rooms=("omm_a" if i % 2 else "omm_b",))
            a.sink.accept(env)
            committed[env["uuid"]] = time.perf_counter()
        wait(lambda: len(arrived) >= total, 60, "every event at bridge-b")
        return [(arrived[u] - committed[u]) * 1000 for u in committed]
    finally:
        b.close()
        a.close()


def published_by(rec: Recorder, bridge: str) -> bool:
    got = rec.get("room-display/v1/rooms/omm_a/schedule")
    return got is not None and decode_schedule(got[0], "omm_a").bridge == bridge


def takeover(tmp: Path, broker: Broker) -> list[float]:
    rec = Recorder(broker.port, "room-display/v1/rooms/+/schedule")
    nodes = {name: start(tmp, broker, name) for name in ("bridge-a", "bridge-b")}
    out = []
    try:
        for _ in range(TAKEOVERS):
            chosen = wait(lambda: agreed(*nodes.values()), 15, "one publisher")
            other = next(n for n in nodes if n != chosen)
            wait(functools.partial(published_by, rec, chosen), 15,
                 "the publisher's schedule on the broker")
            killed = time.perf_counter()
            nodes[chosen].kill()
            wait(functools.partial(published_by, rec, other), 15, "the other bridge publishing")
            out.append((time.perf_counter() - killed) * 1000)
            nodes[chosen] = start(tmp, broker, chosen)  # back, and quiet: it follows
        return out
    finally:
        for n in nodes.values():
            n.close()
        rec.close()


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp / "broker")
        broker.start()
        try:
            lags = lag(tmp / "lag", broker)
            print(f"replication lag at {RATE} events/s for {SECONDS} s ({len(lags)} events), "
                  f"commit at A -> commit at B: median {median(lags):.1f} ms, "
                  f"p99 {percentile(lags, 99):.1f} ms, max {max(lags):.1f} ms")
            times = takeover(tmp / "takeover", broker)
            print(f"publisher killed -> the other's first schedule on the broker "
                  f"({len(times)} runs): median {median(times):.0f} ms, "
                  f"max {max(times):.0f} ms")
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
