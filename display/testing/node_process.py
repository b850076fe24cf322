"""A real ``room-display run`` in a process group of its own, as systemd runs the unit.

:meth:`NodeProcess.kill` SIGKILLs the whole group (the node and its Feishu intake child at once,
as a crash or ``systemctl kill -s KILL`` does) and :meth:`NodeProcess.start` starts it again on
the same config and state, as ``Restart=`` would. Used by the kill -9 soak (bench and tests).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class NodeExited(AssertionError):
    """The node process ended on its own (its log's tail is in the message)."""


class NodeProcess:
    """``python -m display run -c CONFIG``; its output appended to ``log`` across restarts."""

    def __init__(self, config: Path, log: Path, *, webhook: tuple[str, int] | None = None) -> None:
        """``webhook`` is where its intake listens, for :meth:`webhook_up`."""
        self.config = config
        self.log = log
        self.webhook = webhook
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.perf_counter() of the latest start
        self.starts = 0

    def start(self) -> None:
        """Spawn the node in a new session (its own process group, the intake child in it)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)  # not under systemd here
        with self.log.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "display", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        """True while it runs; raises :class:`NodeExited` with the log's tail once it ended."""
        if self.proc is None or self.proc.poll() is None:
            return self.proc is not None
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        raise NodeExited(f"the node exited with {self.proc.returncode}:\n" + "\n".join(tail))

    def webhook_up(self) -> bool:
        """The webhook intake answers ``GET /healthz`` with 200 (raises once the node ended)."""
        if self.webhook is None or not self.alive():
            return False
        conn = http.client.HTTPConnection(*self.webhook, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL the whole process group: no goodbye, no flush, nothing runs on."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # it already ended: alive() says how
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM the group and wait; SIGKILL it if it does not end within 20 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.proc = None

    def tracebacks(self) -> int:
        """How many Python tracebacks its log holds (there should be none)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Traceback (most recent call last)")
