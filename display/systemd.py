"""Talk to systemd: ``sd_notify`` (READY, STATUS, WATCHDOG) and the clock-synchronised flag.

Both are a few lines over documented interfaces, so no extra dependency is pulled onto the Pi.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

#: systemd-timesyncd creates this directory while it runs, and the file once the clock is synced.
TIMESYNC_DIR = Path("/run/systemd/timesync")


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


class ClockSync:
    """Is the wall clock trustworthy? (``[node] clock = "auto" | "trust"``)

    A Pi has no RTC and boots with the time it shut down at. With ``auto`` the node waits for
    systemd-timesyncd's synchronised flag where timesyncd runs, and trusts the clock where it
    does not (containers, CI, a machine with another NTP daemon).
    """

    def __init__(self, mode: str = "auto", timesync_dir: Path = TIMESYNC_DIR) -> None:
        self.mode = mode
        self.timesync_dir = timesync_dir

    def __call__(self) -> bool:
        if self.mode == "trust":
            return True
        if not self.timesync_dir.is_dir():
            return True
        return (self.timesync_dir / "synchronized").exists()
