"""Single-box node benchmark: a real ``room-display run`` in webhook mode, started as a user does.

Each node is ``python -m display run -c CONFIG`` in its own process (the Feishu intake is its
child, as always), with a fresh state directory, ``[feishu] mode = "webhook"`` on a free port of
127.0.0.1, plain (unencrypted) bodies and one room. Events alternate ``created`` / ``deleted`` of
one booking spanning now, so every event flips the room between busy and free; they are posted
one at a time over one keep-alive HTTP connection.

1. webhook POST -> the virtual panel's write (``virtual:DIR``: ``DIR/led.json`` shows the new
   state), p50/p99 over ``--events`` events spread over ``--starts`` fresh nodes (target p99
   <= 20 ms). The file is polled every 0.2 ms.
2. webhook POST -> the LED frame on a pty: the LED's ``url`` is the pty of the board simulator
   (``display/testing/boardsim.py``, running the reference firmware's logic); the time is when
   the board read the SET_LED frame that turned it red (busy) or green (free). Target p99 <= 20 ms.
3. start-up of each node in (1): from spawn to the first panel write, to systemd's READY=1 (a
   NOTIFY_SOCKET of ours) and to the webhook answering ``GET /healthz`` with 200; then, after its
   events, the peak RSS (VmHWM) of the node process and of its Feishu intake child. For the share
   taken by ``lark_oapi``: ``import lark_oapi`` in a fresh interpreter (time and peak RSS) against
   a bare interpreter, and a check that the node process maps none of the extension modules that
   importing lark_oapi loads (it never imports lark_oapi; only the intake child does).

Run: ``scripts/bench node`` or ``.venv/bin/python bench/bench_node.py [--events 300] [--starts 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    children,
    cmdline,
    free_port,
    machine,
    median,
    peak_rss_mb,
    percentile,
    python_cost,
    wait,
)
from display.encode import panel_protocol as pp
from display.testing.boardsim import BoardSim
from display.testing.envelopes import envelope

TOKEN = "bench-token"
ROOM = "omm_bench"
PATH = "/webhook/event"
POLL = 0.0002  # seconds between looks at the panel: a polling interval, not a wait
BUSY_RGB, FREE_RGB = (255, 0, 0), (0, 192, 0)  # the documented default LED colours
IMPORT_RUNS = 3

CONFIG = """\
[node]
name = "bench-node"
timezone = "UTC"
state_dir = {state}

[feishu]
mode = "webhook"
listen = "127.0.0.1:{port}"
path = "{path}"
verification_token = "{token}"
resync_minutes = 0

[[rooms]]
open_id = "{room}"
name = "Bench room"

[[rooms.devices]]
id = "led"
kind = "led"
url = {url}
"""


class SystemdNotify:
    """A NOTIFY_SOCKET that records when READY=1 arrives (the node sends it after its first
    pass, as it would to systemd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ready_at: float | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.ready_at is None and b"READY=1" in data.split(b"\n"):
                self.ready_at = time.perf_counter()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


class NodeProcess:
    """``python -m display run -c CONFIG`` with one room whose LED is at ``device_url``."""

    def __init__(self, directory: Path, device_url: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.config = directory / "room-display.toml"
        self.config.write_text(CONFIG.format(
            state=json.dumps(str(directory / "state")), port=self.port, path=PATH, token=TOKEN,
            room=ROOM, url=json.dumps(device_url)), encoding="utf-8")
        self.log = directory / "node.log"
        self.notify = SystemdNotify(directory / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path)}
        env.pop("WATCHDOG_USEC", None)
        with open(self.log, "wb") as log:
            self.spawned = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "display", "run", "-c", str(self.config)],
                cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.conn: http.client.HTTPConnection | None = None
        self._uuid = 0

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> None:
        """Stop the benchmark with the node's log when it exited."""
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit(f"the node exited with {self.proc.returncode}:\n" + "\n".join(tail))

    def healthy(self) -> bool:
        """The webhook intake answers ``GET /healthz`` with 200."""
        self.alive()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def intake_pid(self) -> int:
        """The Feishu intake child (``python -m display.intake.feishu``)."""
        pids = [p for p in children(self.proc.pid) if "display.intake.feishu" in cmdline(p)]
        if not pids:
            raise SystemExit("the node has no Feishu intake child")
        return pids[0]

    def send(self, kind: str, seq: int, start: datetime, end: datetime) -> None:
        """Post one event; read the answer with :meth:`answer`."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps(envelope(kind, uid="bench-booking", start=start, end=end,
                                   rooms=(ROOM,), event_time=seq, token=TOKEN,
                                   uuid=f"bench-{self.proc.pid}-{seq}")).encode()
        self.conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})

    def answer(self) -> None:
        assert self.conn is not None
        reply = self.conn.getresponse()
        text = reply.read()
        if reply.status != 200:
            raise SystemExit(f"the webhook answered {reply.status}: {text!r}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        intake = [p for p in children(self.proc.pid) if "display.intake.feishu" in cmdline(p)]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in intake:  # it exits when its stdin pipe closes; make sure it did
            with contextlib.suppress(SystemExit):
                wait(functools.partial(exited, pid), 10, "the intake child to exit",
                     interval=0.01)
            if not exited(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.notify.close()


def exited(pid: int) -> bool:
    """``pid`` is gone or a zombie (an orphan waiting for whoever reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def flip(node: NodeProcess, events: int, shows: Callable[[bool], float | None]) -> list[float]:
    """Post ``events`` events that alternately book and free the room; per event the
    milliseconds from sending the POST to ``shows(busy)`` returning the time the panel showed
    the new state."""
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=1), now + timedelta(hours=1)
    out = []
    for seq in range(1, events + 1):
        busy = seq % 2 == 1
        t0 = time.perf_counter()
        node.send("created" if busy else "deleted", seq, start, end)
        shown = wait(functools.partial(shows, busy), 5, f"event {seq} to reach the panel",
                     interval=POLL)
        node.answer()
        out.append((shown - t0) * 1000)
    return out


