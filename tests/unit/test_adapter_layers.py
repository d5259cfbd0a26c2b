"""The adapter's layer contract: no import cycle, and each layer imports only the layers below it.

Every module under ``adapter/`` is parsed with :mod:`ast` (nothing is imported or run); every
``import``/``from ... import`` counts, including those inside functions and ``TYPE_CHECKING``
blocks. Runs in ``make lint`` and with the unit tests. When a new dependency between layers is
really intended, change :data:`LAYERS` below and the table in ARCHITECTURE.md together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "adapter"

#: What the whole adapter may use: its one error hierarchy, its /metrics registry, label selectors.
FOUNDATION = frozenset({"adapter.errors", "adapter.telemetry", "adapter.selectors"})
#: The provider interface and the value types every layer above the foundation speaks.
INTERFACE = FOUNDATION | {"adapter.provider.base"}
_TOOLS = INTERFACE | {"adapter.rules", "adapter.kube", "adapter.provider.prometheus"}
_APP = _TOOLS | {"adapter.apiserver", "adapter.provider.static", "adapter.tools"}

#: layer -> the layers it may import (besides its own modules). A module belongs to the longest
#: layer name that is its name or a prefix of it (``adapter.rules.promql`` -> ``adapter.rules``).
LAYERS: dict[str, frozenset[str]] = {
    "adapter": frozenset(),  # the package docstring only (see PACKAGE_ONLY)
    "adapter.errors": frozenset(),
    "adapter.telemetry": frozenset(),
    "adapter.selectors": frozenset({"adapter.errors"}),
    "adapter.provider": frozenset(),  # the sub-package's __init__
    "adapter.provider.base": FOUNDATION,
    # prometheus-adapter's rule engine: config, Go templates, naming, resources, PromQL
    "adapter.rules": INTERFACE,
    # cluster access: API client, resource mappers, watch cache
    "adapter.kube": INTERFACE,
    # the providers: behind the interface; never HTTP, never the cluster client
    "adapter.provider.static": INTERFACE,
    "adapter.provider.prometheus": INTERFACE | {"adapter.rules"},
    # the aggregated API server: wire formats only (never PromQL, rules or a concrete provider)
    "adapter.apiserver": INTERFACE,
    # explain and lint: use the Prometheus provider, the rules and the mappers
    "adapter.tools": frozenset(_TOOLS),
    # the composition root, then the flags, then ``python -m adapter``
    "adapter.app": frozenset(_APP),
    "adapter.cli": frozenset(_APP | {"adapter.app"}),
    "adapter.__main__": frozenset({"adapter.cli"}),
}
#: Layers that are a package's ``__init__`` only: their sub-modules belong to other layers.
PACKAGE_ONLY = frozenset({"adapter", "adapter.provider"})


# --------------------------------------------------------------------------------------------
# The checker (pure functions over a module graph, so it can be tested on a made-up graph)
# --------------------------------------------------------------------------------------------


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, known: Iterable[str], *, is_package: bool = False) -> set[str]:
    """The ``known`` modules that ``module``'s source imports (``from a import b`` counts as ``a.b``
    when that is a module, else as ``a``)."""
    known = set(known)
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        out.update(name for name in names if name in known and name != module)
    return out


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> adapter modules it imports, for every module of ``package``."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    return {
        name: imported_modules(path.read_text(), name, files, is_package=path.name == "__init__.py")
        for name, path in files.items()
    }


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (as a path that ends where it starts) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_path(graph, set(group)) for group in groups]


def _cycle_path(graph: Mapping[str, Iterable[str]], group: set[str]) -> list[str]:
    start = min(group)
    path, seen = [start], {start}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in group)
        path.append(nxt)
        if nxt in seen:
            return path[path.index(nxt) :]
        seen.add(nxt)


def layer_of(module: str, layers: Iterable[str]) -> str | None:
    matches = [
        layer
        for layer in layers
        if module == layer or (module.startswith(layer + ".") and layer not in PACKAGE_ONLY)
    ]
    return max(matches, key=len) if matches else None


def layer_violations(graph: Mapping[str, Iterable[str]], layers: Mapping[str, Iterable[str]]) -> list[str]:
    """Every import that crosses into a layer its layer may not use, and every module in no layer."""
    problems = []
    for module in sorted(graph):
        own = layer_of(module, layers)
        if own is None:
            problems.append(f"{module} belongs to no layer: add it to LAYERS")
            continue
        for target in sorted(graph[module]):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs != own and theirs not in layers[own]:
                allowed = ", ".join(sorted(layers[own])) or "nothing of the adapter"
                problems.append(f"{module} imports {target}: {own} may import only {allowed}")
    return problems


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


def test_every_layer_exists_and_no_layer_is_empty() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    for layer, allowed in LAYERS.items():
        assert any(layer_of(m, LAYERS) == layer for m in graph), f"LAYERS names {layer}, which has no module"
        assert set(allowed) <= set(LAYERS), f"{layer} may import unknown layers {set(allowed) - set(LAYERS)}"


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_what_they_may() -> None:
    problems = layer_violations(import_graph(), LAYERS)
    assert not problems, "layer contract broken (see ARCHITECTURE.md):\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# The checker itself catches what it should (otherwise the contract could never fail)
# --------------------------------------------------------------------------------------------


def test_checker_reports_a_violating_edge() -> None:
    graph = {
        "adapter.apiserver.routes": {"adapter.rules.promql", "adapter.errors"},
        "adapter.rules.promql": {"adapter.errors", "adapter.selectors"},
        "adapter.rules.config": {"adapter.apiserver.status"},
        "adapter.errors": set(),
        "adapter.selectors": {"adapter.errors"},
        "adapter.apiserver.status": {"adapter.errors"},
        "adapter.newthing": set(),
    }
    assert layer_violations(graph, LAYERS) == [
        "adapter.apiserver.routes imports adapter.rules.promql: adapter.apiserver may import only "
        "adapter.errors, adapter.provider.base, adapter.selectors, adapter.telemetry",
        "adapter.newthing belongs to no layer: add it to LAYERS",
        "adapter.rules.config imports adapter.apiserver.status: adapter.rules may import only "
        "adapter.errors, adapter.provider.base, adapter.selectors, adapter.telemetry",
    ]


def test_checker_reports_cycles() -> None:
    graph = {
        "adapter.tools.explain": {"adapter.provider.prometheus.provider"},
        "adapter.provider.prometheus.provider": {"adapter.tools.explain", "adapter.errors"},
        "adapter.errors": set(),
        "a": {"b"},
        "b": {"c"},
        "c": {"a"},
        "selfish": {"selfish"},
    }
    cycles = find_cycles(graph)
    assert sorted(cycles) == [
        ["a", "b", "c", "a"],
        [
            "adapter.provider.prometheus.provider",
            "adapter.tools.explain",
            "adapter.provider.prometheus.provider",
        ],
        ["selfish", "selfish"],
    ]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_imports_are_found_everywhere_in_a_module() -> None:
    source = """
from __future__ import annotations
import json
from typing import TYPE_CHECKING
from adapter import telemetry
from adapter.errors import AdapterError
import adapter.rules.promql
from . import naming
from .templates import Template

if TYPE_CHECKING:
    from adapter.provider.prometheus.provider import PrometheusProvider

def lazy():
    from adapter.apiserver.status import error_response
"""
    known = {
        "adapter",
        "adapter.telemetry",
        "adapter.errors",
        "adapter.rules",
        "adapter.rules.promql",
        "adapter.rules.naming",
        "adapter.rules.templates",
        "adapter.rules.config",
        "adapter.provider.prometheus.provider",
        "adapter.apiserver.status",
    }
    assert imported_modules(source, "adapter.rules.config", known) == {
        "adapter.telemetry",
        "adapter.errors",
        "adapter.rules.promql",
        "adapter.rules.naming",
        "adapter.rules.templates",
        "adapter.provider.prometheus.provider",
        "adapter.apiserver.status",
    }
