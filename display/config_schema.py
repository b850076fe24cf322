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
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from display.errors import ConfigError

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


class Reader:
    """Walks a TOML tree read from ``path``, naming each key by its dotted path in errors."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), key, problem, fix)

    def table(self, data: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table", f"write [{key}]")
        return self.known(value, key, allowed)

    def known(self, t: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
        unknown = sorted(set(t) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key",
                            "allowed: " + ", ".join(sorted(allowed)))
        return t

    def get(self, t: Mapping[str, Any], key: str, name: str, kind: type, default: Any) -> Any:
        if name not in t:
            return default
        value = t[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(f"{key}.{name}", f"must be {_type_word(kind)}, got {value!r}")
        return value

    def section(self, data: Mapping[str, Any], key: str, section: type) -> dict[str, Any]:
        """Table ``key`` of ``data`` read as ``section``: unknown keys refused, then each key."""
        return self.values(self.table(data, key, keys(section)), key, section)

    def values(self, t: Mapping[str, Any], key: str, section: type,
               names: Collection[str] | None = None) -> dict[str, Any]:
        """The keys of ``section`` (or those ``names``) read from table ``t``, in field order;
        custom keys are left to the caller."""
        return {f.name: self.value(t, key, f, hints(section)[f.name])
                for f in dataclasses.fields(section)
                if not f.metadata.get("custom") and (names is None or f.name in names)}

    def value(self, t: Mapping[str, Any], key: str, f: dataclasses.Field[Any], hint: Any) -> Any:
        """One key: its default when absent (a field without one is read as ``""``), else the
        value type-checked, converted to the field's type and checked."""
        name = f.name
        fallback = default(f)
        if name not in t and fallback is not dataclasses.MISSING:
            return fallback
        full = f"{key}.{name}"
        raw = self.get(t, key, name, toml_type(hint), "")
        try:
            value = self.convert(raw, value_type(hint), f)
            check = f.metadata.get("check")
            return check(value) if check else value
        except Invalid as exc:
            raise self.fail(full, exc.problem, exc.fix) from None

    def convert(self, raw: Any, kind: type, f: dataclasses.Field[Any]) -> Any:
        """A TOML value as the field's type: here an enum member; a subclass adds its types."""
        if isinstance(kind, type) and issubclass(kind, Enum):
            return choose(kind, raw, f.metadata.get("what", ""))
        return raw


def _type_word(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false",
            Mapping: "a table"}.get(kind, kind.__name__)
