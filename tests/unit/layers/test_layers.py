"""The package reads top to bottom: no import loops, no import from a lower layer to a higher one.

``LAYERS`` is the one place the order is written down (docs/CONTRIBUTING.md, "Layout", follows
it). A module may import from its own top-level unit (module or package under ``display/``) and
from units on lower layers; nothing else. Every import counts: module level, inside functions
and under ``TYPE_CHECKING``, since each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import display

PACKAGE = Path(display.__file__).resolve().parent

#: Lowest first. Units on one line are peers and must not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("display", "errors"),                       # the version, the one exception tree
    ("model", "clock", "outputs", "systemd", "watch", "hours",  # values, OS glue,
     "backoff", "files", "unchanged", "jsonbound",   # helpers said once
     "ratelimit", "fdreserve", "memory"),
    ("headline",),                               # what a person reads: the one "until" rule
    ("config_schema",),                                              # fields -> TOML keys
    ("config",),                                                     # TOML -> values
    ("details",),                                # what a sign may say of who and what
    ("store", "occupancy", "freshness", "render", "encode"),        # the pure stages
    ("storeopen", "outbox"),                     # the store, whatever is on disk; replication
    ("transport",),                                                  # bytes -> somewhere
    ("devices", "intake"),                       # renderer + encoder + transport; the feeds
    #                                              (intake.feishu.rawapi: every raw Feishu call)
    ("checkin",),                                # check-in policy, ledger, release, control
    ("node",),                                   # the loop (a NodeInput for intake)
    ("status",),                                 # the loop's snapshot, read back
    ("publish", "web"),                          # what the node feeds
    ("mqtt_roles",),                             # MQTT roles wired to a node
    ("app",),                                    # everything wired
    ("cli", "testing"),                          # the command line, the fakes
    ("__main__",),                               # ``python -m display``
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["display", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package modules that ``name`` imports (``from pkg import module`` resolved)."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "display"


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: set(imports(name, path, set(mods))) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer() -> None:
    missing = sorted({unit(m) for m in modules()} - set(LAYER))
    assert not missing, f"place these in LAYERS: {missing}"


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    bad = sorted(f"{src} -> {dst}" for src, dsts in graph().items() for dst in dsts
                 if unit(src) != unit(dst)
                 and LAYER.get(unit(dst), -1) >= LAYER.get(unit(src), len(LAYERS)))
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_loop_between_modules() -> None:
    assert cycles(graph()) == []


def test_no_import_loop_between_units() -> None:
    edges: dict[str, set[str]] = {}
    for src, dsts in graph().items():
        edges.setdefault(unit(src), set()).update(unit(d) for d in dsts if unit(d) != unit(src))
    assert cycles(edges) == []


@pytest.mark.parametrize("module", ["lark_oapi"])
def test_lark_oapi_only_in_the_feishu_child(module: str) -> None:
    """The parent, the agent and the panels never import the Feishu SDK (start-up, memory)."""
    allowed = ("display.intake.feishu", "display.testing")
    bad = []
    for name, path in modules().items():
        if name.startswith(allowed) and name != "display.intake.feishu.__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [name for n in names if n.split(".")[0] == module]
    assert not bad, f"{module} imported outside the Feishu child: {sorted(set(bad))}"


def test_feishu_requests_go_through_rawapi() -> None:
    """One module sends raw Feishu requests and decodes the answers (status, JSON, code, rate
    limits): the rest of the Feishu intake asks it, never the SDK's token client directly."""
    sender = "display.intake.feishu.rawapi"
    bad = []
    for name, path in modules().items():
        if name in (sender, "display.intake.feishu.sdk"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "display.intake.feishu.sdk":
                bad += [f"{name}: {a.name}" for a in node.names
                        if a.name in ("TenantClient", "ObtainAccessTokenException", "core")]
    assert not bad, f"raw Feishu requests outside {sender}: {sorted(bad)}"
    assert LAYER[unit(sender)] == LAYER["intake"]


def test_the_check_sees_a_loop_and_an_upward_import() -> None:
    """The checks above can fail: a loop and an upward edge are found in a made-up graph."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert LAYER["store"] < LAYER["node"] and LAYER["transport"] < LAYER["devices"]
