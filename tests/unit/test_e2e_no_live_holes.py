"""The e2e suite never opens a security hole on the shared cluster, not even briefly.

A run killed between ``apply`` and its ``finally: delete`` leaves whatever it applied behind; an
anonymous -> cluster-admin binding left there makes every unauthenticated request cluster-admin. Tests
that need such an object must go through a server-side dry run (or never leave the process).
"""

from __future__ import annotations

import ast
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
_DANGEROUS_SUBJECTS = ("system:anonymous", "system:unauthenticated", "system:authenticated")
_WRITES = {"apply", "create", "replace", "patch"}


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _live_writes(func: ast.AST) -> list[ast.Call]:
    """kubectl calls that write without ``--dry-run=server``: ``x.run("apply", ...)`` and friends, and
    the write methods themselves (``x.apply(docs)``: ``Kubectl.apply`` has no dry run)."""
    found = []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in _WRITES:
            found.append(node)
            continue
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if args and args[0] in _WRITES and "--dry-run=server" not in args:
            found.append(node)
    return found


def offenders(source: str, filename: str = "<e2e>") -> list[str]:
    """Functions that mention an anonymous/everyone identity and write to the cluster for real."""
    tree = ast.parse(source, filename)
    out = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if any(s in _DANGEROUS_SUBJECTS for s in _strings(func)) and _live_writes(func):
            out.append(f"{filename}:{func.lineno} {func.name}")
    return out


def test_the_checker_catches_a_live_anonymous_binding() -> None:
    bad = (
        "def test_x(kubectl):\n"
        "    b = {'subjects': [{'kind': 'User', 'name': 'system:anonymous'}]}\n"
        "    kubectl.run('apply', '-f', '-', stdin=str(b))\n"
    )
    good = bad.replace("'apply', ", "'apply', '--dry-run=server', '-o', 'json', ")
    applied = bad.replace("kubectl.run('apply', '-f', '-', stdin=str(b))", "kubectl.apply([b])")
    assert offenders(bad) == ["<e2e>:1 test_x"]
    assert offenders(applied) == ["<e2e>:1 test_x"]
    assert offenders(good) == []


def test_e2e_suite_never_applies_an_anonymous_binding_for_real() -> None:
    found = [o for path in sorted(E2E.rglob("*.py")) for o in offenders(path.read_text(), str(path))]
    hint = "use `kubectl apply --dry-run=server -o json` and audit what it returns: "
    assert found == [], hint + str(found)
