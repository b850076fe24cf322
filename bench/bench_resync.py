"""Re-sync benchmark: 1,000 rooms with 5 daily series each, over the 2-day window.

The stand-in Feishu (display/testing/feishu_standin.py) runs in this process and answers
``batch_get`` with
every series expanded into instances (``original_time`` 0, RFC 3339 at +08:00), computed once
beforehand so that the figures are the bridge's, not the stand-in's. The re-sync runs where it
runs in production: in a fresh process (the intake child's part: lark-oapi's client, the
store, :class:`~display.intake.feishu.resync.Resync`), which reports

- ``fill``: one full pass into an empty store (50 calls of 20 rooms);
- ``steady``: a second pass over the same answer (nothing changes: what every periodic pass is);
- the process's peak RSS (VmHWM) during the passes, and how much of it the re-sync added to
  what the process held before (lark-oapi alone is ~170 MB, paid once at the child's start);
- the store's size on disk (after a WAL checkpoint).

Target: ``fill`` ≤ 2 s and ≤ 60 MB of memory for the re-sync on the benchmark machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, median  # noqa: E402

ROOMS = int(os.environ.get("BENCH_RESYNC_ROOMS", "1000"))  # bench_scale sets it
SERIES_PER_ROOM = 5
RUNS = 5


def worker(domain: str, app_id: str, secret: str, db: Path) -> dict[str, Any]:
    """One re-sync process: two passes over every room; its figures."""
    from display.clock import SystemClock
    from display.config import FeishuConfig, Secret
    from display.intake.feishu.resync import LarkFreeBusy, Resync
    from display.store import ScheduleStore

    rooms = [f"omm_{i:04d}" for i in range(ROOMS)]
    feishu = FeishuConfig(app_id=app_id, app_secret=Secret(secret), domain=domain)
    with ScheduleStore(db) as store:
        resync = Resync(LarkFreeBusy(feishu), store, SystemClock(), lambda: rooms,
                        on_changed=lambda changed: None, on_report=lambda r, n: None,
                        interval=0)
        import lark_oapi  # noqa: F401  (the child imports it at start: not the re-sync's cost)

        base_mb = _reset_peak()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            result = resync.run_pass()
            times.append(time.perf_counter() - t0)
            if not result.ok:
                raise SystemExit(f"re-sync failed: {result.error}")
        counts = store.counts()
        changed = len(result.changed)
    peak_mb = _status_mb("VmHWM")
    import sqlite3

    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {"fill": times[0], "steady": times[1], "steady_changed": changed,
            "peak_mb": peak_mb, "base_mb": base_mb, "added_mb": peak_mb - base_mb,
            "store_bytes": size, "slots": counts["bookings"],
            "versions": counts["versions"]}


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _reset_peak() -> float:
    """Reset VmHWM to the current RSS (Linux: ``5 > clear_refs``); returns that RSS in MB.

    So the peak measured afterwards is the re-sync's, not lark-oapi's import (~170 MB of
    transient and resident memory that the intake child pays once at start).
    """
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return _status_mb("VmRSS")


def main() -> int:
    from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi, Series

    print(f"machine: {machine()}")
    now = datetime.now(UTC)
    window = (now - timedelta(hours=1), now + timedelta(days=2, minutes=10))
    with FeishuStandIn() as standin:
        api = FreeBusyApi(standin)
        for i in range(ROOMS):
            room = f"omm_{i:04d}"
            for k in range(SERIES_PER_ROOM):
                # Daily, begun weeks ago, spread over the working day.
                first = (now.replace(hour=1, minute=0, second=0, microsecond=0)
                         - timedelta(days=30) + timedelta(hours=k * 2, minutes=i % 4 * 15))
                api.calendar.series[f"{room}_s{k}"] = Series(f"{room}_s{k}", (room,), first,
                                                             timedelta(minutes=45))
            api.slots[room] = api.calendar.slots(room, *window)
        api.calendar.series.clear()  # answered from the precomputed table
        instances = sum(len(v) for v in api.slots.values())
        print(f"{ROOMS} rooms x {SERIES_PER_ROOM} daily series: {instances} instances in the "
              f"window, {-(-ROOMS // 20)} calls per pass")
        results = []
        for run in range(RUNS):
            standin.app_id = f"cli_bench_{run}"  # no token cached between runs
            with tempfile.TemporaryDirectory(prefix="bench-resync-") as tmp:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", standin.domain, standin.app_id,
                     standin.app_secret, str(Path(tmp) / "schedule.db")],
                    check=True, capture_output=True, text=True, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  run {run + 1}: fill {r['fill']:.2f} s, steady {r['steady']:.2f} s "
                  f"({r['steady_changed']} rooms changed), peak RSS {r['peak_mb']:.1f} MB = "
                  f"{r['base_mb']:.1f} MB before the passes (lark-oapi imported, store open) "
                  f"+ {r['added_mb']:.1f} MB, store {r['store_bytes'] / 1e6:.2f} MB "
                  f"({r['slots']} slots)")
    fill = median([r["fill"] for r in results])
    steady = median([r["steady"] for r in results])
    peak = median([r["peak_mb"] for r in results])
    added = median([r["added_mb"] for r in results])
    size = median([r["store_bytes"] for r in results])
    print(f"median of {RUNS}: fill {fill:.2f} s (target <= 2 s: "
          f"{'ok' if fill <= 2 else 'MISSED'}), steady {steady:.2f} s; peak RSS of the intake "
          f"process {peak:.1f} MB, of which the re-sync added {added:.1f} MB (target <= 60 MB: "
          f"{'ok' if added <= 60 else 'MISSED'}); store {size / 1e6:.2f} MB")
    print(f"per room: fill {fill / ROOMS * 1000:.2f} ms; steady/fill {steady / fill:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4, metavar=("DOMAIN", "APP_ID", "SECRET", "DB"))
    args = parser.parse_args()
    if args.worker:
        domain, app_id, secret, db = args.worker
        print(json.dumps(worker(domain, app_id, secret, Path(db))))
        raise SystemExit(0)
    raise SystemExit(main())
