"""Helpers every benchmark shares: the machine, percentiles, ports, waiting, memory.

The scripts run both as ``python bench/bench_x.py`` and through ``python -m bench``; each puts
the repository root on ``sys.path`` before ``from bench.common import ...``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (``model name`` on x86, ``Model`` on a Pi)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for key in ("model name", "Model"):
        for line in lines:
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine the figures come from."""
    return (f"{platform.platform()}, {os.cpu_count()} CPU ({cpu_model()}), "
            f"Python {platform.python_version()}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank: the smallest value with at least
    ``q`` % of the values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(cond: Callable[[], Any], timeout: float, what: str = "a condition",
         interval: float = 0.001) -> Any:
    """Poll ``cond`` until it returns something truthy and return that; exit the benchmark
    with a message naming ``what`` after ``timeout`` seconds. ``interval`` is the polling
    interval, not a wait for the event itself."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


def _status_kb(pid: int | str, field: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise ValueError(f"no {field} in /proc/{pid}/status")


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) of a running process, in MB (MiB)."""
    return _status_kb(pid, "VmHWM") / 1024


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size (VmRSS) of a running process, in MB (MiB)."""
    return _status_kb(pid, "VmRSS") / 1024


def children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (spawned from any of its threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


#: Run in a fresh interpreter by :func:`python_cost`: times ``{code}`` and reports the peak RSS.
_COST = ("import time; _t = time.perf_counter()\n{code}\n_s = time.perf_counter() - _t\n"
         "import json\n"
         "with open('/proc/self/status') as _f:\n"
         "    _kb = next(int(l.split()[1]) for l in _f if l.startswith('VmHWM:'))\n"
         "print(json.dumps([_s, _kb / 1024]))")


def python_cost(code: str, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Run ``code`` (e.g. ``"import lark_oapi"``) in ``runs`` fresh interpreters: per run the
    seconds ``code`` took inside, the whole process's wall time and its peak RSS (MB)."""
    secs, walls, rss = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _COST.format(code=code)], check=True,
                             capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - t0)
        s, r = json.loads(out)
        secs.append(s)
        rss.append(r)
    return secs, walls, rss


def loadavg() -> str:
    """The load average over 1, 5 and 15 minutes, as ``/proc/loadavg`` gives it: what else the
    machine was doing while the figures were taken."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
