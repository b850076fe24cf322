"""Block until a file may have changed: Linux inotify on its directory, a slow poll elsewhere.

The config watcher used to stat the file every second, which woke an idle node once a second for
nothing. :func:`wait_for_changes` sleeps in ``read()`` on an inotify descriptor instead, so the
thread runs only when something in the file's directory was written, created, renamed or had its
attributes changed (editors and ``map`` replace the file by a rename, hence the directory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x002, 0x004, 0x008
IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x080, 0x100, 0x200
IN_CLOEXEC = 0o2000000
_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE

#: Seconds without further changes in the directory before the file is looked at.
SETTLE = 0.25
#: Seconds between stats where inotify is unavailable (not Linux, or out of watches).
POLL_FALLBACK = 2.0


def _inotify_fd(directory: Path) -> int | None:
    """An inotify descriptor watching ``directory``, or ``None`` (logged) if there is none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fd = int(libc.inotify_init1(IN_CLOEXEC))
    except (OSError, AttributeError) as exc:
        log.info("no inotify (%s): checking %s every %.0f s", exc, directory, POLL_FALLBACK)
        return None
    if fd < 0:
        log.info("inotify_init1 failed (%s): polling", os.strerror(ctypes.get_errno()))
        return None
    if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
        log.info("cannot watch %s (%s): polling every %.0f s", directory,
                 os.strerror(ctypes.get_errno()), POLL_FALLBACK)
        os.close(fd)
        return None
    return fd


def watch_file(path: Path, on_change: Callable[[], object], stop: threading.Event,
               name: str = "file-watch") -> threading.Thread:
    """Call ``on_change`` (on a daemon thread) each time ``path``'s size, mtime or inode changes.

    Between changes the thread sleeps in ``read()`` on inotify, waking only when the file's
    directory sees a write; without inotify it stats every :data:`POLL_FALLBACK` seconds.
    """
    def signature() -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    # Both before the thread starts: an edit made right after this call must not fall between
    # the first signature and the watch being in place.
    last = signature()
    watch_fd = _inotify_fd(path.parent)

    def loop() -> None:
        nonlocal last
        fd = watch_fd
        while not stop.is_set():
            if fd is None:
                if stop.wait(POLL_FALLBACK):
                    return
            else:
                try:
                    os.read(fd, 64 * 1024)  # blocks until the directory changes
                    # Let a multi-step save (write, then chmod/utime/rename) finish first, so
                    # one edit is one reload and a half-written file is not parsed.
                    while select.select([fd], [], [], SETTLE)[0]:
                        os.read(fd, 64 * 1024)
                except OSError as exc:
                    log.warning("inotify read failed (%s): polling %s", exc, path)
                    os.close(fd)
                    fd = None
                    continue
            current = signature()
            if current != last and current is not None and not stop.is_set():
                last = current
                on_change()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
