"""JSON from someone else, bounded before it is parsed: size first, nesting depth second.

The C decoder behind :func:`json.loads` recurses once per ``[`` or ``{``, so ``[[[[…`` nested
a few thousand deep (a few kilobytes) ends in a RecursionError, and a result nested a few
hundred deep can still blow the stack of whatever walks it later (a status document's
``local_times``). :func:`loads` therefore refuses, before decoding:

- a payload over ``max_bytes`` (unread: only its length is looked at);
- a payload whose arrays and objects nest deeper than ``max_depth``: a linear scan of the
  brackets outside strings (strings are cut out with one regular expression first).

Every refusal is an :class:`~display.errors.EventError` naming ``what`` in one line.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from display.errors import EventError

#: Deep enough for every payload the nodes exchange (a schedule nests 3 levels, a node status 3).
MAX_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text ``raw`` (brackets in strings skipped).

    On text that is not JSON (an unterminated string) the answer may be too high, never too low
    for the part that :func:`json.loads` would parse.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(raw: bytes | str, *, what: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode JSON text ``raw`` (UTF-8 when bytes) no longer than ``max_bytes`` and nested at
    most ``max_depth`` deep; :class:`~display.errors.EventError` (field ``what``) otherwise."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise EventError(what, f"{len(data)} bytes, more than the {max_bytes} allowed")
    # Fewer brackets than the limit cannot nest deeper: every real payload skips the scan.
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data) > max_depth:
        raise EventError(what, f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except RecursionError:  # not reachable after the scan; kept so nothing can escape as one
        raise EventError(what, f"JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError(what, f"not JSON ({_one_line(exc)})") from None


def _one_line(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 200 else text[:200] + "…"
