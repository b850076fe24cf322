"""Run the Feishu intake child (:mod:`display.intake.feishu`) and keep it running.

The parent never imports ``lark_oapi``. It spawns ``python -m display.intake.feishu -c CONFIG``
with stdin a pipe (the child exits when the pipe closes, so it never outlives us), reads the
child's JSON lines (the contract is in :mod:`display.intake.feishu`'s docstring) and reports
them to its :class:`~display.intake.node_input.NodeInput`:

- ``notify(rooms)`` after the child committed a change to those rooms;
- ``set_link("feishu", up, error)`` when the Feishu link goes up or down (also down when the
  child exits while up, and when it exits giving a cause on a ``fatal`` line: that cause, e.g.
  "cannot listen on 127.0.0.1:7777: address already in use", is then the link's error);
- ``on_events(counts)`` with the deliveries the child counted since its previous such line
  (verdict -> count; the parent adds them up);
- ``on_store(ok, error)`` when the child's commits to the store failed, or work again;

and ``on_resync(report)`` after each re-sync pass from the free/busy API (:class:`ResyncReport`).

Calls run on one dispatcher thread, in order, never on the pipe reader, so a slow callback
cannot stall the child. The child is restarted with backoff (1 s doubling to 60 s, reset after it
ran a healthy minute) whenever it exits (except when it refused its config, exit code 78: then
``set_link("feishu", False, reason)`` and no restart; a changed config starts a new supervisor).
The child proves it is alive from its event loop (the webhook's, or the SDK's in long-connection
mode), so a hung loop falls silent like a stopped process: after :data:`SILENCE` seconds without
a line the link is shown down ("intake not responding") and the child is killed (SIGKILL: a hung
or stopped process cannot act on SIGTERM) and restarted. Its stderr (the logs) is inherited.
It stays in our process group so ``kill -9 -PGID`` and systemd's stop reach both.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from os import PathLike
from pathlib import Path
from typing import IO, Any, TypeGuard

from display.backoff import Backoff
from display.fdreserve import FdReserve
from display.intake.feishu.channel import EXIT_REFUSED
from display.intake.node_input import NodeInput

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class ResyncReport:
    """One ``resync`` line of the child: how its latest re-sync pass went."""

    ok: bool
    at: datetime
    error: str | None
    rooms: int  # rooms re-synced
    changed: int  # of which changed
    next_at: datetime | None  # next pass due (None: only after a reconnect)

    def to_json(self, tz: tzinfo = UTC) -> dict[str, object]:
        """For ``status``: times ISO-8601 in ``tz``."""
        return {"ok": self.ok, "at": self.at.astimezone(tz).isoformat(), "error": self.error,
                "rooms": self.rooms, "changed": self.changed,
                "next_at": self.next_at.astimezone(tz).isoformat() if self.next_at else None}

    @classmethod
    def from_line(cls, value: object) -> ResyncReport | None:
        """The report in a ``resync`` line's value; ``None`` when it is malformed."""
        if not isinstance(value, dict):
            return None
        ok, at, error = value.get("ok"), value.get("at"), value.get("error")
        rooms, changed, next_at = value.get("rooms"), value.get("changed", 0), value.get("next_at")
        if (isinstance(ok, bool) and _is_stamp(at) and (error is None or isinstance(error, str))
                and _is_count(rooms) and _is_count(changed)
                and (next_at is None or _is_stamp(next_at))):
            return cls(ok=ok, at=datetime.fromtimestamp(at, UTC), error=error, rooms=rooms,
                       changed=changed,
                       next_at=None if next_at is None else datetime.fromtimestamp(next_at, UTC))
        return None


