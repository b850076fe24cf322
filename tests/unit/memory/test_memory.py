"""After the first pass the node gives its peak back and keeps the collector off what stays."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from display import memory


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.enable()
    gc.unfreeze()  # the test process goes on: let its collector see everything again


@pytest.mark.skipif(memory._glibc() is None, reason="glibc only")
def test_settle_gives_a_freed_peak_back_and_freezes_what_stays(unfrozen: None) -> None:
    assert memory.tune()
    kept = [bytes(700) + bytes([i % 256]) for i in range(2000)]  # stays, as a config would
    peak = [bytes(600) + i.to_bytes(4, "little") for i in range(80_000)]  # ~50 MB, malloc'd
    del peak[::2]  # freed in a pattern that leaves no whole arena or top of heap free
    del peak[:]
    before = rss_mb()
    frozen = memory.settle()
    assert before - rss_mb() > 20  # MB handed back to the system
    assert frozen > 0 and gc.get_freeze_count() == frozen
    assert len(kept) == 2000


def test_no_glibc_no_tuning(monkeypatch: pytest.MonkeyPatch, unfrozen: None) -> None:
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.tune() is False
    memory.hold()
    assert not gc.isenabled()  # the first pass runs without collections
    assert memory.settle() >= 0  # the collector part still runs
    assert gc.isenabled()
