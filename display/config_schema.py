"""How a frozen dataclass states one section of the TOML configuration, once.

Each field of a section's dataclass is one key: its name is the key, its default the key's
default, its type the TOML type (an enum's members are the closed set of values), and
:func:`setting` adds what a type cannot say: a check (which may also convert, e.g. ``"800x480"``
to ``(800, 480)``), the word for an enum's values in errors, and other spellings. A field
without a default is read as ``""`` when its key is absent, so that its check says what is
missing.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

#: A field's check: returns the value (possibly converted) or raises :class:`Invalid`.
Check = Callable[[Any], Any]


class Invalid(ValueError):
    """A value a check refuses; the parser makes it the line ``file: key: problem (fix)``."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            check: Check | None = None, what: str = "", aliases: tuple[str, ...] = (),
            custom: bool = False) -> Any:
    """A dataclass field that is also a TOML key.

    ``check`` runs on a value read from the file (defaults are valid by construction);
    ``what`` names an enum's values in errors (``'x' is not {what}``, default "supported");
    ``aliases`` are other accepted spellings (``colors``); ``custom`` keys are allowed but read
    by the section's own code.
    """
    metadata = {"check": check, "what": what, "aliases": aliases, "custom": custom}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rule(ok: Callable[[Any], object], problem: str, fix: str = "") -> Check:
    """A check refusing a value for which ``ok`` is false; ``problem`` may name ``{value}``."""
    def check(value: Any) -> Any:
        if not ok(value):
            raise Invalid(problem.format(value=value), fix)
        return value
    return check


def keys(section: type) -> set[str]:
    """Every key a section accepts: its fields' names and their other spellings."""
    return {name for f in dataclasses.fields(section)
            for name in (f.name, *f.metadata.get("aliases", ()))}


@functools.cache
def hints(section: type) -> Mapping[str, Any]:
    """The section's field types, resolved (the modules use ``from __future__ import
    annotations``)."""
    return typing.get_type_hints(section)


def value_type(hint: Any) -> Any:
    """The type a value of ``hint`` has once read: ``X | None`` is ``X``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def toml_type(hint: Any) -> type:
    """The TOML type of a key: bool, int, a table, or a string (enums, paths, secrets, sizes
    are written as strings)."""
    t = value_type(hint)
    origin = typing.get_origin(t) or t
    if origin is bool or origin is int:
        return bool if origin is bool else int
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return Mapping
    return str


def default(f: dataclasses.Field[Any]) -> Any:
    """A field's default, or ``dataclasses.MISSING`` for a field without one."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def use(choices: type[Enum] | tuple[str, ...]) -> str:
    """The fix naming a closed set: a pair reads ``use "a" or "b"``, more ``use a | b | c``."""
    values = [str(c.value) if isinstance(c, Enum) else c for c in choices]
    if len(values) == 2:
        return f'use "{values[0]}" or "{values[1]}"'
    return "use " + " | ".join(values)


def choose(enum: type[Enum], value: str, what: str = "") -> Any:
    """``value`` as a member of ``enum``, or :class:`Invalid` naming the choices."""
    try:
        return enum(value)
    except ValueError:
        raise Invalid(f"{value!r} is not {what or 'supported'}", use(enum)) from None
