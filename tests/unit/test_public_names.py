"""Every name the tests, the example and the benchmarks take from the kit's packages exists.

``ruff --fix`` drops an import that a module no longer uses itself, even when tests reach it as
``module.name`` (``hpa.within`` vanished that way and three e2e scenarios failed after minutes on a
cluster). This reads the files, imports what they import and checks each ``module.attribute``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "adapter", "mockmetrics", "bench")


def _sources() -> list[Path]:
    files = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("examples/*/tests/*.py"), *ROOT.glob("bench/*.py")]
    return [p for p in files if ".venv" not in p.parts]


def _gaps(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text())
    modules: dict[str, ModuleType] = {}
    gaps = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            parent = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(parent, alias.name, None)
                if value is None:
                    try:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        gaps.append(f"from {node.module} import {alias.name}")
                        continue
                if isinstance(value, ModuleType):
                    modules[alias.asname or alias.name] = value
    # Names rebound somewhere (a local `hpa = ...` shadows the module); a dataclass field `hpa: str`
    # in a class body does not.
    fields = {id(stmt.target) for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
              for stmt in cls.body if isinstance(stmt, ast.AnnAssign)}  # fmt: skip
    stores = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    rebound = {n.id for n in stores if id(n) not in fields}
    rebound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                for a in [*n.args.args, *n.args.kwonlyargs]}  # fmt: skip
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.value.id not in rebound
                and not hasattr(modules[node.value.id], node.attr)):  # fmt: skip
            gaps.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return [f"{path.relative_to(root)}: {gap}" for gap in gaps]


def test_every_imported_kit_name_exists() -> None:
    files = _sources()
    assert len(files) > 50
    gaps = [gap for path in files for gap in _gaps(path)]
    assert not gaps, "\n".join(gaps)


def test_the_check_sees_a_missing_name(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from harness import hpa\n\n\ndef f():\n    return hpa.no_such_name, hpa.within\n")
    assert _gaps(probe, tmp_path) == ["probe.py: hpa.no_such_name (line 5)"]
