"""Replay Feishu envelopes from a JSON-lines file through the normal intake path.

For debugging (feed a captured day back in) and for the demo. One envelope per line; blank lines
and lines starting with ``#`` are skipped. A bad line is reported as ``file:line: reason`` and the
replay goes on; a store failure stops it (:class:`~display.errors.StoreError` propagates).
No ``lark_oapi`` here: replay does not talk to Feishu.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from display.errors import EventError, RoomDisplayError
from display.intake.sink import EventSink, Verdict

log = logging.getLogger(__name__)


class ReplayError(RoomDisplayError, OSError):
    """The replay file cannot be read (missing, a directory, not text)."""


@dataclass
class ReplayReport:
    """What a replay did: counts per verdict, the rooms changed, one line per bad input."""

    path: Path
    lines: int = 0
    verdicts: Counter[Verdict] = field(default_factory=Counter)
    changed: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return self.verdicts[Verdict.APPLIED]

    @property
    def ok(self) -> bool:
        """True when every event line was accepted (applied, duplicate, superseded, ignored)."""
        return not self.errors

    def summary(self) -> str:
        """One line for a log or the CLI."""
        counts = ", ".join(f"{self.verdicts[v]} {v.value}" for v in Verdict if self.verdicts[v])
        return (f"{self.path}: {self.lines} events: {counts or 'none accepted'}"
                f"{f', {len(self.errors)} rejected' if self.errors else ''}")


def replay_file(path: str | PathLike[str], sink: EventSink) -> ReplayReport:
    """Feed every envelope in ``path`` to ``sink``.

    Raises :class:`ReplayError` (one line) when the file cannot be read at all: missing, a
    directory, not UTF-8.
    """
    report = ReplayReport(Path(path))
    try:
        _replay_lines(report, sink)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ReplayError(f"cannot replay {report.path}: {reason}") from None
    for error in report.errors:
        log.warning("replay: %s", error)
    log.info("replay: %s", report.summary())
    return report


def _replay_lines(report: ReplayReport, sink: EventSink) -> None:
    with open(report.path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            report.lines += 1
            where = f"{report.path}:{number}"
            try:
                raw = json.loads(text)
            except ValueError as exc:
                report.errors.append(f"{where}: malformed JSON: {exc}")
                continue
            except RecursionError:  # '[[[[...' deeper than Python's stack
                report.errors.append(f"{where}: JSON nested too deeply")
                continue
            try:
                accepted = sink.accept(raw)
            except EventError as exc:
                report.errors.append(f"{where}: {exc}")
                continue
            report.verdicts[accepted.verdict] += 1
            report.changed |= accepted.changed