class PanelFile:
    """The state in a virtual panel's JSON file, re-read only when the file was replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._state: str | None = None

    def shows_free(self) -> bool:
        return self.state() == "free"

    def state(self) -> str | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if (st.st_ino, st.st_mtime_ns) != self._seen:
            try:
                self._state = json.loads(self.path.read_bytes())["state"]
            except (OSError, ValueError, KeyError):
                return None  # replaced again while we read: look next time
            self._seen = (st.st_ino, st.st_mtime_ns)
        return self._state


def bench_virtual(tmp: Path, starts: int, events: int) -> dict[str, Any]:
    """Start-up, latency to the virtual panel, and peak RSS, over ``starts`` fresh nodes."""
    latencies: list[float] = []
    first_write, sd_ready, webhook_ready, node_rss, intake_rss = [], [], [], [], []
    intake_lark: list[bool] = []
    node_libs: list[set[str]] = []
    per_start = [events // starts + (i < events % starts) for i in range(starts)]
    for i, n in enumerate(per_start):
        panels = tmp / f"virtual{i}" / "panels"
        with NodeProcess(tmp / f"virtual{i}", f"virtual:{panels}") as node:
            panel = PanelFile(panels / "led.json")
            seen: dict[str, float] = {}

            def started(node: NodeProcess = node, panel: PanelFile = panel,
                        seen: dict[str, float] = seen) -> bool:
                if "write" not in seen and panel.state() is not None:
                    seen["write"] = time.perf_counter()
                if "webhook" not in seen and node.healthy():
                    seen["webhook"] = time.perf_counter()
                return len(seen) == 2

            wait(started, 120, "the node to start", interval=0.002)
            first_write.append(seen["write"] - node.spawned)
            webhook_ready.append(seen["webhook"] - node.spawned)
            if node.notify.ready_at is not None:
                sd_ready.append(node.notify.ready_at - node.spawned)
            wait(panel.shows_free, 10, "the panel to show free")

            def shows(busy: bool, panel: PanelFile = panel) -> float | None:
                ok = panel.state() == ("busy" if busy else "free")
                return time.perf_counter() if ok else None

            latencies += flip(node, n, shows)
            node_rss.append(peak_rss_mb(node.proc.pid))
            intake_rss.append(peak_rss_mb(node.intake_pid()))
            intake_lark.append(bool(lark_libs_cached() & mapped_libs(node.intake_pid())))
            node_libs.append(mapped_libs(node.proc.pid))
    return {"latencies": latencies, "first_write": first_write, "sd_ready": sd_ready,
            "webhook_ready": webhook_ready, "node_rss": node_rss, "intake_rss": intake_rss,
            "node_libs": set().union(*node_libs), "intake_lark": any(intake_lark)}


def bench_led(tmp: Path, events: int) -> list[float]:
    """Latency from the POST to the SET_LED frame read by the simulated board."""
    (tmp / "board").mkdir()
    with BoardSim(tmp / "board") as sim, NodeProcess(tmp / "led-node", str(sim.path)) as node:
        wait(node.healthy, 120, "the node's webhook", interval=0.01)
        wait(lambda: sim.led[:3] == FREE_RGB, 10, "the board to show free")

        def shows(busy: bool) -> float | None:
            want = BUSY_RGB if busy else FREE_RGB
            if sim.led[:3] != want:
                return None
            frames = [t for t, m in reversed(sim.received)
                      if isinstance(m, pp.SetLed) and (m.r, m.g, m.b) == want]
            return frames[0] if frames else None

        return flip(node, events, shows)


def mapped_libs(pid: int | str) -> set[str]:
    """Shared objects (``*.so``) a process has mapped, from ``/proc/PID/maps``."""
    libs = set()
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        for line in f:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if path.startswith("/") and (path.endswith(".so") or ".so." in path):
                libs.add(path)
    return libs


@functools.cache
def lark_libs_cached() -> frozenset[str]:
    """:func:`lark_libs` minus pycryptodome's AES, which the webhook uses without the SDK."""
    return frozenset(p for p in lark_libs() if "/Crypto/" not in p)


