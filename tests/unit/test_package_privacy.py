"""Packages whose private names stay inside them: outside code uses only their public names.

``harness.images`` was one module that ``harness/kindnode.py`` reached into (``images._run``,
``images._locked``, ...); split into a package, those seams got public names. This check keeps it so:
every ``.py`` file of the repository outside the package is parsed with :mod:`ast` (nothing is
imported or run) and may not

* import an underscore name from the package or one of its modules (``from harness.images.tools
  import _buildah``), or import a module of it whose name starts with an underscore;
* reach an underscore attribute through a name bound to the package or to something imported from
  it (``img._run``, ``images.tools._buildah``, ``Layout._x``), dunders aside;
* name one in a call's string argument: ``monkeypatch.setattr(images.tools, "_buildah", ...)``,
  ``getattr(img, "_x")``, ``mock.patch("harness.images.tools._buildah")``.

When a caller outside really needs a private helper, give it a public name in the package instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Packages (dotted names) whose underscore names no code outside them may use.
PACKAGES = ("harness.images",)
#: Where the repository's Python lives (the venv and caches are not the repository's code).
SOURCE_DIRS = ("adapter", "mockmetrics", "harness", "bench", "tests", "scripts", "images")
_ATTR_FUNCS = frozenset({"setattr", "getattr", "hasattr", "delattr"})


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _private(parts: Iterable[str]) -> str | None:
    """The first underscore name among ``parts`` that is not a dunder."""
    dunder = re.compile(r"__\w+__")
    return next((p for p in parts if p.startswith("_") and not dunder.fullmatch(p)), None)


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; ``None`` for anything that is not a plain name chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def private_uses(source: str, package: str, *, module: str = "", is_package: bool = False,
                  filename: str = "<source>") -> list[str]:
    """Every place ``source`` (the module ``module``, for relative imports) uses an underscore name of
    ``package``, as ``file:line: what`` in source order."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the dotted name it stands for, when inside ``package``
    problems: list[tuple[int, str]] = []

    def report(node: ast.AST, what: str) -> None:
        problems.append((getattr(node, "lineno", 0), what))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not (_in(alias.name, package) or _in(package, alias.name)):
                    continue
                if _in(alias.name, package) and (bad := _private(alias.name.split("."))):
                    report(node, f"import {alias.name} ({bad} is private)")
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # ``import harness.images`` binds ``harness``; attribute chains are checked below
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if not _in(full, package):
                    continue
                if _in(base, package) and (bad := _private([*base.split("."), alias.name])):
                    report(node, f"from {base} import {alias.name} ({bad} is private)")
                bound[alias.asname or alias.name] = full

    def resolve(node: ast.expr) -> str | None:
        parts = _dotted(node)
        if not parts or parts[0] not in bound:
            return None
        return ".".join([bound[parts[0]], *parts[1:]])

    in_string = re.compile(re.escape(package) + r"(?:\.\w+)*?\.(_(?!_)\w*)")
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # a whole chain, once
            full = resolve(node)
            if full and _in(full, package) and (bad := _private(full[len(package):].split("."))):
                report(node, f"{ast.unparse(node)} ({bad} is private to {package})")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            if func and func[-1] in _ATTR_FUNCS and len(node.args) >= 2:
                target, attr = node.args[0], node.args[1]
                if isinstance(attr, ast.Constant) and isinstance(attr.value, str) and _private([attr.value]):
                    full = resolve(target)
                    if full and _in(full, package):
                        call = f"{func[-1]}({ast.unparse(target)}, {attr.value!r})"
                        report(node, f"{call} ({attr.value} is private)")
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    for m in in_string.finditer(arg.value):
                        report(arg, f"string names {m[0]} ({m[1]} is private)")
    return [f"{filename}:{line}: {what}" for line, what in sorted(problems, key=lambda p: p[0])]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repository_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for d in SOURCE_DIRS if (root / d).is_dir() for p in (root / d).rglob("*.py"))


def outside(path: Path, package: str, root: Path = ROOT) -> bool:
    return not path.resolve().is_relative_to(root / Path(*package.split(".")))


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


def test_nothing_outside_uses_a_private_name_of_these_packages() -> None:
    files = repository_files()
    assert len(files) > 100  # the walk found the repository
    problems = []
    for package in PACKAGES:
        assert (ROOT / Path(*package.split("."))).is_dir(), f"{package} is not a package directory"
        for path in files:
            if outside(path, package) and package.rsplit(".", 1)[-1] in path.read_text():
                problems += private_uses(path.read_text(), package, module=module_name(path),
                                         is_package=path.name == "__init__.py",
                                         filename=str(path.relative_to(ROOT)))
    assert not problems, (
        "private names used outside their package (give them a public name there):\n" + "\n".join(problems)
    )


# --------------------------------------------------------------------------------------------
# The checker itself catches what it should (otherwise the contract could never fail)
# --------------------------------------------------------------------------------------------


def test_checker_reports_each_way_in() -> None:
    source = '''
import harness.images
import harness.images.tools as t
from harness import images as img
from harness.images import Layout, run
from harness.images.tools import _buildah, locked
from harness.images import tools

img._run(["x"])
img.run(["x"])
harness.images.tools._locked
t.run
tools._image_id_and_label("x")
Layout._private
img.__doc__, img.__path__
monkeypatch.setattr(img.tools, "_run", fake)
monkeypatch.setattr(img.tools, "run", fake)
getattr(img, "_x")
monkeypatch.setattr("harness.images.tools._run", fake)
"see harness.images.tools.run and harness.images.__file__"

mock.patch(target="harness.images.build._stamp_matches")
"a docstring may mention harness.images.tools._run"

def lazily():
    from harness.images.base import _rmtree as remove
    from .images.hashing import _walk
'''
    got = private_uses(source, "harness.images", module="harness.kindnode")
    assert [p.split(":", 1)[1] for p in got] == [
        "6: from harness.images.tools import _buildah (_buildah is private)",
        "9: img._run (_run is private to harness.images)",
        "11: harness.images.tools._locked (_locked is private to harness.images)",
        "13: tools._image_id_and_label (_image_id_and_label is private to harness.images)",
        "14: Layout._private (_private is private to harness.images)",
        "16: setattr(img.tools, '_run') (_run is private)",
        "18: getattr(img, '_x') (_x is private)",
        "19: string names harness.images.tools._run (_run is private)",
        "22: string names harness.images.build._stamp_matches (_stamp_matches is private)",
        "26: from harness.images.base import _rmtree (_rmtree is private)",
        "27: from harness.images.hashing import _walk (_walk is private)",
    ]


def test_checker_ignores_other_packages_and_public_names() -> None:
    source = '''
from harness import manifests, images
from harness.manifests import _run
manifests._run(["x"])
images.ensure_all(["pause"])
images.Layout().images_dir
'''
    assert private_uses(source, "harness.images") == []
    assert outside(ROOT / "harness" / "kindnode.py", "harness.images")
    assert not outside(ROOT / "harness" / "images" / "tools.py", "harness.images")
