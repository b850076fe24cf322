"""The process's memory after start-up: what the first pass used is given back, and what it
made for good is left alone by the garbage collector.

Two properties of the defaults cost a bridge with thousands of rooms dearly. glibc's allocator
keeps the peak of the first pass (every room read, computed, encoded and published) as free
memory inside the process, and its dynamic mmap threshold makes later blocks of a few MB (a
status document, a page's first message) come from that heap too, where a freed one may stay.
And each full collection of Python's garbage collector walks every object the first pass left
for good (the configuration, the rooms' views and bookings), holding the GIL while it does.

:func:`tune` fixes the mmap threshold (large blocks are mapped and unmapped as they come and
go) and caps the allocator's arenas; :func:`settle`, once the first pass is done, collects,
moves what is left out of the collector's reach (:func:`gc.freeze`) and hands free pages back
(``malloc_trim``). Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

#: mallopt's parameter numbers (malloc.h). Setting the mmap threshold also turns off glibc's
#: dynamic threshold.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Allocation arenas at most. glibc gives threads arenas of their own (up to eight a core), and
#: what one thread freed stays in its arena; the interpreter lets one thread run at a time, so
#: more arenas save no waiting and keep more freed memory.
ARENA_MAX = 2
#: Blocks this large or larger are mapped on their own and unmapped when freed: glibc's own
#: default before it adjusts it (up to 32 MB) after the first such block is freed.
MMAP_THRESHOLD = 128 * 1024


def _glibc() -> Any | None:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already has
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None  # musl and others: nothing to tune
    return libc


def tune() -> bool:
    """Fix the allocator's mmap threshold and its arenas; True when the C library took it."""
    libc = _glibc()
    return (libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX)))


def trim() -> None:
    """Hand free memory back to the system after a one-off peak (a page's first message)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def hold() -> None:
    """Before the first pass: no collections while it builds what will stay (at 20,000 rooms
    each full one walks a few hundred thousand objects, about fifteen times over);
    :func:`settle` collects once and turns the collector back on."""
    gc.disable()


def settle() -> int:
    """After the first pass: collect once, freeze what is left (later collections skip it),
    give free memory back to the system; the collector runs again. Returns the objects frozen."""
    gc.collect()
    gc.enable()
    gc.freeze()
    frozen = gc.get_freeze_count()
    trim()
    log.debug("memory settled: %d objects frozen", frozen)
    return frozen