def lark_libs() -> set[str]:
    """The third-party extension modules (``site-packages/**.so``) that ``import lark_oapi``
    adds to a bare interpreter (standard-library ones are left out: the node has its own
    reasons to load ``_ssl`` or ``_datetime``)."""
    code = ("{imp}\nimport json\nprint(json.dumps(sorted({{l.split(maxsplit=5)[-1].strip() "
            "for l in open('/proc/self/maps') if '.so' in l}})))")
    found = []
    for imp in ("import lark_oapi", "pass"):
        out = subprocess.run([sys.executable, "-c", code.format(imp=imp)], check=True,
                             capture_output=True, text=True).stdout
        found.append(set(json.loads(out)))
    return {p for p in found[0] - found[1] if "-packages/" in p}


def ms(values: list[float]) -> str:
    slow = ", ".join(f"#{i + 1} {v:.0f} ms" for i, v in enumerate(values) if v > 20)
    return f"p50 {median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms, " \
           f"max {max(values):.1f} ms" + (f" (above 20 ms: {slow})" if slow else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=300, help="events per latency figure")
    parser.add_argument("--starts", type=int, default=3, help="fresh nodes for (1) and (3)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-node-") as raw:
        tmp = Path(raw)
        v = bench_virtual(tmp, args.starts, args.events)
        print(f"webhook POST -> virtual panel write, {len(v['latencies'])} events over "
              f"{args.starts} fresh nodes: {ms(v['latencies'])} (target p99 <= 20 ms)",
              flush=True)
        led = bench_led(tmp, args.events)
        print(f"webhook POST -> SET_LED frame read by the simulated board on the pty, "
              f"{len(led)} events: {ms(led)} (target p99 <= 20 ms)", flush=True)

    def s(values: list[float]) -> str:
        return f"median {median(values):.2f} s (max {max(values):.2f} s)"

    sd = f"systemd READY=1 {s(v['sd_ready'])}; " if v["sd_ready"] else ""
    print(f"start-up from spawn ({args.starts} runs): first panel write {s(v['first_write'])}; "
          f"{sd}webhook answering /healthz {s(v['webhook_ready'])}")
    node_rss, intake_rss = median(v["node_rss"]), median(v["intake_rss"])
    print(f"peak RSS (VmHWM) after the events, median of {args.starts}: node process "
          f"{node_rss:.1f} MB, Feishu intake child {intake_rss:.1f} MB, together "
          f"{node_rss + intake_rss:.1f} MB", flush=True)

    secs, walls, rss = python_cost("import lark_oapi", IMPORT_RUNS)
    _, bare_walls, bare_rss = python_cost("pass", IMPORT_RUNS)
    print(f"import lark_oapi, fresh interpreter ({IMPORT_RUNS} runs): {median(secs):.2f} s "
          f"(process wall {median(walls):.2f} s), peak RSS {median(rss):.0f} MB; bare "
          f"interpreter: wall {median(bare_walls):.2f} s, peak RSS {median(bare_rss):.0f} MB; "
          f"the webhook child above (re-sync off) "
          f"{'maps its extension modules' if v['intake_lark'] else 'does not import it'}")
    extra = lark_libs()
    hits = sorted(extra & v["node_libs"])
    names = ", ".join(sorted({Path(p).name.split(".")[0] for p in extra})) or "none"
    print(f"node process: maps {len(hits)} of the {len(extra)} third-party extension modules "
          f"that import lark_oapi loads ({names})"
          + (f": {', '.join(hits)}" if hits else "; lark_oapi lives in the intake child only"))


if __name__ == "__main__":
    main()
