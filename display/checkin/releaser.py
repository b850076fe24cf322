"""Run the Feishu release helper (:mod:`display.intake.feishu.release`) for one booking.

A process per release: releases are rare (a few a day per room), the node never imports
``lark_oapi``, and a helper that hangs is killed without touching the intake child.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from display.model import Booking

log = logging.getLogger(__name__)

#: Seconds the reply itself may take; the helper as a whole gets this plus its start-up and two
#: free/busy reads.
REPLY_TIMEOUT = 10.0
HELPER_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The helper's answer: ``released``, ``refused``, ``unknown``, ``gone``, ``series`` or
    ``failed`` (see :mod:`display.intake.feishu.release`), and a one-line detail."""

    outcome: str
    detail: str


#: ``release(config_path, room_id, booking, status) -> Outcome``; tests may pass their own.
Releaser = Callable[[Path, str, Booking, str], Outcome]


def run_helper(config_path: Path, room_id: str, booking: Booking, status: str, *,
               python: str = sys.executable, reply_timeout: float = REPLY_TIMEOUT,
               timeout: float = HELPER_TIMEOUT) -> Outcome:
    """Ask Feishu once, through the helper process; never raises."""
    request = {"room_id": room_id, "uid": booking.uid, "original_time": booking.original_time,
               "start": int(booking.start.timestamp()), "end": int(booking.end.timestamp()),
               "status": status, "timeout": reply_timeout}
    try:
        done = subprocess.run(
            [python, "-m", "display.intake.feishu.release", "-c", str(config_path)],
            input=json.dumps(request).encode(), stdout=subprocess.PIPE, stderr=None,
            timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Outcome("unknown", f"the release helper took over {timeout:.0f} s: not sent again")
    except OSError as exc:
        return Outcome("failed", f"cannot start the release helper: {exc}")
    try:
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return Outcome(str(answer["outcome"]), str(answer.get("detail", "")))
    except (ValueError, IndexError, KeyError, TypeError):
        # It may have died after sending: the outcome cannot be known.
        return Outcome("unknown", f"the release helper exited with code {done.returncode} "
                       "without an answer: not sent again")