def _is_stamp(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


ResyncCallback = Callable[[ResyncReport], None]
EventsCallback = Callable[[dict[str, int]], None]
StoreCallback = Callable[[bool, str | None], None]


#: Seconds without a line from the child before it counts as hung (it writes an ``alive`` line
#: from its event loop every quarter of this): a hang is shown and acted on within 10 s.
SILENCE = 8.0


def _ignore_resync(report: ResyncReport) -> None:
    """Default ``on_resync``: parents that do not show re-sync results."""


class IntakeSupervisor:
    """Starts, watches and restarts the Feishu intake child; a context manager.

    ``silence``: kill the child when no line came for this long (it sends ``alive`` lines at a
    quarter of it). ``startup_timeout``: the same before its first line (importing lark_oapi
    takes seconds, more on a Pi without bytecode caches). ``child_args`` go to the child's command
    line after ours (e.g. ``--resync-interval`` in tests). ``stop_grace``: how long a child that
    died of SIGTERM waits for the node's own stop before it counts as a crash and is restarted.
    """

    def __init__(self, config_path: str | PathLike[str], node: NodeInput, *,
                 link: str = "feishu", on_resync: ResyncCallback = _ignore_resync,
                 on_events: EventsCallback | None = None, on_store: StoreCallback | None = None,
                 child_args: Sequence[str] = (), python: str = sys.executable,
                 silence: float = SILENCE, startup_timeout: float = 180.0,
                 backoff_initial: float = 1.0, backoff_max: float = 60.0,
                 healthy_after: float = 60.0, kill_grace: float = 5.0,
                 stop_grace: float = 0.5) -> None:
        if silence <= 0 or startup_timeout <= 0 or backoff_initial <= 0:
            raise ValueError("silence, startup_timeout and backoff_initial must be positive")
        self.config_path = Path(config_path)
        self._node = node
        self._link = link
        self._on_resync = on_resync
        self._on_events = on_events
        self._on_store = on_store
        self._child_args = list(child_args)
        self._python = python
        self._silence = silence
        self._startup_timeout = startup_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._healthy_after = healthy_after
        self._kill_grace = kill_grace
        self._stop_grace = stop_grace
        self._stop = threading.Event()
        # Set on the child's EOF and on close(): the monitor blocks on it (no polling) until then
        # or until the child's silence limit runs out.
        self._monitor_wake = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_listen: str | None = None
        self._ready_pid: int | None = None
        self._link_up = False
        self._starts = 0
        self._last_exit: int | None = None
        self._refused: str | None = None
        self._fatal: str | None = None  # the current child's last words ("fatal" line)
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._fd_reserve = FdReserve()

    # -- public API -------------------------------------------------------------------------------

    def __enter__(self) -> IntakeSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Spawn the child and the threads watching it; returns at once."""
        if self._threads:
            raise RuntimeError("IntakeSupervisor already started")
        for target, name in ((self._monitor, "intake-monitor"),
                             (self._dispatch, "intake-callbacks")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop the child (EOF on its stdin, then SIGTERM, then SIGKILL) and the threads."""
        self._stop.set()  # the monitor thread ends the child: it may be spawning one right now
        self._monitor_wake.set()
        for t in self._threads[:1]:  # the monitor may still queue a set_link(down)...
            t.join(timeout=self._kill_grace * 3 + 5)
        self._calls.put(None)  # ...which the callback thread runs before this end mark
        for t in self._threads[1:]:
            t.join(timeout=self._kill_grace * 3 + 5)
        self._threads.clear()
        self._fd_reserve.release()

    @property
    def ready_listen(self) -> str | None:
        """``host:port`` the current webhook child listens on (``None`` until it is ready or
        for a long connection)."""
        with self._lock:
            return self._ready_listen

    @property
    def ready_pid(self) -> int | None:
        """Process id of the child that reported ready, while it runs."""
        with self._lock:
            return self._ready_pid

    @property
    def pid(self) -> int | None:
        """Process id of the current child, if one runs."""
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    @property
    def starts(self) -> int:
        """How many children were spawned so far."""
        with self._lock:
            return self._starts

    @property
    def refused(self) -> str | None:
        """Why the child refused its config (then it is not restarted), or ``None``."""
        with self._lock:
            return self._refused

    @property
    def running(self) -> bool:
        """Whether the supervisor still runs (or restarts) a child."""
        return bool(self._threads) and self._threads[0].is_alive()

    @property
    def last_failure(self) -> str | None:
        """Why the most recent child that ended failed, as it said (its ``fatal`` line)."""
        with self._lock:
            return self._fatal

    @property
    def last_exit(self) -> int | None:
        """Exit code of the most recent child that ended (negative: killed by that signal)."""
        with self._lock:
            return self._last_exit

    def request_resync(self, reason: str) -> bool:
        """Ask the running child for a full re-sync pass (a no-op when re-sync is off);
        False when no child runs."""
        with self._lock:
            proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(json.dumps({"resync": reason}).encode() + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):  # the child is going; the next one re-syncs at start
            return False
        return True

    # -- the children -----------------------------------------------------------------------------

    def _monitor(self) -> None:
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                code = self._run_child()
            except OSError as exc:
                log.error("cannot start the Feishu intake (%s): %s", self._python, exc)
                code = None
            if self._stop.is_set():
                return
            if code == EXIT_REFUSED:
                reason = self.refused or f"Feishu intake refused {self.config_path}"
                log.error("Feishu intake refused its configuration, not restarting until it "
                          "changes: %s", reason)
                self._call(functools.partial(self._node.set_link, self._link, False, reason))
                return
            # systemd stops a unit by signalling every process of its group at once, so the
            # child may die of SIGTERM a moment before the node's own stop reaches us: give
            # that stop a moment rather than log a restart that is not going to happen.
            if code == -signal.SIGTERM and self._stop.wait(self._stop_grace):
                return
            if time.monotonic() - started >= self._healthy_after:
                backoff.reset()
            delay = backoff.next()
            log.warning("Feishu intake %s; restarting in %.0f s", self._ending(code), delay)
            if self._stop.wait(delay):
                return

    def _ending(self, code: int | None) -> str:
        """How the child ended, for the restart log line (a signal by its name)."""
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"was killed by {name}"
        else:
            what = f"exited with code {code}"
        if code == 2:
            what += " (configuration or credentials rejected)"
        cause = self.last_failure
        return what + (f": {cause}" if cause and code != 0 else "")

    def _run_child(self) -> int:
        """Spawn one child, watch it until it exits, return its exit code."""
        cmd = [self._python, "-m", "display.intake.feishu", "-c", str(self.config_path),
               "--alive-interval", f"{max(0.2, min(5.0, self._silence / 4)):g}",
               *self._child_args]
        with self._fd_reserve.spent():  # a node at its file limit still starts its child
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=None, close_fds=True)
        with self._lock:
            self._proc = proc
            self._starts += 1
            self._fatal = None
        log.info("started Feishu intake pid %d", proc.pid)
        last_line = [time.monotonic(), False]  # time of the newest line, any line seen yet
        eof = threading.Event()
        wake = self._monitor_wake
        assert proc.stdout is not None  # we asked for a pipe
        reader = threading.Thread(target=self._read, args=(proc, proc.stdout, last_line, eof),
                                  name=f"intake-reader-{proc.pid}", daemon=True)
        reader.start()
        while True:
            wake.clear()  # before the checks: a set() after them ends the wait below at once
            if eof.is_set():
                break
            if self._stop.is_set():
                self._terminate(proc, gentle=True)
                break
            limit = self._silence if last_line[1] else self._startup_timeout
            quiet = time.monotonic() - float(last_line[0])
            if quiet > limit:
                reason = f"intake not responding (silent for {quiet:.0f} s)"
                log.error("Feishu intake pid %d %s: killing it", proc.pid, reason[7:])
                with self._lock:
                    self._link_up = False
                # Shown at once, not after the kill: the link is not up while nobody answers.
                self._call(functools.partial(self._node.set_link, self._link, False, reason))
                self._terminate(proc, gentle=False, hung=True)
                break
            # Asleep until EOF, close() or the silence limit: no periodic wake-ups.
            wake.wait(limit - quiet + 0.05)
        code = proc.wait()
        reader.join(timeout=5)
        with self._lock:
            self._proc = None
            self._ready_listen = None
            self._ready_pid = None
            self._last_exit = code
            was_up, self._link_up = self._link_up, False
            fatal = self._fatal if code != 0 else None
        if fatal is not None or was_up:  # the cause the child gave, else its exit code
            reason = fatal or f"intake process exited (code {code})"
            self._call(lambda: self._node.set_link(self._link, False, reason))
        return code

    def _terminate(self, proc: subprocess.Popen[bytes], *, gentle: bool,
                   hung: bool = False) -> None:
        """Stop ``proc``: close its stdin (gentle), then SIGTERM, then SIGKILL; a ``hung`` one
        at once with SIGKILL."""
        steps: list[Callable[[], None]] = [proc.kill] if hung else [proc.terminate, proc.kill]
        if gentle and proc.stdin is not None:
            steps.insert(0, proc.stdin.close)
        for step in steps:
            with contextlib.suppress(OSError):  # already gone, or the pipe already closed
                step()
            try:
                proc.wait(timeout=self._kill_grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _read(self, proc: subprocess.Popen[bytes], stream: IO[bytes], last_line: list[Any],
              eof: threading.Event) -> None:
        try:
            for raw in stream:
                last_line[0] = time.monotonic()
                if not last_line[1]:  # the limit drops from startup_timeout to silence
                    last_line[1] = True
                    self._monitor_wake.set()
                self._handle_line(proc.pid, raw)
        except (OSError, ValueError) as exc:
            log.warning("reading from Feishu intake pid %d failed: %s", proc.pid, exc)
        finally:
            eof.set()
            self._monitor_wake.set()

    def _handle_line(self, pid: int, raw: bytes) -> None:
        """Validate one protocol line and queue its callback; garbage is logged, not fatal."""
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            log.warning("Feishu intake pid %d wrote a line that is not a JSON object: %.200r",
                        pid, raw)
            return
        if msg.get("ready") is True:
            listen = msg.get("listen")
            with self._lock:
                self._ready_listen = listen if isinstance(listen, str) else None
                self._ready_pid = pid
            log.info("Feishu intake pid %d ready (%s%s)", pid, msg.get("mode"),
                     f" on {listen}" if isinstance(listen, str) else "")
        elif "changed" in msg:
            rooms = msg["changed"]
            if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
                log.warning("Feishu intake pid %d: bad 'changed' line: %.200r", pid, raw)
                return
            changed = frozenset(rooms)
            self._call(lambda: self._node.notify(changed))
        elif "link" in msg:
            state, error = msg["link"], msg.get("error")
            if state not in ("up", "down") or not (error is None or isinstance(error, str)):
                log.warning("Feishu intake pid %d: bad 'link' line: %.200r", pid, raw)
                return
            up = state == "up"
            with self._lock:
                self._link_up = up
            self._call(lambda: self._node.set_link(self._link, up,
                                                   None if up else (error or "link down")))
        elif "resync" in msg:
            report = ResyncReport.from_line(msg["resync"])
            if report is None:
                log.warning("Feishu intake pid %d: bad 'resync' line: %.200r", pid, raw)
                return
            self._call(lambda: self._on_resync(report))
        elif "events" in msg:
            counts = msg["events"]
            if not (isinstance(counts, dict) and all(
                    isinstance(k, str) and _is_count(v) for k, v in counts.items())):
                log.warning("Feishu intake pid %d: bad 'events' line: %.200r", pid, raw)
                return
            if self._on_events is not None:
                on_events = self._on_events
                self._call(lambda: on_events(dict(counts)))
        elif "store" in msg:
            store = msg["store"]
            ok = store.get("ok") if isinstance(store, dict) else None
            error = store.get("error") if isinstance(store, dict) else None
            if not isinstance(ok, bool) or not (error is None or isinstance(error, str)):
                log.warning("Feishu intake pid %d: bad 'store' line: %.200r", pid, raw)
                return
            if self._on_store is not None:
                on_store = self._on_store
                self._call(lambda: on_store(ok, error))
        elif "fatal" in msg:
            reason = msg["fatal"]
            if not isinstance(reason, str):
                log.warning("Feishu intake pid %d: bad 'fatal' line: %.200r", pid, raw)
                return
            with self._lock:
                self._fatal = reason[:500]
        elif "refused" in msg:
            reason = msg["refused"]
            with self._lock:
                self._refused = reason[:500] if isinstance(reason, str) else "config refused"
        elif "alive" in msg:
            if not isinstance(msg["alive"], int | float):
                log.warning("Feishu intake pid %d: bad 'alive' line: %.200r", pid, raw)
        else:
            log.warning("Feishu intake pid %d wrote an unknown line: %.200r", pid, raw)

    # -- callbacks --------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        self._calls.put(fn)

    def _dispatch(self) -> None:
        while True:
            fn = self._calls.get()  # blocks: close() queues None as the end mark
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a callback's bug must not stop later callbacks
                log.exception("intake callback failed")
